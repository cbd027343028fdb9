// ota32 serve end to end: the real server on 127.0.0.1, driven by curl and `openssl s_client` the way an
// ESP32 (esp_https_ota over mbedTLS) or an operator would.
#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include <cstdlib>
#include <fstream>
#include <random>
#include <regex>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "e2e/serve_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::Not;

std::string random_bytes(std::size_t n) {
  std::mt19937 rng(42);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Each test runs twice: OpenSSL encrypting in user space, and with `--ktls`. On a kernel without the `tls`
// module the second run checks the fallback (the same bytes, a message saying kTLS is unavailable); on one
// with it (scripts/vm-run.sh boots such a kernel: docs/server.md) the same tests go through kernel TLS and
// sendfile, and kernel_tls_check() verifies that they did. OTA32_TEST_REQUIRE_KTLS=1 makes a kernel without
// kTLS a failure instead.
class ServeE2e : public ::testing::TestWithParam<bool> {
 protected:
  bool ktls() const { return GetParam(); }
  std::vector<std::string> with_mode(std::vector<std::string> a) const {
    if (ktls()) a.push_back("--ktls");
    return a;
  }
  // The server probes at start (which loads the module when it may), so this is read after it started.
  static bool kernel_offers_tls() {
    auto ulps = read_text_file("/proc/sys/net/ipv4/tcp_available_ulp");
    return ulps && ulps->find("tls") != std::string::npos;
  }
  // With --ktls: the start-up message matches the kernel, and the connections so far went through kTLS
  // exactly when the kernel offers it.
  void kernel_tls_check(ServeProcess& srv) {
    auto m = curl({srv.url("/metrics")});
    ASSERT_EQ(m.exit_code, 0) << m.err;
    std::smatch k;
    ASSERT_TRUE(std::regex_search(m.out, k, std::regex("\nota32_tls_kernel_connections_total (\\d+)\n")))
        << m.out;
    const long kernel_connections = std::stol(k[1]);
    if (!ktls()) {
      EXPECT_EQ(kernel_connections, 0);
      EXPECT_THAT(srv.out(), Not(HasSubstr("ktls")));
      return;
    }
    const bool kernel = kernel_offers_tls();
    if (std::getenv("OTA32_TEST_REQUIRE_KTLS")) {
      ASSERT_TRUE(kernel) << "OTA32_TEST_REQUIRE_KTLS is set, but this kernel offers no tls ULP";
    }
    EXPECT_THAT(srv.err(),
                HasSubstr(kernel ? "kTLS: the kernel encrypts" : "kTLS requested but unavailable"));
    if (kernel) {
      EXPECT_GT(kernel_connections, 0);
      EXPECT_THAT(srv.out(), HasSubstr(",\"ktls\":true}"));  // the access log says which requests
    } else {
      EXPECT_EQ(kernel_connections, 0);
      EXPECT_THAT(srv.out(), Not(HasSubstr("ktls")));
    }
  }

  void SetUp() override {
    fs::create_directories(tmp_ / "www");
    firmware_ = random_bytes(300 * 1024 + 17);
    ASSERT_TRUE(write_file_atomic(tmp_ / "www" / "hello-world.bin", firmware_));
    ASSERT_TRUE(write_file_atomic(tmp_ / "secret.txt", std::string_view("secret")));
    std::string why;
    server_ = ServeProcess::start(with_mode({"--dir", (tmp_ / "www").string(), "--data",
                                             (tmp_ / "data").string(), "--header-timeout", "1"}),
                                  tmp_.path(), &why);
    ASSERT_TRUE(server_) << why;
    ca_ = (tmp_ / "data" / "ca_cert.pem").string();
  }

  // With --ktls, curl stays at TLS 1.2 (the kernel takes TLS 1.2 connections only, like an ESP32's), so the
  // tests' downloads go through kernel TLS.
  ProcessResult curl(std::vector<std::string> args) {
    std::vector<std::string> a = {"-sS", "--max-time", "20", "--cacert", ca_};
    if (ktls()) a.insert(a.end(), {"--tls-max", "1.2"});
    a.insert(a.end(), args.begin(), args.end());
    return run_process("/usr/bin/curl", a, {}, tmp_.path(), std::chrono::seconds(30));
  }
  // One raw exchange over TLS: `input` is sent as is, the output holds the handshake summary and the reply.
  // With wait_for_close, s_client keeps reading after its input ends until the server closes.
  ProcessResult s_client(std::vector<std::string> extra, const std::string& input,
                         bool wait_for_close = true) {
    std::vector<std::string> a = {"s_client", "-connect", "127.0.0.1:" + std::to_string(server_->port()),
                                  "-CAfile",  ca_,        "-verify_return_error"};
    if (wait_for_close) a.push_back("-ign_eof");
    a.insert(a.end(), extra.begin(), extra.end());
    return run_process("/usr/bin/openssl", a, input, tmp_.path(), std::chrono::seconds(30));
  }

  TempDir tmp_;
  std::string firmware_, ca_;
  std::unique_ptr<ServeProcess> server_;
};

TEST_P(ServeE2e, TheSeedUrlWorksWithTheGeneratedCaAndIpSan) {
  EXPECT_THAT(server_->err(), HasSubstr("ca_cert.pem"));
  EXPECT_THAT(server_->err(), HasSubstr("IP:127.0.0.1"));
  EXPECT_THAT(server_->err(), HasSubstr("SHA-256 fingerprint: "));
  auto r = curl({"-o", "got.bin", "-w", "%{http_code} %{size_download}", server_->url("/hello-world.bin")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "200 " + std::to_string(firmware_.size()));
  EXPECT_EQ(*read_text_file(tmp_ / "got.bin"), firmware_);
  EXPECT_THAT(server_->out(), HasSubstr("\"target\":\"/hello-world.bin\",\"status\":200"));
  kernel_tls_check(*server_);
}

TEST_P(ServeE2e, TlsOffersWhatEsp32MbedtlsNegotiates) {
  // TLS 1.2 ECDHE-ECDSA-AES128-GCM (mbedTLS's default on ESP-IDF), verified against the CA and the IP SAN.
  auto r =
      s_client({"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-GCM-SHA256", "-verify_ip", "127.0.0.1", "-brief"},
               "GET /hello-world.bin HTTP/1.0\r\n\r\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("Verification: OK"));
  EXPECT_THAT(r.err, HasSubstr("Protocol version: TLSv1.2"));
  EXPECT_THAT(r.err, HasSubstr("Ciphersuite: ECDHE-ECDSA-AES128-GCM-SHA256"));
  EXPECT_THAT(r.out, HasSubstr("HTTP/1.0 200 OK\r\n"));
  EXPECT_THAT(r.out, HasSubstr("Content-Length: " + std::to_string(firmware_.size())));
  kernel_tls_check(*server_);  // TLS 1.2 alone so far
  auto r13 = s_client({"-tls1_3", "-verify_ip", "127.0.0.1", "-brief"}, "", false);
  EXPECT_THAT(r13.err, HasSubstr("Protocol version: TLSv1.3"));
  EXPECT_THAT(r13.err, HasSubstr("Verification: OK"));
  // A client that expects another address refuses the certificate.
  auto wrong = s_client({"-verify_ip", "10.99.99.99", "-brief"}, "", false);
  EXPECT_NE(wrong.exit_code, 0);
  EXPECT_THAT(wrong.out + wrong.err, Not(HasSubstr("Verification: OK")));
  // TLS 1.1 is refused.
  auto old = s_client({"-tls1_1", "-brief"}, "", false);
  EXPECT_NE(old.exit_code, 0);
}

TEST_P(ServeE2e, RangeResumeEtagAnd304) {
  auto part =
      curl({"-r", "0-99999", "-o", "resume.bin", "-w", "%{http_code}", server_->url("/hello-world.bin")});
  ASSERT_EQ(part.exit_code, 0) << part.err;
  EXPECT_EQ(part.out, "206");
  EXPECT_EQ(fs::file_size(tmp_ / "resume.bin"), 100000u);
  auto rest = curl({"-C", "-", "-o", "resume.bin", "-w", "%{http_code}", server_->url("/hello-world.bin")});
  ASSERT_EQ(rest.exit_code, 0) << rest.err;
  EXPECT_EQ(rest.out, "206");
  EXPECT_EQ(*read_text_file(tmp_ / "resume.bin"), firmware_);

  auto head = curl({"-I", server_->url("/hello-world.bin")});
  ASSERT_EQ(head.exit_code, 0) << head.err;
  EXPECT_THAT(head.out, HasSubstr("Content-Length: " + std::to_string(firmware_.size())));
  std::smatch m;
  std::regex etag_re("ETag: (\"[^\"]+\")", std::regex::icase);
  ASSERT_TRUE(std::regex_search(head.out, m, etag_re)) << head.out;
  std::string etag = m[1];
  auto cached = curl({"-H", "If-None-Match: " + etag, "-o", "/dev/null", "-w",
                      "%{http_code} %{size_download}", server_->url("/hello-world.bin")});
  EXPECT_EQ(cached.out, "304 0");
  auto past =
      curl({"-r", "999999999-", "-o", "/dev/null", "-w", "%{http_code}", server_->url("/hello-world.bin")});
  EXPECT_EQ(past.out, "416");
}

TEST_P(ServeE2e, NoPathLeavesTheDirectory) {
  for (std::string path : {"/../secret.txt", "/%2e%2e/secret.txt", "/..%2Fsecret.txt", "/nope.bin", "/"}) {
    auto r = curl({"--path-as-is", "-o", "body.json", "-w", "%{http_code}", server_->url(path)});
    EXPECT_EQ(r.out, "404") << path;
    EXPECT_THAT(*read_text_file(tmp_ / "body.json"), HasSubstr("\"error\":\"not_found\"")) << path;
  }
}

TEST_P(ServeE2e, BadInputGetsAStatusAndOthersKeepBeingServed) {
  auto garbage = s_client({"-quiet"}, "THIS IS NOT HTTP\r\n\r\n");
  EXPECT_THAT(garbage.out, HasSubstr("HTTP/1.1 400 Bad Request"));
  EXPECT_THAT(garbage.out, HasSubstr("\"error\":\"bad_request\""));
  auto big = curl({"-H", "X-Big: " + std::string(20000, 'a'), "-o", "/dev/null", "-w", "%{http_code}",
                   server_->url("/hello-world.bin")});
  EXPECT_EQ(big.out, "431");
  auto post = curl({"-X", "POST", "--data-binary", "x", "-o", "/dev/null", "-w", "%{http_code}",
                    server_->url("/hello-world.bin")});
  EXPECT_EQ(post.out, "405");
  // A slow client that never finishes its header gets 408 after --header-timeout (1 s) and is closed.
  auto slow = s_client({"-quiet"}, "GET /hello-world.bin HTTP/1.1\r\nHost: x\r\n");
  EXPECT_FALSE(slow.timed_out);
  EXPECT_THAT(slow.out, HasSubstr("HTTP/1.1 408 Request Timeout"));
  auto ok = curl({"-o", "/dev/null", "-w", "%{http_code}", server_->url("/hello-world.bin")});
  EXPECT_EQ(ok.out, "200");
}

TEST_P(ServeE2e, MetricsCountRequestsHandshakesAndDownloads) {
  ASSERT_EQ(curl({"-o", "/dev/null", server_->url("/hello-world.bin")}).exit_code, 0);
  ASSERT_EQ(curl({"-o", "/dev/null", server_->url("/missing.bin")}).exit_code, 0);
  auto m = curl({server_->url("/metrics")});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_THAT(m.out, HasSubstr("ota32_file_downloads_completed_total{file=\"hello-world.bin\"} 1\n"));
  EXPECT_THAT(m.out, HasSubstr("ota32_http_requests_total{method=\"GET\",code=\"2xx\"} 1\n"));
  EXPECT_THAT(m.out, HasSubstr("ota32_http_requests_total{method=\"GET\",code=\"4xx\"} 1\n"));
  EXPECT_THAT(m.out, HasSubstr("ota32_tls_handshakes_total{result=\"ok\"} 3\n"));
  EXPECT_THAT(m.out, HasSubstr("ota32_connections_active 1\n"));
  kernel_tls_check(*server_);
}

// A TLS client that asks for a file, reads its first bytes and then stops reading, like a device that hangs
// mid-download. Its receive buffer is tiny (an ESP32's window is a few KiB), so the server's writes stall.
class StalledDownload {
 public:
  StalledDownload(uint16_t port, const std::string& path, int max_version = 0) {
    ctx_ = SSL_CTX_new(TLS_client_method());
    if (max_version) SSL_CTX_set_max_proto_version(ctx_, max_version);
    fd_ = connect_loopback(port, 4096);
    if (fd_ < 0) return;
    ssl_ = SSL_new(ctx_);
    SSL_set_fd(ssl_, fd_);
    if (SSL_connect(ssl_) != 1) return;
    std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    if (SSL_write(ssl_, req.data(), static_cast<int>(req.size())) <= 0) return;
    char buf[512];
    int n = SSL_read(ssl_, buf, sizeof buf);
    if (n > 0) received_ = static_cast<std::size_t>(n), started_ = true;
  }
  ~StalledDownload() {
    if (ssl_) SSL_free(ssl_);
    if (fd_ >= 0) ::close(fd_);
    SSL_CTX_free(ctx_);
  }
  bool started() const { return started_; }
  // Reads until the server closes (bounded by SO_RCVTIMEO); returns all bytes received, header included.
  std::size_t read_to_end() {
    timeval tv{10, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[16384];
    for (int n; (n = SSL_read(ssl_, buf, sizeof buf)) > 0;) received_ += static_cast<std::size_t>(n);
    return received_;
  }

 private:
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  int fd_ = -1;
  bool started_ = false;
  std::size_t received_ = 0;
};

// Clients slower than the server: its writes keep finding the socket full in the middle of a round of
// records (the server then keeps only the record OpenSSL started and reads the rest of the round again).
// Every byte arrives, in order, for whole and ranged downloads at once.
TEST_P(ServeE2e, SlowReadersGetEveryByteInOrder) {
  const std::string big = random_bytes((8 << 20) + 12345);
  ASSERT_TRUE(write_file_atomic(tmp_ / "www" / "big.bin", big));
  std::vector<std::thread> readers;
  std::vector<ProcessResult> results(4);
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&, i] {
      std::vector<std::string> a = {"--limit-rate", i % 2 ? "12M" : "20M", "-o", "slow" + std::to_string(i),
                                    "-w",           "%{http_code}"};
      if (i == 3) a.insert(a.end(), {"-r", "1000001-7999999"});
      a.push_back(server_->url("/big.bin"));
      results[i] = curl(a);
    });
  }
  for (auto& t : readers) t.join();
  for (int i = 0; i < 4; ++i) {
    SCOPED_TRACE(i);
    ASSERT_EQ(results[i].exit_code, 0) << results[i].err;
    EXPECT_EQ(results[i].out, i == 3 ? "206" : "200");
    auto got = read_text_file(tmp_ / ("slow" + std::to_string(i)));
    ASSERT_TRUE(got);
    EXPECT_TRUE(*got == (i == 3 ? big.substr(1000001, 6999999) : big)) << "body differs";
  }
  kernel_tls_check(*server_);
}

TEST_P(ServeE2e, AStalledDownloadIsCutAfterTheIoTimeoutWhileOthersAreServed) {
  // 4 MiB: more than the kernel buffers of both ends hold, so the server's writes must stall.
  ASSERT_TRUE(write_file_atomic(tmp_ / "www" / "big.bin", random_bytes(4 << 20)));
  std::string why;
  auto srv = ServeProcess::start(
      with_mode({"--dir", (tmp_ / "www").string(), "--data", (tmp_ / "data").string(), "--io-timeout", "1"}),
      tmp_.path(), &why);
  ASSERT_TRUE(srv) << why;
  StalledDownload stalled(srv->port(), "/big.bin", ktls() ? TLS1_2_VERSION : 0);
  ASSERT_TRUE(stalled.started());
  // Everyone else is served meanwhile.
  auto r = curl({"-o", "/dev/null", "-w", "%{http_code} %{size_download}", srv->url("/hello-world.bin")});
  EXPECT_EQ(r.out, "200 " + std::to_string(firmware_.size()));
  // The server gives up on the stalled client after --io-timeout without progress (bounded wait).
  std::string m;
  for (int i = 0; i < 100; ++i) {
    m = curl({srv->url("/metrics")}).out;
    if (m.find("ota32_timeouts_total 1\n") != std::string::npos &&
        m.find("ota32_connections_active 1\n") != std::string::npos)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_THAT(m, HasSubstr("ota32_timeouts_total 1\n"));
  EXPECT_THAT(m, HasSubstr("ota32_connections_active 1\n"));  // only the metrics request itself
  // The stalled client, reading again, gets what was queued and then the end: never the whole file.
  EXPECT_LT(stalled.read_to_end(), std::size_t{4 << 20});
  kernel_tls_check(*srv);
}

TEST_P(ServeE2e, AnIdleKeepAliveConnectionIsClosedAfterTheIdleTimeout) {
  std::string why;
  auto srv = ServeProcess::start(with_mode({"--dir", (tmp_ / "www").string(), "--data",
                                            (tmp_ / "data").string(), "--idle-timeout", "1"}),
                                 tmp_.path(), &why);
  ASSERT_TRUE(srv) << why;
  // One keep-alive request, then silence: s_client (-ign_eof) returns only when the server closes.
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::string> a = {"s_client", "-connect", "127.0.0.1:" + std::to_string(srv->port()),
                                "-CAfile",  ca_,        "-quiet",
                                "-ign_eof"};
  auto r = run_process("/usr/bin/openssl", a, "GET /hello-world.bin HTTP/1.1\r\nHost: x\r\n\r\n", tmp_.path(),
                       std::chrono::seconds(20));
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(r.timed_out);
  EXPECT_THAT(r.out, HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_GE(r.out.size(), firmware_.size());
  EXPECT_LT(waited, std::chrono::seconds(15));
  auto m = curl({srv->url("/metrics")});
  EXPECT_THAT(m.out, HasSubstr("ota32_connections_active 1\n"));
}

TEST_P(ServeE2e, ASecondServerOnTheSamePortFailsClearly) {
  // One listening socket shared by the threads (no SO_REUSEPORT): a second server cannot silently take half
  // of the connections.
  auto r = run_ota32({"serve", "--data", (tmp_ / "data2").string(), "--bind", "127.0.0.1", "--port",
                      std::to_string(server_->port())});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("cannot listen on 127.0.0.1:" + std::to_string(server_->port())));
  EXPECT_THAT(r.err, HasSubstr("in use"));
  auto ok = curl({"-o", "/dev/null", "-w", "%{http_code}", server_->url("/hello-world.bin")});
  EXPECT_EQ(ok.out, "200");
}

TEST_P(ServeE2e, SigtermStopsGracefullyAndTheCertificateIsKept) {
  EXPECT_THAT(server_->err(), HasSubstr("created a private CA"));
  EXPECT_EQ(server_->stop(SIGTERM), 0);
  EXPECT_THAT(server_->err(), HasSubstr("stopped"));
  std::string why;
  auto again = ServeProcess::start(
      with_mode({"--dir", (tmp_ / "www").string(), "--data", (tmp_ / "data").string()}), tmp_.path(), &why);
  ASSERT_TRUE(again) << why;
  EXPECT_THAT(again->err(), Not(HasSubstr("created a private CA")));
  EXPECT_THAT(again->err(), Not(HasSubstr("issued a new server certificate")));
  auto r = curl({"-o", "/dev/null", "-w", "%{http_code}", again->url("/hello-world.bin")});
  EXPECT_EQ(r.out, "200");
}

// --tls-max 1.2: TLS 1.3 is refused, a default client (which prefers 1.3) gets 1.2, and with --ktls its
// connection goes through the kernel.
TEST_P(ServeE2e, TlsMaxOneTwoOffersTls12Only) {
  std::string why;
  auto srv = ServeProcess::start(
      with_mode({"--dir", (tmp_ / "www").string(), "--data", (tmp_ / "data").string(), "--tls-max", "1.2"}),
      tmp_.path(), &why);
  ASSERT_TRUE(srv) << why;
  auto r = run_process(
      "/usr/bin/curl",
      {"-sS", "-v", "--max-time", "20", "--cacert", ca_, "-o", "got.bin", srv->url("/hello-world.bin")}, {},
      tmp_.path(), std::chrono::seconds(30));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("SSL connection using TLSv1.2"));
  EXPECT_TRUE(*read_text_file(tmp_ / "got.bin") == firmware_) << "the body differs";
  std::vector<std::string> a = {"s_client", "-connect", "127.0.0.1:" + std::to_string(srv->port()),
                                "-CAfile",  ca_,        "-tls1_3",
                                "-brief"};
  auto t13 = run_process("/usr/bin/openssl", a, "", tmp_.path(), std::chrono::seconds(30));
  EXPECT_NE(t13.exit_code, 0);
  EXPECT_THAT(t13.out + t13.err, Not(HasSubstr("Protocol version: TLSv1.3")));
  kernel_tls_check(*srv);
  // The default curl offered 1.3 and got 1.2: with --ktls its download went through the kernel too.
  if (ktls() && kernel_offers_tls())
    EXPECT_TRUE(
        std::regex_search(srv->out(), std::regex("\"target\":\"/hello-world.bin\"[^\n]*\"ktls\":true")))
        << srv->out();
}

// mbedTLS can ask for smaller records (RFC 6066 max_fragment_length, MBEDTLS_SSL_MAX_FRAGMENT_LENGTH: a
// device short of RAM for a 16 KiB input buffer). OpenSSL then cuts each 16 KiB piece the session writes
// into 1 KiB records, and a write the socket cannot take at once resumes mid-piece. (Under --ktls such a
// connection stays in user space: the kernel only does full-size records.)
TEST_P(ServeE2e, ASmallMaxFragmentLengthGetsEveryByte) {
  auto hello = s_client({"-tls1_2", "-maxfraglen", "1024", "-tlsextdebug"}, "", false);
  EXPECT_THAT(hello.out, HasSubstr("TLS server extension \"max fragment length\""));  // negotiated
  auto r = s_client({"-tls1_2", "-maxfraglen", "1024", "-quiet"},
                    "GET /hello-world.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto body_at = r.out.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos) << r.out.substr(0, 200);
  EXPECT_THAT(r.out.substr(0, body_at), HasSubstr("HTTP/1.1 200 OK"));
  EXPECT_TRUE(r.out.substr(body_at + 4) == firmware_) << "the body differs";
}

// A TLS 1.3 client may ask the server to update its keys (KeyUpdate, update_requested) in the middle of a
// connection; the reply to the next request must still arrive intact. With --ktls this is why TLS 1.3 stays
// in user space: with the kernel holding the key, OpenSSL 3.0 cannot follow the update and the client gets
// "bad record mac" (seen in the guest before the server kept kTLS to TLS 1.2).
TEST_P(ServeE2e, Tls13KeyUpdateMidConnectionKeepsTheStreamIntact) {
  const std::string before = curl({server_->url("/metrics")}).out;
  // s_client sends a KeyUpdate requesting the peer's update for an input line "K" (not with -ign_eof), then
  // the request; stdin stays open long enough for the whole reply. (-quiet would imply -ign_eof.)
  std::string script =
      "(printf 'K\\n'; sleep 0.5; printf 'GET /hello-world.bin HTTP/1.1\\r\\nHost: x\\r\\n"
      "Connection: close\\r\\n\\r\\n'; sleep 2) | openssl s_client -connect 127.0.0.1:" +
      std::to_string(server_->port()) + " -CAfile " + ca_ + " -tls1_3 -brief";
  auto r = run_process("/bin/sh", {"-c", script}, {}, tmp_.path(), std::chrono::seconds(30));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("KEYUPDATE"));
  EXPECT_THAT(r.err, Not(HasSubstr("bad record mac")));
  auto body_at = r.out.find("\r\n\r\n");
  ASSERT_NE(body_at, std::string::npos) << r.out.substr(0, 200);
  EXPECT_TRUE(r.out.substr(body_at + 4) == firmware_) << "the body differs";
  // TLS 1.3 connections are never handed to the kernel (only this test's and the metrics' TLS 1.2 ones).
  std::smatch b, a;
  std::regex counter("\\nota32_tls_kernel_connections_total (\\d+)\\n");
  const std::string after = curl({server_->url("/metrics")}).out;
  ASSERT_TRUE(std::regex_search(before, b, counter) && std::regex_search(after, a, counter));
  EXPECT_LE(std::stol(a[1]) - std::stol(b[1]), 1) << "a TLS 1.3 connection went to the kernel";
}

// SIGHUP reloads the certificate (a renewed --cert, as certbot leaves it): new connections get the new
// one; a file that does not load keeps the current one in place; the server serves on throughout.
TEST_P(ServeE2e, SighupReloadsTheCertificateAndKeepsTheOldOneWhenTheNewDoesNotLoad) {
  // A second CA and server certificate: another zero-config data directory.
  std::string why;
  auto other = ServeProcess::start({"--data", (tmp_ / "data2").string()}, tmp_.path(), &why);
  ASSERT_TRUE(other) << why;
  other->stop(SIGTERM);
  const std::string ca2 = (tmp_ / "data2" / "ca_cert.pem").string();
  auto copy = [&](const fs::path& from, const fs::path& to) {
    ASSERT_TRUE(write_file_atomic(to, *read_text_file(from)));
  };
  copy(tmp_ / "data" / "server_cert.pem", tmp_ / "cert.pem");
  copy(tmp_ / "data" / "server_key.pem", tmp_ / "key.pem");
  auto srv = ServeProcess::start(
      with_mode({"--dir", (tmp_ / "www").string(), "--data", (tmp_ / "data3").string(), "--cert",
                 (tmp_ / "cert.pem").string(), "--key", (tmp_ / "key.pem").string()}),
      tmp_.path(), &why);
  ASSERT_TRUE(srv) << why;
  auto get = [&](const std::string& ca) {
    return run_process("/usr/bin/curl",
                       {"-sS", "--max-time", "20", "--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}",
                        srv->url("/hello-world.bin")},
                       {}, tmp_.path(), std::chrono::seconds(30));
  };
  EXPECT_EQ(get(ca_).out, "200");
  EXPECT_NE(get(ca2).exit_code, 0);

  copy(tmp_ / "data2" / "server_cert.pem", tmp_ / "cert.pem");
  copy(tmp_ / "data2" / "server_key.pem", tmp_ / "key.pem");
  srv->signal(SIGHUP);
  ASSERT_TRUE(srv->wait_for_err("reloaded: new connections use this certificate")) << srv->err();
  EXPECT_EQ(get(ca2).out, "200");
  EXPECT_NE(get(ca_).exit_code, 0);

  ASSERT_TRUE(write_file_atomic(tmp_ / "cert.pem", std::string_view("not a certificate\n")));
  srv->signal(SIGHUP);
  ASSERT_TRUE(srv->wait_for_err("reload failed, still serving the previous certificate")) << srv->err();
  EXPECT_THAT(srv->err(), HasSubstr("cert.pem: cannot load certificate chain"));
  EXPECT_EQ(get(ca2).out, "200");
  EXPECT_EQ(srv->stop(SIGTERM), 0);
}

INSTANTIATE_TEST_SUITE_P(Tls, ServeE2e, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) {
                           return i.param ? "Ktls" : "UserSpace";
                         });

