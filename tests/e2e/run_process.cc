#include "e2e/run_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "test_support.h"

namespace ota32::testing {

ProcessResult run_process(const std::filesystem::path& program, const std::vector<std::string>& args,
                          const std::string& input, const std::filesystem::path& cwd,
                          std::chrono::milliseconds timeout) {
  ProcessOptions o;
  o.cwd = cwd;
  o.timeout = timeout;
  return run_process(program, args, input, o);
}

ProcessResult run_process(const std::filesystem::path& program, const std::vector<std::string>& args,
                          const std::string& input, const ProcessOptions& options) {
  const auto& cwd = options.cwd;
  const auto timeout = options.timeout;
  ProcessResult r;
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0 || pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    r.err = std::string("pipe: ") + std::strerror(errno);
    return r;
  }
  std::vector<std::string> argv_s;
  argv_s.push_back(program.string());
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  pid_t pid = fork();
  if (pid == 0) {
    dup2(in[0], 0);
    dup2(err[1], 2);
    using S = ProcessOptions::Stdout;
    if (options.stdout_to == S::pipe) {
      dup2(out[1], 1);
    } else if (options.stdout_to == S::closed) {
      close(1);
    } else {
      int fd = options.stdout_to == S::dev_full
                   ? open("/dev/full", O_WRONLY)
                   : open(options.stdout_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fd < 0) _exit(125);
      dup2(fd, 1);
      close(fd);
    }
    if (options.file_size_limit >= 0) {
      rlimit lim{static_cast<rlim_t>(options.file_size_limit), static_cast<rlim_t>(options.file_size_limit)};
      if (setrlimit(RLIMIT_FSIZE, &lim) != 0) _exit(125);
    }
    signal(SIGXFSZ, SIG_DFL);
    if (!cwd.empty() && chdir(cwd.c_str()) != 0) _exit(126);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(in[0]);
  close(out[1]);
  close(err[1]);
  if (pid < 0) {
    close(in[1]);
    close(out[0]);
    close(err[0]);
    r.err = std::string("fork: ") + std::strerror(errno);
    return r;
  }
  signal(SIGPIPE, SIG_IGN);
  size_t written = 0;
  if (input.empty()) {
    close(in[1]);
    in[1] = -1;
  } else {
    fcntl(in[1], F_SETFL, O_NONBLOCK);
  }
  auto deadline = std::chrono::steady_clock::now() + timeout;
  bool out_open = true, err_open = true;
  while (out_open || err_open) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      r.timed_out = true;
      break;
    }
    pollfd fds[3] = {
        {out_open ? out[0] : -1, POLLIN, 0}, {err_open ? err[0] : -1, POLLIN, 0}, {in[1], POLLOUT, 0}};
    if (poll(fds, 3, static_cast<int>(left.count())) < 0 && errno != EINTR) break;
    char buf[65536];
    for (int k = 0; k < 2; ++k) {
      if (fds[k].revents == 0) continue;
      ssize_t n = read(fds[k].fd, buf, sizeof buf);
      if (n > 0) {
        (k == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      } else if (n == 0 || errno != EINTR) {
        (k == 0 ? out_open : err_open) = false;
      }
    }
    if (in[1] >= 0 && fds[2].revents != 0) {
      ssize_t n = write(in[1], input.data() + written, input.size() - written);
      if (n > 0) written += static_cast<size_t>(n);
      if (n < 0 || written == input.size()) {
        close(in[1]);
        in[1] = -1;
      }
    }
  }
  if (in[1] >= 0) close(in[1]);
  close(out[0]);
  close(err[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::filesystem::path ota32_binary() { return binary_dir() / "src" / "cli" / "ota32"; }

ProcessResult run_ota32(const std::vector<std::string>& args, const std::string& input,
                        const std::filesystem::path& cwd) {
  return run_process(ota32_binary(), args, input, cwd);
}

ProcessResult run_ota32(const std::vector<std::string>& args, const ProcessOptions& options) {
  return run_process(ota32_binary(), args, {}, options);
}

}  // namespace ota32::testing
