// A broken pipe between the device and the server (issue 26 item 8): the real `ota32 serve` on 127.0.0.1, a
// fault-injecting TCP proxy (tests/e2e/fault_proxy.h) started by the test in front of it, and a virtual
// ESP32 updating through the proxy with `ota32 device ota`. One test per fault: FIN after N bytes, RST, a
// stall, a flipped bit (in the body, the request, the handshake, the certificate), the stream cut inside
// the record carrying the response header or inside the handshake, FIN on every connection, throttling and
// latency. Each asserts the outcome: installed after a resume with the image's exact SHA-256, or a clean
// abort with a clear one-line error and the old image still booting; and that the server survived (a direct
// download is whole, the process alive).
#include <signal.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "core/hash.h"
#include "e2e/fault_proxy.h"
#include "e2e/run_process.h"
#include "e2e/seed_device.h"
#include "e2e/serve_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using Kind = Fault::Kind;
using Anchor = Fault::Anchor;
using Direction = Fault::Direction;

constexpr uint64_t kImageSize = 300 * 1024;

// One server for the suite (with a test's own device and proxy): starting it is the slow part.
class FaultProxyE2e : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(testdata_dir())) return;
    suite_ = new Suite;
    fs::create_directories(suite_->dir() / "www");
    run_ota32_ok({"image", "make", "-o", (suite_->dir() / "v1.bin").string(), "--chip", "esp32", "--project",
                  "simple_ota", "--version", "1", "--size", "200K"});
    run_ota32_ok({"image", "make", "-o", (suite_->dir() / "www" / "v2.bin").string(), "--chip", "esp32",
                  "--project", "simple_ota", "--version", "2", "--size", std::to_string(kImageSize)});
    auto bytes = read_file(suite_->dir() / "www" / "v2.bin");
    ASSERT_TRUE(bytes);
    suite_->image_size = bytes->size();
    suite_->sha256 = to_hex(sha256(*bytes));
    std::string why;
    suite_->server = ServeProcess::start({"--dir", (suite_->dir() / "www").string(), "--data",
                                          (suite_->dir() / "data").string(), "--access-log", "off"},
                                         suite_->dir(), &why);
    ASSERT_TRUE(suite_->server) << why;
    suite_->ca = suite_->dir() / "data" / "ca_cert.pem";
    suite_->server_cert_der = certificate_der(suite_->dir() / "data" / "server_cert.pem", suite_->dir());
  }
  static void TearDownTestSuite() {
    delete suite_;
    suite_ = nullptr;
  }

  void SetUp() override {
    OTA32_REQUIRE_TESTDATA();
    ASSERT_TRUE(suite_ && suite_->server);
    dev_ = tmp_.path() / "dev";
    ASSERT_NO_FATAL_FAILURE(flash_seed_device(tmp_.path(), dev_, suite_->dir() / "v1.bin", {}));
  }

  void TearDown() override {
    if (HasFailure() || !suite_ || !suite_->server) return;
    // The server survived: alive, and a download straight to it (not through the proxy) is whole.
    EXPECT_EQ(::kill(suite_->server->pid(), 0), 0) << "ota32 serve died\n" << suite_->server->err();
    auto r = run_process("/usr/bin/curl",
                         {"-sS", "--cacert", suite_->ca.string(), "-o", (tmp_.path() / "direct.bin").string(),
                          "-w", "%{http_code}", suite_->server->url("/v2.bin")},
                         {}, tmp_.path(), std::chrono::seconds(30));
    EXPECT_EQ(r.out, "200") << r.err;
    auto got = read_file(tmp_.path() / "direct.bin");
    ASSERT_TRUE(got);
    EXPECT_EQ(to_hex(sha256(*got)), suite_->sha256);
  }

  // `ota32 device ota DEV https://127.0.0.1:<proxy>/v2.bin --json`: the JSON it printed.
  // The read timeout is long enough that a loaded machine does not add a reconnect of its own; the stall
  // test shortens it.
  nlohmann::json ota(const FaultProxy& proxy, ProcessResult* result = nullptr, uint64_t timeout_ms = 8000) {
    auto r = run_ota32({"device", "ota", dev_.string(),
                        "https://127.0.0.1:" + std::to_string(proxy.port()) + "/v2.bin", "--ca",
                        suite_->ca.string(), "--timeout", std::to_string(timeout_ms), "--json"});
    EXPECT_FALSE(r.timed_out);
    if (result) *result = r;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out << r.err;
    if (j.is_object() && j["ok"] == true) EXPECT_EQ(r.exit_code, 0) << r.err;
    return j.is_object() ? j : nlohmann::json::object();
  }

  static std::string log_text(const nlohmann::json& j) {
    std::string s;
    if (j.contains("log"))
      for (const auto& l : j["log"]) s += l.get<std::string>() + "\n";
    return s;
  }

  // The download was installed whole: the slot holds the served bytes and the next boot starts them.
  void expect_installed(const nlohmann::json& j, int connections, int at_most = 0) {
    EXPECT_EQ(j.value("ok", false), true) << j.dump(2);
    EXPECT_EQ(j.value("sha256", ""), suite_->sha256);
    EXPECT_EQ(j.value("size", 0u), suite_->image_size);
    if (at_most == 0) {
      EXPECT_EQ(j.value("connections", 0), connections) << log_text(j);
    } else {
      EXPECT_GE(j.value("connections", 0), connections) << log_text(j);
      EXPECT_LE(j.value("connections", 0), at_most) << log_text(j);
    }
    EXPECT_EQ(booted_app(dev_), "ota_0 2");
  }

  // A clean abort: exit 1, one line on stderr, and the old image still boots (otadata untouched).
  void expect_aborted(const nlohmann::json& j, const ProcessResult& r, const std::string& code,
                      const std::string& message) {
    EXPECT_EQ(j.value("ok", true), false) << j.dump(2);
    EXPECT_EQ(j.value("code", ""), code) << j.dump(2);
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_THAT(r.err, HasSubstr(message));
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.err.starts_with("ota32: ")) << r.err;
    EXPECT_EQ(booted_app(dev_), "factory 1");
  }

  static Fault on_first(Fault f, int connection, int first = 0) {
    return connection == first ? f : Fault::none();
  }

  // The server certificate's DER bytes, as they cross the wire in the handshake.
  static std::string certificate_der(const fs::path& pem, const fs::path& dir) {
    auto der = dir / "server_cert.der";
    auto r = run_process("/usr/bin/openssl",
                         {"x509", "-in", pem.string(), "-outform", "DER", "-out", der.string()});
    auto bytes = read_file(der);
    return r.exit_code == 0 && bytes ? std::string(bytes->begin(), bytes->end()) : std::string();
  }

  struct Suite {
    TempDir tmp;
    fs::path dir() const { return tmp.path(); }
    std::unique_ptr<ServeProcess> server;
    fs::path ca;
    std::string sha256, server_cert_der;
    uint64_t image_size = 0;
  };
  static Suite* suite_;
  TempDir tmp_;
  fs::path dev_;
};
FaultProxyE2e::Suite* FaultProxyE2e::suite_ = nullptr;

