// The update-server path end to end with the real binaries on 127.0.0.1: `ota32 serve` (zero-config TLS,
// catalog in a temp data dir), `ota32 fw push` with the admin token, and a virtual ESP32 whose device.json
// sets app.update_server + the printed CA, driven by `ota32 device run`. What the device reported is read
// back through the server's admin API (GET /api/v1/devices): state and running version after an update,
// after a rollback (a version whose self-test fails) and after a failed download.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "e2e/seed_device.h"
#include "e2e/serve_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr const char* kMac = "24:0a:c4:00:00:07";  // the device id the agent reports under (its MAC)

class UpdateServerE2e : public ::testing::Test {
 protected:
  void make_image(const std::string& version, const std::string& size = "200K",
                  const std::string& secure_version = "0") {
    run_ota32_ok({"image", "make", "-o", (dir_ / ("v" + version + ".bin")).string(), "--chip", "esp32",
                  "--project", "simple_ota", "--version", version, "--size", size, "--secure-version",
                  secure_version});
  }
  void start_server() {
    std::string why;
    server_ = ServeProcess::start({"--data", (dir_ / "data").string(), "--access-log", "off"}, dir_, &why);
    ASSERT_TRUE(server_) << why;
    std::string out = server_->out();
    auto at = out.find("admin token: ");
    ASSERT_NE(at, std::string::npos) << out;
    token_ = out.substr(at + 13, 64);
    ca_ = dir_ / "data" / "ca_cert.pem";
    ASSERT_TRUE(fs::exists(ca_));
  }
  ProcessResult push(const std::string& version) {
    return run_ota32({"fw", "push", (dir_ / ("v" + version + ".bin")).string(), "--server", server_->url(""),
                      "--token", token_, "--ca", ca_.string()});
  }
  // GET an admin API path with the token; the parsed JSON (discarded on failure).
  nlohmann::json admin_get(const std::string& path) {
    auto r = run_process(
        "/usr/bin/curl",
        {"-sS", "--cacert", ca_.string(), "-H", "Authorization: Bearer " + token_, server_->url(path)}, {},
        dir_, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }
  // The device's record in GET /api/v1/devices (null when it is not listed).
  nlohmann::json device_record() {
    auto all = admin_get("/api/v1/devices");
    EXPECT_TRUE(all.is_object()) << all.dump();
    if (!all.is_object() || !all["devices"].is_array()) return nullptr;
    for (const auto& d : all["devices"])
      if (d.value("id", "") == kMac) return d;
    return nullptr;
  }

  TempDir tmp_;
  fs::path dir_ = tmp_.path();
  fs::path dev_ = dir_ / "dev";
  fs::path ca_;
  std::string token_;
  std::unique_ptr<ServeProcess> server_;
};

TEST_F(UpdateServerE2e, DeviceReportsUpdateRollbackAndFailure) {
  OTA32_REQUIRE_TESTDATA();
  for (const char* v : {"1", "2", "3"}) make_image(v);
  make_image("4", "1200K");  // larger than the 1M slots
  ASSERT_NO_FATAL_FAILURE(start_server());
  std::string out;

  // A device flashed like `idf.py flash` (factory v1), rollback enabled, asking the server for updates.
  ASSERT_NO_FATAL_FAILURE(flash_seed_device(dir_, dev_, dir_ / "v1.bin", {"--rollback", "--mac", kMac}));
  auto cfg = nlohmann::json::parse(*read_text_file(dev_ / "device.json"));
  cfg["app"]["update_server"] = server_->url("");
  cfg["app"]["ca_cert"] = ca_.string();
  cfg["app"]["self_test_fails"] = {"3"};
  ASSERT_TRUE(write_file_atomic(dev_ / "device.json", cfg.dump(2)));

  // Nothing in the catalog: the device asks, gets 204 and keeps running v1 (no report yet).
  out = run_device(dev_);
  EXPECT_THAT(out, HasSubstr("no update for simple_ota version 1"));
  EXPECT_TRUE(device_record().is_null());

  // v2 in the catalog: downloading, installed, reboot into ota_0, booted.
  auto pushed = push("2");
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  out = run_device(dev_);
  EXPECT_THAT(out, HasSubstr("esp_https_ota: Writing to partition subtype 16 at offset 0x110000"));
  EXPECT_THAT(out, HasSubstr("self-test of version 2 passed"));
  EXPECT_THAT(out, HasSubstr("no update for simple_ota version 2"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("report to")));  // no report was refused
  EXPECT_EQ(booted_app(dev_), "ota_0 2");
  auto d = device_record();
  ASSERT_TRUE(d.is_object()) << admin_get("/api/v1/devices").dump();
  EXPECT_EQ(d["state"], "booted");
  EXPECT_EQ(d["running_version"], "2");
  EXPECT_EQ(d["project"], "simple_ota");
  EXPECT_EQ(d["chip"], "esp32");
  EXPECT_EQ(d["last_error"], "");
  auto history = admin_get(std::string("/api/v1/devices/") + kMac + "?reports=10");
  ASSERT_TRUE(history.is_object()) << history.dump();
  std::vector<std::string> states;
  for (const auto& r : history["reports"])
    states.push_back(r["state"].get<std::string>() + " " + r["version"].get<std::string>());
  EXPECT_EQ(states, (std::vector<std::string>{"booted 2", "installed 1", "downloading 1"}));

  // v3 fails its self-test: marked invalid, the bootloader goes back to v2, which reports rolled_back and
  // does not install v3 again.
  pushed = push("3");
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  out = run_device(dev_);
  EXPECT_THAT(out, HasSubstr("esp_https_ota: Writing to partition subtype 17 at offset 0x210000"));
  EXPECT_THAT(out, HasSubstr("self-test of version 3 failed"));
  EXPECT_THAT(out, HasSubstr("New version is the same as invalid version"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("report to")));
  EXPECT_EQ(booted_app(dev_), "ota_0 2");
  d = device_record();
  ASSERT_TRUE(d.is_object());
  EXPECT_EQ(d["state"], "rolled_back");
  EXPECT_EQ(d["running_version"], "2");
  EXPECT_THAT(d["last_error"].get<std::string>(), HasSubstr("version 3 did not stay booted"));

  // v4 does not fit in the slot: failed with the reason, v2 keeps running.
  pushed = push("4");
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  out = run_device(dev_);
  EXPECT_THAT(out, HasSubstr("Firmware upgrade failed"));
  EXPECT_EQ(booted_app(dev_), "ota_0 2");
  d = device_record();
  ASSERT_TRUE(d.is_object());
  EXPECT_EQ(d["state"], "failed");
  EXPECT_EQ(d["running_version"], "2");
  EXPECT_THAT(d["last_error"].get<std::string>(), HasSubstr("larger than the ota_1 partition"));
}

// Server-side anti-rollback: the agent sends its running app's secure_version with each check, and a newer
// version whose secure_version is lower is not offered (the server log says why); one at or above it is.
TEST_F(UpdateServerE2e, ANewerVersionBelowTheDevicesSecureVersionIsNotOffered) {
  OTA32_REQUIRE_TESTDATA();
  make_image("1", "200K", "2");
  make_image("2", "200K", "1");
  make_image("3", "200K", "2");
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(flash_seed_device(dir_, dev_, dir_ / "v1.bin", {"--mac", kMac}));
  auto cfg = nlohmann::json::parse(*read_text_file(dev_ / "device.json"));
  cfg["app"]["update_server"] = server_->url("");
  cfg["app"]["ca_cert"] = ca_.string();
  ASSERT_TRUE(write_file_atomic(dev_ / "device.json", cfg.dump(2)));

  auto pushed = push("2");
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  std::string out = run_device(dev_);
  EXPECT_THAT(out, HasSubstr("no update for simple_ota version 1"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("esp_https_ota: Writing to partition")));
  EXPECT_TRUE(
      server_->wait_for_err(std::string("ota32-serve: update check from ") + kMac +
                            ": not offering simple_ota 2 (esp32, channel stable): its secure_version 1 is "
                            "below the device's 2 (anti-rollback); answered no update"))
      << server_->err();

  pushed = push("3");
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  out = run_device(dev_);
  EXPECT_THAT(out, HasSubstr("esp_https_ota: Writing to partition subtype 16 at offset 0x110000"));
  EXPECT_EQ(booted_app(dev_), "ota_0 3");
}

}  // namespace
}  // namespace ota32::testing
