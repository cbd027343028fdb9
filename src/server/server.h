// The HTTPS server: one io_context per thread, each accepting on one shared listening socket (the free
// thread takes the next connection), one Session per connection doing TLS over the socket directly (OpenSSL
// on the fd, no BIO pair: less copying and ~40 KiB less memory per connection), timeouts on every phase, one
// response in flight per connection, graceful drain on stop.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "server/access_log.h"
#include "server/http_types.h"
#include "server/metrics.h"

namespace ota32::server {

struct ServerOptions {
  std::string bind = "0.0.0.0";
  uint16_t port = 8070;  // 0 = any free port (tests), see Server::port()
  unsigned threads = 0;  // 0 = one per core
  std::chrono::milliseconds handshake_timeout{10'000};
  std::chrono::milliseconds header_timeout{10'000};  // whole request header, from its first byte
  std::chrono::milliseconds idle_timeout{30'000};    // keep-alive wait for the next request
  std::chrono::milliseconds io_timeout{30'000};      // no progress while reading a body or writing a response
  // The whole request, from the first byte of its header to the last of its body (nginx's
  // client_header_timeout + client_body_timeout, as one bound a dripping client cannot stretch).
  std::chrono::milliseconds request_timeout{300'000};
  // Bytes per second a request body or a response must average once its first io_timeout has passed
  // (Apache mod_reqtimeout's MinRate): a client that drips a byte every few seconds, or reads that slowly,
  // is cut instead of holding the connection for ever. 0 = no minimum.
  std::size_t min_rate = 1024;
  // Request bodies held in memory, summed over every connection (uploads streamed to a file count nothing):
  // a request whose body does not fit now gets 503 + Retry-After before its body is read.
  std::size_t body_memory = 64 * 1024 * 1024;
  std::chrono::milliseconds drain_timeout{10'000};  // graceful stop: how long running responses may finish
  // Lingering close after an error reply (400/408/413/431): how long, and how many bytes, the server reads
  // and discards what the client is still sending before it closes (nginx's lingering_time).
  std::chrono::milliseconds linger_time{5'000};
  std::chrono::milliseconds linger_idle{1'000};  // ... and how long it waits for the next piece
  std::size_t linger_bytes = 64 * 1024 * 1024;
  std::size_t header_limit = 8 * 1024;
  std::size_t max_connections = 16'384;
  std::size_t file_chunk = 16 * 1024;  // plaintext per TLS record written (at most 16 KiB: one record)
  // TCP_NOTSENT_LOWAT: the kernel queues at most about this many not-yet-sent bytes per connection (plus what
  // the peer's window has in flight), and the socket is writable only below it. Bounds kernel memory per slow
  // client (an ESP32 advertises a window of a few KiB) without limiting a fast client's window. The mark is
  // a budget shared by the open connections (unsent_budget / connections, set when a connection opens, at
  // each response and before each wait for a full socket), kept within [notsent_lowat_min,
  // notsent_lowat_max]: up to 64 clients get 1 MiB, 100 get 655 KiB, 1000 get 65 KiB, 2048 or more (a fleet
  // of slow ones) 32 KiB each. Summed over n connections opened one after another, the marks stay within
  // n * notsent_lowat_min + unsent_budget * (1 + ln n). unsent_budget 0 = no mark. ota32 serve caps the
  // budget at an eighth of the kernel's TCP memory pressure threshold (unsent_budget_for_tcp_mem). A 4 MiB
  // budget (41 KiB each at 100 clients) cost 100 full-handshake clients about 1.8x the system CPU per request
  // that 64 MiB did (docs/performance.md): each connection was woken every few records.
  std::size_t unsent_budget = 64 * 1024 * 1024;
  std::size_t notsent_lowat_min = 32 * 1024;
  std::size_t notsent_lowat_max = 1024 * 1024;
};

// The TCP_NOTSENT_LOWAT a connection gets while `connections` are open (itself included); 0 = none.
std::size_t notsent_lowat_for(const ServerOptions& opt, std::size_t connections);

// The unsent budget for a kernel whose /proc/sys/net/ipv4/tcp_mem reads `tcp_mem` ("min pressure max", in
// pages of page_size bytes): `preferred`, at most an eighth of the pressure threshold, so that the send
// queues a full budget allows leave the kernel out of TCP memory pressure on a small machine. Text that does
// not parse gives `preferred`.
std::size_t unsent_budget_for_tcp_mem(std::string_view tcp_mem, std::size_t page_size, std::size_t preferred);

class Server {
 public:
  // `tls` may be null until set_tls, so a caller can listen() (and fail on a taken port) before it creates
  // anything; run() needs a context by then.
  Server(ServerOptions options, SSL_CTX* tls, const Router& router, Metrics& metrics, AccessLog* log);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens on every thread's acceptor. Errors name the address (in use, permission).
  Result<void> listen();
  uint16_t port() const { return port_; }

  // Serves until stop() or SIGTERM/SIGINT (when handle_signals), then drains and returns. With on_hangup,
  // SIGHUP calls it (like nginx's reload: e.g. set_tls with a renewed certificate) and serving goes on.
  void run(bool handle_signals, std::function<void()> on_hangup = {});
  // Thread-safe: connections accepted from now on use this context (the server takes a reference); open
  // ones keep the one they started with.
  void set_tls(SSL_CTX* tls);
  // Before run(): where each request is logged (null: nowhere).
  void set_access_log(AccessLog* log);
  // Thread-safe and signal-free: stop accepting, close idle connections, let running responses finish.
  void stop();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
  uint16_t port_ = 0;
};

}  // namespace ota32::server
