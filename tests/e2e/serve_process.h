// A real ota32-serve running in the background for end-to-end tests: started through `ota32 serve` on
// 127.0.0.1 with --port 0 (the kernel picks a free port, read back from the start-up message), stopped with
// SIGTERM (bounded wait, then SIGKILL) at destruction. With OTA32_TEST_SERVE_KTLS set, --ktls is added.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace ota32::testing {

// A blocking TCP socket connected to 127.0.0.1:port (rcvbuf > 0: that SO_RCVBUF, set before connecting, as
// a small device window); -1 when the connection fails.
int connect_loopback(uint16_t port, int rcvbuf = 0);

class ServeProcess {
 public:
  // `args` follow `ota32 serve` (e.g. {"--dir", www, "--data", data}); --bind/--port are added. Returns null
  // (and the reason in *why) when the server did not report listening within `ready_timeout`.
  static std::unique_ptr<ServeProcess> start(
      const std::vector<std::string>& args, const std::filesystem::path& dir, std::string* why,
      std::chrono::milliseconds ready_timeout = std::chrono::seconds(20));
  ~ServeProcess();

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }               // the server process (ota32 execs ota32-serve in place)
  std::string url(const std::string& path) const;  // "https://127.0.0.1:<port><path>"
  std::string err() const;                         // stderr so far (start-up messages)
  std::string out() const;                         // stdout so far (access log)
  // Sends `sig` and returns at once (e.g. SIGHUP: reload).
  void signal(int sig);
  // Waits (bounded) until stderr holds `text` at least `occurrences` times.
  bool wait_for_err(const std::string& text, std::size_t occurrences = 1,
                    std::chrono::milliseconds timeout = std::chrono::seconds(20)) const;
  // Sends `sig` and waits (bounded) for the exit; returns the exit code, 128 + signal, or -1 on timeout.
  int stop(int sig, std::chrono::milliseconds timeout = std::chrono::seconds(15));

 private:
  ServeProcess() = default;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::filesystem::path out_, err_;
};

}  // namespace ota32::testing
