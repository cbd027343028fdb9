#include "tls_fixture.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <thread>

#include "test_support.h"

namespace ota32::testing {
namespace fs = std::filesystem;

int run_shell(const std::string& command, const fs::path& log) {
  std::string full = "(" + command + ") >>'" + log.string() + "' 2>&1";
  int rc = std::system(full.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

bool TestPki::create(const fs::path& d) {
  dir = d;
  fs::create_directories(dir);
  fs::path log = dir / "openssl.log";
  auto p = [&](const char* name) { return (dir / name).string(); };
  ca_cert = p("ca_cert.pem");
  ca_key = p("ca_key.pem");
  other_ca_cert = p("other_ca_cert.pem");
  ip_cert = p("ip_cert.pem");
  ip_key = p("ip_key.pem");
  wrong_cert = p("wrong_cert.pem");
  wrong_key = p("wrong_key.pem");
  seed_cert = p("seed_cert.pem");
  seed_key = p("seed_key.pem");
  std::string cd = "cd '" + dir.string() + "' && ";
  const char* ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::vector<std::string> cmds = {
      cd + "openssl req -x509 " + ec +
          " -keyout ca_key.pem -out ca_cert.pem -days 30 -subj '/CN=ota32 test CA'",
      cd + "openssl req -x509 " + ec +
          " -keyout other_ca_key.pem -out other_ca_cert.pem -days 30 -subj '/CN=other CA'",
      cd + "openssl req " + ec + " -keyout ip_key.pem -out ip.csr -subj '/CN=ota32 test server'",
      cd + "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ip.ext && openssl x509 -req -in ip.csr "
           "-CA ca_cert.pem -CAkey ca_key.pem -CAcreateserial -days 30 -extfile ip.ext -out ip_cert.pem",
      cd + "openssl req " + ec + " -keyout wrong_key.pem -out wrong.csr -subj '/CN=example.com'",
      cd +
          "printf 'subjectAltName=DNS:example.com\\n' > wrong.ext && openssl x509 -req -in wrong.csr "
          "-CA ca_cert.pem -CAkey ca_key.pem -CAcreateserial -days 30 -extfile wrong.ext -out wrong_cert.pem",
      // The seed: `openssl req -x509 -newkey rsa:2048 ... -nodes` with Common Name = the server's IP.
      cd + "openssl req -x509 -newkey rsa:2048 -nodes -keyout seed_key.pem -out seed_cert.pem -days 30 "
           "-subj '/CN=127.0.0.1' -addext basicConstraints=critical,CA:TRUE",
  };
  for (const auto& c : cmds) {
    if (run_shell(c, log) != 0) return false;
  }
  return true;
}

static bool can_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

OpensslServer::~OpensslServer() { stop(); }

bool OpensslServer::start(const fs::path& docroot, const fs::path& cert, const fs::path& key,
                          std::vector<std::string> extra) {
  port_ = free_port();
  std::vector<std::string> args = {
      "openssl", "s_server",    "-WWW", "-quiet",    "-accept", "127.0.0.1:" + std::to_string(port_),
      "-cert",   cert.string(), "-key", key.string()};
  args.insert(args.end(), extra.begin(), extra.end());
  pid_ = ::fork();
  if (pid_ == 0) {
    if (::chdir(docroot.c_str()) != 0) _exit(127);
    std::string log = (docroot / "s_server.log").string();
    FILE* f = std::freopen(log.c_str(), "a", stdout);
    (void)f;
    ::dup2(STDOUT_FILENO, STDERR_FILENO);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::execvp("openssl", argv.data());
    _exit(127);
  }
  for (int i = 0; i < 200; ++i) {  // up to ~10 s
    if (can_connect(port_)) return true;
    int status;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return false;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

void OpensslServer::stop() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    int status;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }
}

}  // namespace ota32::testing