TEST_F(FaultProxyE2e, NoFaultInstallsInOneConnection) {
  FaultProxy proxy(suite_->server->port(), [](int) { return Fault::none(); });
  expect_installed(ota(proxy), 1);
  EXPECT_EQ(proxy.connections(), 1);
}

TEST_F(FaultProxyE2e, FinInTheBodyResumesWithRange) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::fin, Direction::to_client, Anchor::first_app_data, 150000}, i);
  });
  auto j = ota(proxy);
  expect_installed(j, 2);
  EXPECT_EQ(proxy.faults_applied(), 1);
  EXPECT_THAT(log_text(j), HasSubstr("Reconnecting in"));
}

TEST_F(FaultProxyE2e, ResetInTheBodyResumesWithRange) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::rst, Direction::to_client, Anchor::first_app_data, 100000}, i);
  });
  auto j = ota(proxy);
  expect_installed(j, 2);
  EXPECT_EQ(proxy.faults_applied(), 1);
}

TEST_F(FaultProxyE2e, StallInTheBodyTimesOutAndResumes) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::stall, Direction::to_client, Anchor::first_app_data, 120000}, i);
  });
  // A 2 s read timeout: on a loaded machine another read may time out too, hence "2 or 3 connections".
  auto j = ota(proxy, nullptr, 2000);
  expect_installed(j, 2, 3);
  EXPECT_THAT(log_text(j), HasSubstr("no data from the server within 2000 ms"));
}

// TLS finds the flipped bit (the record's MAC fails): the connection is dropped, never a byte of it written
// as image data, and the download resumes from the last good byte.
TEST_F(FaultProxyE2e, BitFlipInTheBodyIsCaughtByTlsAndResumed) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::flip, Direction::to_client, Anchor::first_app_data, 200000, 0x10}, i);
  });
  auto j = ota(proxy);
  expect_installed(j, 2);
  EXPECT_THAT(log_text(j), HasSubstr("TLS read failed"));
}

