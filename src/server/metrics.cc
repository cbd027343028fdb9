#include "server/metrics.h"

#include <fmt/format.h>

namespace ota32::server {

namespace {

int method_index(http::verb m) {
  switch (m) {
    case http::verb::get:
      return 0;
    case http::verb::head:
      return 1;
    case http::verb::post:
      return 2;
    case http::verb::put:
      return 3;
    case http::verb::delete_:
      return 4;
    default:
      return 5;
  }
}
constexpr const char* kMethodNames[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "other"};

// Label values escape backslash, double quote and newline (exposition format).
std::string escape_label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void bump(std::map<std::string, uint64_t, std::less<>>& m, std::string_view key) {
  auto it = m.find(key);
  if (it == m.end()) it = m.emplace(std::string(key), 0).first;
  ++it->second;
}

void family(std::string& out, std::string_view name, std::string_view type, std::string_view help) {
  fmt::format_to(std::back_inserter(out), "# HELP {} {}\n# TYPE {} {}\n", name, help, name, type);
}

}  // namespace

void Metrics::request(http::verb method, unsigned status) {
  int cls = static_cast<int>(status / 100) - 1;
  if (cls < 0 || cls >= kClasses) cls = kClasses - 1;
  requests_[method_index(method)][cls].fetch_add(1, std::memory_order_relaxed);
}

void Metrics::update_check(std::string_view result) {
  std::lock_guard lock(mu_);
  bump(update_checks_, result);
}

void Metrics::download_completed(std::string_view version) {
  std::lock_guard lock(mu_);
  bump(downloads_, version);
}

void Metrics::file_download_completed(std::string_view file) {
  std::lock_guard lock(mu_);
  bump(file_downloads_, file);
}

std::string Metrics::render() const {
  std::string out;
  auto it = std::back_inserter(out);
  family(out, "ota32_http_requests_total", "counter", "HTTP requests answered, by method and status class.");
  for (int m = 0; m < kMethods; ++m)
    for (int c = 0; c < kClasses; ++c) {
      uint64_t v = requests_[m][c].load(std::memory_order_relaxed);
      if (v)
        fmt::format_to(it, "ota32_http_requests_total{{method=\"{}\",code=\"{}xx\"}} {}\n", kMethodNames[m],
                       c + 1, v);
    }
  family(out, "ota32_http_response_bytes_total", "counter",
         "Bytes of HTTP responses (headers and bodies) sent.");
  fmt::format_to(it, "ota32_http_response_bytes_total {}\n", bytes_sent_.load(std::memory_order_relaxed));
  family(out, "ota32_http_request_bytes_total", "counter",
         "Bytes of HTTP requests (headers and bodies) received.");
  fmt::format_to(it, "ota32_http_request_bytes_total {}\n", bytes_received_.load(std::memory_order_relaxed));
  family(out, "ota32_connections_active", "gauge", "Open client connections.");
  fmt::format_to(it, "ota32_connections_active {}\n", connections_active_.load(std::memory_order_relaxed));
  family(out, "ota32_connections_total", "counter", "Client connections accepted.");
  fmt::format_to(it, "ota32_connections_total {}\n", connections_total_.load(std::memory_order_relaxed));
  family(out, "ota32_connections_refused_total", "counter",
         "Connections closed at once: --max-connections reached.");
  fmt::format_to(it, "ota32_connections_refused_total {}\n",
                 connections_refused_.load(std::memory_order_relaxed));
  family(out, "ota32_tls_handshakes_total", "counter", "TLS handshakes, by result.");
  fmt::format_to(it, "ota32_tls_handshakes_total{{result=\"ok\"}} {}\n",
                 handshakes_ok_.load(std::memory_order_relaxed));
  fmt::format_to(it, "ota32_tls_handshakes_total{{result=\"failed\"}} {}\n",
                 handshakes_failed_.load(std::memory_order_relaxed));
  family(out, "ota32_tls_kernel_connections_total", "counter",
         "Connections whose TLS records the kernel encrypts (kTLS, serve --ktls).");
  fmt::format_to(it, "ota32_tls_kernel_connections_total {}\n", kernel_tls_.load(std::memory_order_relaxed));
  family(out, "ota32_timeouts_total", "counter", "Connections closed because a phase timed out.");
  fmt::format_to(it, "ota32_timeouts_total {}\n", timeouts_.load(std::memory_order_relaxed));
  std::lock_guard lock(mu_);
  family(out, "ota32_update_checks_total", "counter", "Update checks answered, by result.");
  for (const auto& [k, v] : update_checks_)
    fmt::format_to(it, "ota32_update_checks_total{{result=\"{}\"}} {}\n", escape_label(k), v);
  family(out, "ota32_downloads_completed_total", "counter",
         "Firmware downloads sent to their last byte, by firmware version.");
  for (const auto& [k, v] : downloads_)
    fmt::format_to(it, "ota32_downloads_completed_total{{version=\"{}\"}} {}\n", escape_label(k), v);
  family(out, "ota32_file_downloads_completed_total", "counter",
         "--dir files sent to their last byte, by file.");
  for (const auto& [k, v] : file_downloads_)
    fmt::format_to(it, "ota32_file_downloads_completed_total{{file=\"{}\"}} {}\n", escape_label(k), v);
  return out;
}

Handler make_metrics_handler(const Metrics& metrics, std::string token) {
  return [&metrics, token = std::move(token)](const HttpRequest& req, const RequestContext&) -> Reply {
    if (!token.empty()) {
      std::string_view auth = req[http::field::authorization];
      std::string expected = "Bearer " + token;
      // Length first, then every byte: no early exit that would time the token out.
      unsigned diff = auth.size() == expected.size() ? 0u : 1u;
      for (size_t i = 0; i < auth.size() && i < expected.size(); ++i)
        diff |= static_cast<unsigned>(auth[i] ^ expected[i]);
      if (diff != 0) {
        auto res = json_error(http::status::unauthorized, "unauthorized",
                              "/metrics needs the metrics token: Authorization: Bearer <token>", req);
        res.set(http::field::www_authenticate, "Bearer realm=\"ota32 metrics\"");
        return res;
      }
    }
    HttpResponse res{http::status::ok, req.version()};
    res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
    res.set(http::field::cache_control, "no-store");
    res.keep_alive(req.keep_alive());
    res.body() = metrics.render();
    res.prepare_payload();
    return res;
  };
}

}  // namespace ota32::server
