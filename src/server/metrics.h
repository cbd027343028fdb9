// Server counters exposed at /metrics in the Prometheus text format (version 0.0.4). Counters are relaxed
// atomics (every session thread bumps them); labelled families with open label sets (firmware version,
// file) sit behind a mutex and are touched once per download, not per byte.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "server/http_types.h"

namespace ota32::server {

class Metrics {
 public:
  void connection_opened() {
    connections_total_.fetch_add(1, std::memory_order_relaxed);
    connections_active_.fetch_add(1, std::memory_order_relaxed);
  }
  void connection_closed() { connections_active_.fetch_sub(1, std::memory_order_relaxed); }
  void connection_refused() { connections_refused_.fetch_add(1, std::memory_order_relaxed); }
  void handshake(bool ok) {
    (ok ? handshakes_ok_ : handshakes_failed_).fetch_add(1, std::memory_order_relaxed);
  }
  // A connection whose records the kernel encrypts from here on (kTLS transmit).
  void kernel_tls() { kernel_tls_.fetch_add(1, std::memory_order_relaxed); }
  void timeout() { timeouts_.fetch_add(1, std::memory_order_relaxed); }
  void request(http::verb method, unsigned status);
  void bytes_sent(uint64_t n) { bytes_sent_.fetch_add(n, std::memory_order_relaxed); }
  void bytes_received(uint64_t n) { bytes_received_.fetch_add(n, std::memory_order_relaxed); }

  // For the catalog API: an update check answered, a firmware download sent to its last byte.
  void update_check(std::string_view result);  // "update_available", "up_to_date", ...
  void download_completed(std::string_view firmware_version);
  void file_download_completed(std::string_view file);  // --dir files

  int64_t active_connections() const { return connections_active_.load(std::memory_order_relaxed); }

  // The whole exposition, "# HELP"/"# TYPE" lines included.
  std::string render() const;

 private:
  static constexpr int kMethods = 6;  // GET HEAD POST PUT DELETE other
  static constexpr int kClasses = 5;  // 1xx .. 5xx
  std::atomic<uint64_t> requests_[kMethods][kClasses] = {};
  std::atomic<uint64_t> connections_total_{0}, connections_refused_{0}, handshakes_ok_{0},
      handshakes_failed_{0}, kernel_tls_{0}, timeouts_{0}, bytes_sent_{0}, bytes_received_{0};
  std::atomic<int64_t> connections_active_{0};
  mutable std::mutex mu_;
  std::map<std::string, uint64_t, std::less<>> update_checks_, downloads_, file_downloads_;
};

// GET /metrics for a Router. With a token (--metrics-token-file), only requests that send
// `Authorization: Bearer <token>` (Prometheus' `authorization: credentials_file`) get the metrics; the
// others get 401.
Handler make_metrics_handler(const Metrics& metrics, std::string token = {});

}  // namespace ota32::server
