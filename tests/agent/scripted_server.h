// A plain-HTTP server on 127.0.0.1 for protocol tests: each accepted connection's request head is recorded
// and answered by a function of it; the answer may be cut after a number of bytes or delayed.
#pragma once

#include <atomic>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ota32::testing {

struct ScriptedReply {
  std::string bytes;                    // raw response (status line, headers, body)
  size_t cut_after = SIZE_MAX;          // close (RST-free FIN) after this many bytes
  int delay_ms = 0;                     // wait before answering
  const std::string* shared = nullptr;  // when set, sent instead of `bytes` (no copy of large bodies)
};

class ScriptedServer {
 public:
  using Handler = std::function<ScriptedReply(const std::string& request_head, int index)>;
  // Serves at most `max_connections` connections, then stops accepting.
  ScriptedServer(Handler handler, int max_connections = 16);
  ~ScriptedServer();
  int port() const { return port_; }
  std::vector<std::string> requests();

 private:
  void run(int max_connections);
  Handler handler_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::thread thread_;
};

// "HTTP/1.1 <status> X\r\n" + headers + "\r\n" + body.
std::string http_response(int status, const std::string& body, const std::string& headers = "");

}  // namespace ota32::testing