TEST(ServeCli, BadOptionsFailClearly) {
  TempDir tmp;
  auto r =
      run_ota32({"serve", "--dir", (tmp / "absent").string(), "--data", (tmp / "d").string(), "--port", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--dir"));
  EXPECT_THAT(r.err, HasSubstr("not a directory"));
  auto k = run_ota32({"serve", "--cert", (tmp / "c.pem").string(), "--data", (tmp / "d").string()});
  EXPECT_EQ(k.exit_code, 1);
  EXPECT_THAT(k.err, HasSubstr("--cert and --key go together"));
  auto p = run_ota32({"serve", "--port", "70000"});
  EXPECT_EQ(p.exit_code, 2);
  EXPECT_THAT(p.err, ::testing::StartsWith("ota32: "));
}

// `ota32 serve` and `ota32 fw` run the ota32-serve executable; their help names what the user typed.
TEST(ServeCli, HelpNamesTheOta32Command) {
  auto s = run_ota32({"serve", "--help"});
  EXPECT_EQ(s.exit_code, 0);
  EXPECT_THAT(s.out, HasSubstr("Usage: ota32 serve [OPTIONS]"));
  auto f = run_ota32({"fw", "push", "--help"});
  EXPECT_EQ(f.exit_code, 0);
  EXPECT_THAT(f.out, HasSubstr("Usage: ota32 fw push [OPTIONS]"));
}

}  // namespace
}  // namespace ota32::testing
