// ota32 fleet run end to end: the real `ota32 serve` on 127.0.0.1 and a fleet of 50 simulated devices made
// from one seed device (factory v1, rollback on). Each device downloads over HTTPS with the agent, reboots
// through the bootloader model, runs its self-test and confirms or rolls back; the counts the simulator
// prints are checked exactly and against what the server recorded (GET /api/v1/devices).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <map>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "e2e/seed_device.h"
#include "e2e/serve_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int kDevices = 50;

class FleetE2e : public ::testing::Test {
 protected:
  void make_image(const std::string& version) {
    run_ota32_ok({"image", "make", "-o", (dir_ / ("v" + version + ".bin")).string(), "--chip", "esp32",
                  "--project", "simple_ota", "--version", version, "--size", "100K"});
  }
  void start_server(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--data", (dir_ / "data").string(), "--access-log",
                                     "off",    "--device-rate",          "0"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string why;
    server_ = ServeProcess::start(args, dir_, &why);
    ASSERT_TRUE(server_) << why;
    std::string out = server_->out();
    auto at = out.find("admin token: ");
    ASSERT_NE(at, std::string::npos) << out;
    token_ = out.substr(at + 13, 64);
    ASSERT_TRUE(write_file_atomic(dir_ / "admin.token", token_ + "\n"));
    ca_ = dir_ / "data" / "ca_cert.pem";
  }
  void push(const std::string& version) {
    auto r = run_ota32({"fw", "push", (dir_ / ("v" + version + ".bin")).string(), "--server",
                        server_->url(""), "--token", token_, "--ca", ca_.string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // `ota32 fleet run ... --json --per-device` with `extra` options; the parsed report.
  nlohmann::json fleet(const std::vector<std::string>& extra, ProcessResult* raw = nullptr) {
    std::vector<std::string> args = {"fleet",
                                     "run",
                                     "--server",
                                     server_->url(""),
                                     "--ca",
                                     ca_.string(),
                                     "--from",
                                     tpl_.string(),
                                     "--devices",
                                     std::to_string(kDevices),
                                     "--poll-interval",
                                     "300ms",
                                     "--duration",
                                     "120s",
                                     "--workers",
                                     "8",
                                     "--json",
                                     "--per-device"};
    args.insert(args.end(), extra.begin(), extra.end());
    ProcessOptions po;
    po.cwd = dir_;
    po.timeout = std::chrono::seconds(200);
    auto r = run_ota32(args, po);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    if (raw) *raw = r;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << r.out << r.err;
    return j;
  }
  // (state, running_version) -> devices, over the server's records of ids starting with `prefix`.
  std::map<std::pair<std::string, std::string>, int> server_states(const std::string& prefix) {
    auto r = run_process("/usr/bin/curl",
                         {"-sS", "--cacert", ca_.string(), "-H", "Authorization: Bearer " + token_,
                          server_->url("/api/v1/devices")},
                         {}, dir_, std::chrono::seconds(30));
    EXPECT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    std::map<std::pair<std::string, std::string>, int> m;
    if (!j.is_object() || !j["devices"].is_array()) return m;
    for (const auto& d : j["devices"]) {
      if (d.value("id", "").rfind(prefix + "-", 0) == 0)
        ++m[{d.value("state", ""), d.value("running_version", "")}];
    }
    return m;
  }

  void SetUp() override {
    OTA32_REQUIRE_TESTDATA();
    for (const char* v : {"1", "2", "3"}) make_image(v);
    ASSERT_NO_FATAL_FAILURE(flash_seed_device(dir_, tpl_, dir_ / "v1.bin", {"--rollback"}));
  }

  TempDir tmp_;
  fs::path dir_ = tmp_.path();
  fs::path tpl_ = dir_ / "template";
  fs::path ca_;
  std::string token_;
  std::unique_ptr<ServeProcess> server_;
};

TEST_F(FleetE2e, EveryDeviceUpdatesThenAFailingSelfTestRollsBackExactlyItsShare) {
  ASSERT_NO_FATAL_FAILURE(start_server());
  ASSERT_NO_FATAL_FAILURE(push("2"));

  // A good firmware: every device ends on 2, confirmed; the server saw each one boot it.
  ProcessResult raw;
  auto good = fleet({"--id-prefix", "good"}, &raw);
  EXPECT_EQ(good["updated"], kDevices) << raw.out;
  EXPECT_EQ(good["rolled_back"], 0);
  EXPECT_EQ(good["failed"], 0);
  EXPECT_EQ(good["installs"], kDevices);
  EXPECT_EQ(good["stopped"], "idle");
  EXPECT_EQ(good["versions"], (nlohmann::json{{"2", kDevices}}));
  EXPECT_GE(good["requests"].get<int>(),
            5 * kDevices);  // check, downloading, image, installed, booted, check
  EXPECT_GE(good["bytes_received"].get<uint64_t>(), uint64_t{kDevices} * 100 * 1024);
  EXPECT_EQ(good["store_sectors"].get<int>() > 0, true);
  EXPECT_EQ(server_states("good"),
            (std::map<std::pair<std::string, std::string>, int>{{{"booted", "2"}, kDevices}}));

  // Version 3 fails its self-test on 20 % of the devices (exactly 10, chosen by the seed): they mark it
  // invalid, the bootloader goes back to 1, they report rolled_back and do not take 3 again.
  ASSERT_NO_FATAL_FAILURE(push("3"));
  auto bad = fleet({"--id-prefix", "bad", "--fail-self-test", "0.2", "--fail-version", "3", "--seed", "7"});
  EXPECT_EQ(bad["updated"], kDevices - 10);
  EXPECT_EQ(bad["rolled_back"], 10);
  EXPECT_EQ(bad["failed"], 0);
  EXPECT_EQ(bad["installs"], kDevices);
  EXPECT_EQ(bad["versions"], (nlohmann::json{{"1", 10}, {"3", kDevices - 10}}));
  std::vector<int> failing;
  for (size_t i = 0; i < bad["per_device"].size(); ++i) {
    const auto& d = bad["per_device"][i];
    EXPECT_EQ(d["outcome"], d["self_test_fails"].get<bool>() ? "rolled_back" : "updated") << d.dump();
    if (d["self_test_fails"].get<bool>()) failing.push_back(static_cast<int>(i));
  }
  EXPECT_EQ(failing.size(), 10u);
  EXPECT_EQ(server_states("bad"), (std::map<std::pair<std::string, std::string>, int>{
                                      {{"booted", "3"}, kDevices - 10}, {{"rolled_back", "1"}, 10}}));

  // The same seed picks the same devices (another id prefix: fresh devices on the server).
  auto again =
      fleet({"--id-prefix", "again", "--fail-self-test", "0.2", "--fail-version", "3", "--seed", "7"});
  std::vector<int> failing_again;
  for (size_t i = 0; i < again["per_device"].size(); ++i)
    if (again["per_device"][i]["outcome"] == "rolled_back") failing_again.push_back(static_cast<int>(i));
  EXPECT_EQ(failing_again, failing);
}

TEST_F(FleetE2e, TokenServerServesProvisionedDevicesAndRefusesTheOthers) {
  ASSERT_NO_FATAL_FAILURE(start_server({"--device-auth", "token"}));
  ASSERT_NO_FATAL_FAILURE(push("2"));
  // Without credentials every device stays pending: its checks fail (401) and it keeps running 1.
  auto refused = fleet({"--id-prefix", "anon", "--max-polls", "2", "--no-until-idle"});
  EXPECT_EQ(refused["failed"], kDevices);
  EXPECT_EQ(refused["updated"], 0);
  EXPECT_THAT(refused["per_device"][0]["last_error"].get<std::string>(), HasSubstr("401"));
  // --provision: the registry issues each device its token, and all of them update.
  auto ok =
      fleet({"--id-prefix", "tok", "--provision", "--admin-token-file", (dir_ / "admin.token").string()});
  EXPECT_EQ(ok["updated"], kDevices);
  EXPECT_EQ(ok["failed"], 0);
  EXPECT_EQ(server_states("tok"),
            (std::map<std::pair<std::string, std::string>, int>{{{"booted", "2"}, kDevices}}));
}

TEST_F(FleetE2e, BadOptionsAreOneLineErrors) {
  auto r = run_ota32({"fleet", "run", "--server", "https://127.0.0.1:1", "--ca", (dir_ / "nope.pem").string(),
                      "--from", tpl_.string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ota32: --ca: "));
  ASSERT_TRUE(write_file_atomic(dir_ / "ca.pem", std::string("x")));
  r = run_ota32({"fleet", "run", "--server", "https://127.0.0.1:1", "--ca", (dir_ / "ca.pem").string(),
                 "--from", (dir_ / "missing").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("not a device directory"));
  r = run_ota32({"fleet", "run", "--server", "https://127.0.0.1:1", "--ca", (dir_ / "ca.pem").string(),
                 "--from", tpl_.string(), "--poll-interval", "soon"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--poll-interval: 'soon' is not a duration"));
  r = run_ota32({"fleet", "run", "--server", "https://127.0.0.1:1", "--ca", (dir_ / "ca.pem").string(),
                 "--from", tpl_.string(), "--devices", "0"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("--devices: 1 to 1000000"));
}

}  // namespace
}  // namespace ota32::testing
