// The seed's flow end to end with the real binaries on 127.0.0.1: ota32 serve (zero-config TLS) serving
// v2..v4 made by `ota32 image make`, a virtual ESP32 flashed like `idf.py flash` with a factory v1, and
// `ota32 device run` doing what simple_ota_example does: OTA into ota_0, reboot, then ota_1, then a v4 whose
// self-test fails (rollback to v3), then a resume after a cut connection and after a power cut; failure
// cases leave the running image booting. One more run against `openssl s_server -WWW`, the seed's server.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "e2e/seed_device.h"
#include "e2e/serve_process.h"
#include "test_support.h"
#include "tls_fixture.h"

namespace ota32 {
namespace {

namespace fs = std::filesystem;
using testing::run_ota32;

class SeedFlow : public ::testing::Test {
 protected:
  void make_image(const std::string& version, const fs::path& out, const std::string& chip = "esp32",
                  const std::string& size = "200K") {
    testing::run_ota32_ok({"image", "make", "-o", out.string(), "--chip", chip, "--project", "simple_ota",
                           "--version", version, "--size", size});
  }
  // A fresh device flashed like the seed's `idf.py flash`: bootloader, table, ota_data_initial, factory v1.
  void new_device(const fs::path& dev) {
    if (!fs::exists(dir_ / "v1.bin")) make_image("1", dir_ / "v1.bin");
    testing::flash_seed_device(dir_, dev, dir_ / "v1.bin", {"--rollback"});
  }
  void set_app(const fs::path& dev, const nlohmann::json& app) {
    auto j = nlohmann::json::parse(*read_text_file(dev / "device.json"));
    for (auto& [k, v] : app.items()) j["app"][k] = v;
    ASSERT_TRUE(write_file_atomic(dev / "device.json", j.dump(2)));
  }

