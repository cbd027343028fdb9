#include <gtest/gtest.h>

#include "server/metrics.h"

namespace ota32::server {
namespace {

TEST(Metrics, RendersPrometheusText) {
  Metrics m;
  m.connection_opened();
  m.connection_opened();
  m.connection_closed();
  m.handshake(true);
  m.handshake(false);
  m.kernel_tls();
  m.request(http::verb::get, 200);
  m.request(http::verb::get, 206);
  m.request(http::verb::post, 413);
  m.bytes_sent(1234);
  m.download_completed("1.0.\"2\"");
  m.download_completed("1.0.\"2\"");
  m.update_check("up_to_date");
  m.file_download_completed("hello-world.bin");
  std::string text = m.render();
  EXPECT_NE(text.find("ota32_connections_active 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("ota32_connections_total 2\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_tls_handshakes_total{result=\"failed\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_tls_kernel_connections_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_http_requests_total{method=\"GET\",code=\"2xx\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_http_requests_total{method=\"POST\",code=\"4xx\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_http_response_bytes_total 1234\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_downloads_completed_total{version=\"1.0.\\\"2\\\"\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_update_checks_total{result=\"up_to_date\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("ota32_file_downloads_completed_total{file=\"hello-world.bin\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("# TYPE ota32_connections_active gauge\n"), std::string::npos);
}

TEST(Metrics, TokenProtectsTheEndpoint) {
  Metrics m;
  Handler open = make_metrics_handler(m);
  Handler locked = make_metrics_handler(m, "s3cret");
  auto status = [](const Handler& h, std::string auth) {
    HttpRequest req{http::verb::get, "/metrics", 11};
    if (!auth.empty()) req.set(http::field::authorization, auth);
    return std::get<HttpResponse>(h(req, RequestContext{})).result();
  };
  EXPECT_EQ(status(open, ""), http::status::ok);
  EXPECT_EQ(status(locked, ""), http::status::unauthorized);
  EXPECT_EQ(status(locked, "Bearer s3cre"), http::status::unauthorized);
  EXPECT_EQ(status(locked, "Bearer s3cret!"), http::status::unauthorized);
  EXPECT_EQ(status(locked, "Bearer s3cret"), http::status::ok);
}

}  // namespace
}  // namespace ota32::server
