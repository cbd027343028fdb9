#include "e2e/serve_process.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include "e2e/run_process.h"

namespace ota32::testing {

namespace {
std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

std::unique_ptr<ServeProcess> ServeProcess::start(const std::vector<std::string>& args,
                                                  const std::filesystem::path& dir, std::string* why,
                                                  std::chrono::milliseconds ready_timeout) {
  std::unique_ptr<ServeProcess> p(new ServeProcess);
  static std::atomic<int> next{0};  // servers may be started from several threads at once
  int counter = ++next;
  p->out_ = dir / ("serve-" + std::to_string(counter) + ".out");
  p->err_ = dir / ("serve-" + std::to_string(counter) + ".err");
  std::vector<std::string> argv_s = {ota32_binary().string(), "serve", "--bind", "127.0.0.1", "--port", "0"};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  // OTA32_TEST_SERVE_KTLS=1: every server of the run uses kernel TLS (the VM run, docs/server.md), so the
  // device and API end-to-end tests cover that path too.
  if (std::getenv("OTA32_TEST_SERVE_KTLS") &&
      std::find(argv_s.begin(), argv_s.end(), "--ktls") == argv_s.end())
    argv_s.push_back("--ktls");
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int o = ::open(p->out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int e = ::open(p->err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int n = ::open("/dev/null", O_RDONLY);
    dup2(n, 0);
    dup2(o, 1);
    dup2(e, 2);
    execv(argv[0], argv.data());
    _exit(127);
  }
  p->pid_ = pid;
  std::regex listening(R"(listening on https://127\.0\.0\.1:(\d+)/)");
  auto until = std::chrono::steady_clock::now() + ready_timeout;
  while (std::chrono::steady_clock::now() < until) {
    std::smatch m;
    std::string text = slurp(p->err_);
    if (std::regex_search(text, m, listening)) {
      p->port_ = static_cast<uint16_t>(std::stoi(m[1]));
      return p;
    }
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) {
      p->pid_ = -1;
      if (why) *why = "ota32 serve exited at start: " + text;
      return nullptr;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (why) *why = "ota32 serve did not report listening: " + slurp(p->err_);
  return nullptr;  // the destructor kills it
}

ServeProcess::~ServeProcess() {
  if (pid_ > 0 && stop(SIGTERM) < 0) {
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
}

int connect_loopback(uint16_t port, int rcvbuf) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (rcvbuf > 0) ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string ServeProcess::url(const std::string& path) const {
  return "https://127.0.0.1:" + std::to_string(port_) + path;
}
std::string ServeProcess::err() const { return slurp(err_); }
std::string ServeProcess::out() const { return slurp(out_); }

void ServeProcess::signal(int sig) {
  if (pid_ > 0) kill(pid_, sig);
}

bool ServeProcess::wait_for_err(const std::string& text, std::size_t occurrences,
                                std::chrono::milliseconds timeout) const {
  auto until = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    std::string e = err();
    std::size_t n = 0;
    for (auto at = e.find(text); at != std::string::npos; at = e.find(text, at + text.size())) ++n;
    if (n >= occurrences) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int ServeProcess::stop(int sig, std::chrono::milliseconds timeout) {
  if (pid_ <= 0) return -1;
  kill(pid_, sig);
  auto until = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < until) {
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return -1;
}

}  // namespace ota32::testing