// A bit flipped on the way to the server: the server refuses the record and closes; the agent reconnects.
TEST_F(FaultProxyE2e, BitFlipInTheRequestIsRefusedByTheServer) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::flip, Direction::to_server, Anchor::first_app_data, 20, 0x01}, i);
  });
  auto j = ota(proxy);
  expect_installed(j, 2);
  EXPECT_EQ(proxy.faults_applied(), 1);
}

// The stream ends inside the TLS record that carries the response header: no header reaches the agent.
TEST_F(FaultProxyE2e, CutInsideTheResponseHeaderReconnects) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::fin, Direction::to_client, Anchor::first_app_data, 20}, i);
  });
  auto j = ota(proxy);
  expect_installed(j, 2);
  EXPECT_EQ(proxy.faults_applied(), 1);
}

TEST_F(FaultProxyE2e, CutInsideTheHandshakeReconnects) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::fin, Direction::to_client, Anchor::stream, 60}, i);
  });
  auto j = ota(proxy);
  expect_installed(j, 2);
  EXPECT_THAT(log_text(j), HasSubstr("Failed to open HTTP connection"));
}

// The server random changed in flight: the handshake's Finished check fails; the next connection is clean.
TEST_F(FaultProxyE2e, BitFlipInTheHandshakeReconnects) {
  FaultProxy proxy(suite_->server->port(), [](int i) {
    return on_first({Kind::flip, Direction::to_client, Anchor::stream, 20, 0x80}, i);
  });
  auto j = ota(proxy);
  expect_installed(j, 2);
}

// A certificate changed in flight no longer verifies: that is not retried (certificate_untrusted), nothing is
// written and the device keeps booting its image.
TEST_F(FaultProxyE2e, BitFlipInTheCertificateAbortsCleanly) {
  ASSERT_FALSE(suite_->server_cert_der.empty());
  Fault f{Kind::flip, Direction::to_client, Anchor::pattern, suite_->server_cert_der.size() - 3, 0x01};
  f.pattern = suite_->server_cert_der.substr(0, 64);
  FaultProxy proxy(suite_->server->port(), [f](int) { return f; });
  ProcessResult r;
  auto j = ota(proxy, &r);
  expect_aborted(j, r, "certificate_untrusted", "server certificate");
  EXPECT_EQ(proxy.connections(), 1);
  EXPECT_EQ(proxy.faults_applied(), 1);
}

// Every connection is cut after 30000 bytes of the response: the agent gives up after its bounded number of
// connections with a clear error, the old image boots, and the progress is kept: the next `device ota`
// (the network healed) resumes from where it was instead of starting over.
TEST_F(FaultProxyE2e, FinOnEveryConnectionAbortsCleanlyThenResumesLater) {
  FaultProxy proxy(suite_->server->port(), [](int) {
    return Fault{Kind::fin, Direction::to_client, Anchor::first_app_data, 30000};
  });
  ProcessResult r;
  auto j = ota(proxy, &r);
  expect_aborted(j, r, "unavailable", "connection closed after");
  EXPECT_EQ(j.value("connections", 0), 0);  // not printed for a failure
  EXPECT_EQ(proxy.connections(), 5);
  proxy.set_plan([](int) { return Fault::none(); });
  j = ota(proxy);
  EXPECT_EQ(j.value("ok", false), true) << j.dump(2);
  // Progress is saved at sector boundaries (HttpsOtaConfig::cadence) and when a connection drops, so the
  // resume point is the start of the sector of the last save before the fifth cut.
  EXPECT_GE(j.value("resumed_from", 0u), 64 * 1024u);
  EXPECT_LT(j.value("resumed_from", 0u), 5 * 30000u);
  EXPECT_THAT(log_text(j), HasSubstr("Resuming the interrupted download at byte"));
  EXPECT_EQ(j.value("sha256", ""), suite_->sha256);
  EXPECT_EQ(booted_app(dev_), "ota_0 2");
}

TEST_F(FaultProxyE2e, ThrottledLinkStillCompletes) {
  FaultProxy proxy(suite_->server->port(), [](int) {
    Fault f{Kind::throttle};
    f.bytes_per_second = 400 * 1024;
    return f;
  });
  expect_installed(ota(proxy), 1);
}

TEST_F(FaultProxyE2e, LatencyOnEveryChunkStillCompletes) {
  FaultProxy proxy(suite_->server->port(), [](int) {
    Fault f{Kind::delay};
    f.latency = std::chrono::milliseconds(30);
    return f;
  });
  expect_installed(ota(proxy), 1);
}

}  // namespace
}  // namespace ota32::testing