  testing::TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

TEST_F(SeedFlow, ServeUpdatesRollbackAndResume) {
  OTA32_REQUIRE_TESTDATA();
  fs::create_directories(dir_ / "www");
  make_image("2", dir_ / "www" / "v2.bin");
  make_image("3", dir_ / "www" / "v3.bin");
  make_image("4", dir_ / "www" / "v4.bin");
  make_image("5", dir_ / "www" / "v5.bin", "esp32", "900K");
  make_image("9", dir_ / "www" / "c3.bin", "esp32c3");
  make_image("8", dir_ / "www" / "big.bin", "esp32", "1200K");
  std::string why;
  auto server = testing::ServeProcess::start(
      {"--dir", (dir_ / "www").string(), "--data", (dir_ / "data").string(), "--access-log", "off"}, dir_,
      &why);
  ASSERT_TRUE(server) << why;
  fs::path ca = dir_ / "data" / "ca_cert.pem";
  ASSERT_TRUE(fs::exists(ca));
  fs::path dev = dir_ / "dev";
  new_device(dev);

  // Boot factory v1, OTA v2 into ota_0 (subtype 16 at 0x110000), reboot into it.
  set_app(dev, {{"ota_url", server->url("/v2.bin")}, {"ca_cert", ca.string()}, {"self_test_fails", {"4"}}});
  std::string out = testing::run_device(dev);
  for (const char* line :
       {"boot: Defaulting to factory image", "esp_https_ota: Starting OTA...",
        "esp_https_ota: Writing to partition subtype 16 at offset 0x110000",
        "esp_image: segment 0: paddr=00110020", "simple_ota_example: Prepare to restart system!",
        "boot: Loaded app from partition at offset 0x110000", "App version:      2",
        "Current running version is the same as a new"}) {
    EXPECT_NE(out.find(line), std::string::npos) << "missing '" << line << "' in:\n" << out;
  }
  EXPECT_EQ(testing::booted_app(dev), "ota_0 2");

  // v3 into ota_1.
  set_app(dev, {{"ota_url", server->url("/v3.bin")}});
  out = testing::run_device(dev);
  EXPECT_NE(out.find("Writing to partition subtype 17 at offset 0x210000"), std::string::npos) << out;
  EXPECT_NE(out.find("Loaded app from partition at offset 0x210000"), std::string::npos) << out;
  EXPECT_EQ(testing::booted_app(dev), "ota_1 3");

  // v4 fails its self-test: marked invalid, rollback to v3, and never installed again.
  set_app(dev, {{"ota_url", server->url("/v4.bin")}});
  out = testing::run_device(dev);
  EXPECT_NE(out.find("App version:      4"), std::string::npos) << out;
  EXPECT_NE(out.find("self-test of version 4 failed"), std::string::npos) << out;
  EXPECT_NE(out.find("New version is the same as invalid version"), std::string::npos) << out;
  EXPECT_EQ(testing::booted_app(dev), "ota_1 3");

  // Failure cases: a clear one-line error, exit 1, and v3 keeps booting. Without --ca, `device ota` uses the
  // CA of device.json: cleared here, so that the first case has none at all.
  set_app(dev, {{"ca_cert", ""}});
  struct Case {
    std::vector<std::string> extra;
    std::string url, message;
  };
  std::vector<Case> cases = {
      {{}, server->url("/v5.bin"), "no CA certificate given"},
      {{"--ca", (testing::testdata_dir() / ".." / "seed" / "missing.pem").string()},
       server->url("/v5.bin"),
       "--ca"},
      {{"--ca", ca.string()}, server->url("/hello-world.bin"), "firmware not found at https://127.0.0.1:"},
      {{"--ca", ca.string()},
       server->url("/c3.bin"),
       "image is for esp32c3 (chip id 5), this device is esp32"},
      {{"--ca", ca.string()}, server->url("/big.bin"), "larger than the ota_0 partition"},
      {{"--ca", ca.string()},
       "https://localhost.invalid:" + std::to_string(server->port()) + "/v5.bin",
       "cannot resolve host"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> args = {"device", "ota", dev.string(), c.url};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    auto r = run_ota32(args);
    EXPECT_EQ(r.exit_code, 1) << c.url;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "wanted '" << c.message << "' in: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(testing::booted_app(dev), "ota_1 3");
  }

  // Power cut after 300000 bytes, then the next OTA resumes with Range from the saved progress.
  auto cut = run_ota32(
      {"device", "ota", dev.string(), server->url("/v5.bin"), "--ca", ca.string(), "--stop-after", "300000"});
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_TRUE(fs::exists(dev / "ota_progress.json"));
  EXPECT_EQ(testing::booted_app(dev), "ota_1 3");
  auto resumed =
      run_ota32({"device", "ota", dev.string(), server->url("/v5.bin"), "--ca", ca.string(), "--json"});
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  auto j = nlohmann::json::parse(resumed.out);
  // The power went at byte 300000 (the Flash's BudgetFlash); the progress was last saved where the writes
  // crossed 262144 (every 64 sectors, device.json's default progress_sectors), so the resume starts at that
  // sector: 37856 bytes are downloaded again, none is claimed that was not in flash.
  EXPECT_EQ(j["resumed_from"], 262144);
  EXPECT_EQ(j["partition"], "ota_0");
  EXPECT_FALSE(fs::exists(dev / "ota_progress.json"));
  EXPECT_EQ(testing::booted_app(dev), "ota_0 5");
}

TEST_F(SeedFlow, AgainstOpensslSServerLikeTheSeed) {
  OTA32_REQUIRE_TESTDATA();
  testing::TestPki pki;
  ASSERT_TRUE(pki.create(dir_ / "pki"));
  fs::create_directories(dir_ / "www");
  make_image("2", dir_ / "www" / "simple_ota.bin");
  testing::OpensslServer server;
  ASSERT_TRUE(server.start(dir_ / "www", pki.seed_cert, pki.seed_key));
  fs::path dev = dir_ / "dev";
  new_device(dev);
  set_app(dev, {{"ota_url", "https://127.0.0.1:" + std::to_string(server.port()) + "/simple_ota.bin"},
                {"ca_cert", pki.seed_cert.string()}});
  std::string out = testing::run_device(dev);
  EXPECT_NE(out.find("esp_https_ota: Writing to partition subtype 16 at offset 0x110000"), std::string::npos)
      << out;
  EXPECT_NE(out.find("esp_https_ota: Connection closed"), std::string::npos) << out;
  EXPECT_EQ(testing::booted_app(dev), "ota_0 2");
  // The seed's error cases against s_server: wrong CA, and a certificate for another address.
  auto wrong_ca = run_ota32({"device", "ota", dev.string(),
                             "https://127.0.0.1:" + std::to_string(server.port()) + "/simple_ota.bin", "--ca",
                             pki.other_ca_cert.string(), "--force", "--json"});
  EXPECT_EQ(wrong_ca.exit_code, 1);
  // --json names the cause: an untrusted certificate and a name mismatch are not a bad image signature.
  EXPECT_NE(wrong_ca.out.find(R"("code": "certificate_untrusted")"), std::string::npos) << wrong_ca.out;
  EXPECT_NE(wrong_ca.err.find("server certificate not trusted by the CA in"), std::string::npos)
      << wrong_ca.err;
  testing::OpensslServer wrong;
  ASSERT_TRUE(wrong.start(dir_ / "www", pki.wrong_cert, pki.wrong_key));
  auto wrong_name = run_ota32({"device", "ota", dev.string(),
                               "https://127.0.0.1:" + std::to_string(wrong.port()) + "/simple_ota.bin",
                               "--ca", pki.ca_cert.string(), "--force", "--json"});
  EXPECT_EQ(wrong_name.exit_code, 1);
  EXPECT_NE(wrong_name.out.find(R"("code": "certificate_name_mismatch")"), std::string::npos)
      << wrong_name.out;
  EXPECT_NE(wrong_name.err.find("server certificate is for example.com, not 127.0.0.1"), std::string::npos)
      << wrong_name.err;
  EXPECT_EQ(testing::booted_app(dev), "ota_0 2");
}

}  // namespace
}  // namespace ota32
