// Staged rollouts end to end with the real binaries on 127.0.0.1: `ota32 serve` (rollout timer at 1 s),
// `ota32 fw push`, `ota32 group|device-registry|rollout` and four virtual ESP32s (`ota32 device run`)
// flashed like `idf.py flash`. A 2-stage rollout of a firmware whose self-test fails on one canary pauses
// itself with the evidence and reaches no device of stage 2; a good one promotes after its soak time,
// survives a server restart mid-rollout with the same counters, and completes with every device on it.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <algorithm>

#include <nlohmann/json.hpp>
#include <thread>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "e2e/seed_device.h"
#include "e2e/serve_process.h"
#include "rollout/rollout.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

const std::vector<std::string> kMacs = {"24:0a:c4:00:01:01", "24:0a:c4:00:01:02", "24:0a:c4:00:01:03",
                                        "24:0a:c4:00:01:04"};

// A rollout id (prefix-N) that puts exactly two of kMacs in stage 1 of a 50 / 100 rollout, and those two.
std::pair<std::string, std::vector<std::string>> pick_rollout(const std::string& prefix) {
  for (int n = 0; n < 1000; ++n) {
    std::string id = prefix + "-" + std::to_string(n);
    std::vector<std::string> first;
    for (const auto& m : kMacs)
      if (rollout::bucket(id, m) < 5000) first.push_back(m);
    if (first.size() == 2) return {id, first};
  }
  return {};
}

class RolloutE2e : public ::testing::Test {
 protected:
  void start_server() {
    std::string why;
    server_ = ServeProcess::start(
        {"--data", (dir_ / "data").string(), "--access-log", "off", "--rollout-interval", "1"}, dir_, &why);
    ASSERT_TRUE(server_) << why;
    if (token_.empty()) {
      std::string out = server_->out() + server_->err();
      auto at = out.find("admin token: ");
      ASSERT_NE(at, std::string::npos) << out;
      token_ = out.substr(at + 13, 64);
    }
    ca_ = dir_ / "data" / "ca_cert.pem";
    // The port is new after a restart: point every device at it.
    for (const auto& mac : kMacs) {
      fs::path dev = device_dir(mac);
      if (!fs::exists(dev / "device.json")) continue;
      auto cfg = json::parse(*read_text_file(dev / "device.json"));
      cfg["app"]["update_server"] = server_->url("");
      ASSERT_TRUE(write_file_atomic(dev / "device.json", cfg.dump(2)));
    }
  }
  fs::path device_dir(const std::string& mac) {
    std::string name = mac;
    std::replace(name.begin(), name.end(), ':', '-');
    return dir_ / name;
  }
  // The admin command `args` (group, rollout, ...) with the server options; fails the test unless it exits 0.
  ProcessResult admin(std::vector<std::string> args, int expect = 0) {
    for (std::string a :
         std::vector<std::string>{"--server", server_->url(""), "--token", token_, "--ca", ca_.string()})
      args.push_back(a);
    auto r = run_ota32(args);
    EXPECT_EQ(r.exit_code, expect) << r.out << r.err;
    return r;
  }
  json show(const std::string& id) {
    auto r = admin({"rollout", "show", id, "--json"});
    return json::parse(r.out, nullptr, false);
  }
  // Waits (bounded) until the rollout's `key` has `value`, the timer's work.
  json wait_for(const std::string& id, const std::string& key, const json& value) {
    json r;
    for (int i = 0; i < 40; ++i) {
      r = show(id);
      if (r.is_object() && r[key] == value) return r;
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    ADD_FAILURE() << "rollout " << id << ": " << key << " never became " << value.dump() << ": " << r.dump(2);
    return r;
  }

  TempDir tmp_;
  fs::path dir_ = tmp_.path();
  fs::path ca_;
  std::string token_;
  std::unique_ptr<ServeProcess> server_;
};

TEST_F(RolloutE2e, FailingCanaryPausesAndAGoodReleasePromotesSurvivesARestartAndCompletes) {
  OTA32_REQUIRE_TESTDATA();
  for (const char* v : {"1", "2", "3"})
    run_ota32_ok({"image", "make", "-o", (dir_ / (std::string("v") + v + ".bin")).string(), "--chip", "esp32",
                  "--project", "simple_ota", "--version", v, "--size", "200K"});
  ASSERT_NO_FATAL_FAILURE(start_server());
  auto [bad_id, bad_stage1] = pick_rollout("bad");
  auto [good_id, good_stage1] = pick_rollout("good");
  ASSERT_FALSE(bad_id.empty());
  ASSERT_FALSE(good_id.empty());
  // The second canary of the bad rollout fails the self-test of version 2 (and only of 2).
  const std::string failing = bad_stage1[1];
  for (const auto& mac : kMacs) {
    ASSERT_NO_FATAL_FAILURE(
        flash_seed_device(dir_, device_dir(mac), dir_ / "v1.bin", {"--rollback", "--mac", mac}));
    auto cfg = json::parse(*read_text_file(device_dir(mac) / "device.json"));
    cfg["app"]["update_server"] = server_->url("");
    cfg["app"]["ca_cert"] = ca_.string();
    cfg["app"]["self_test_fails"] = mac == failing ? json{"2"} : json::array();
    // Pre-authorised in the registry: the device carries its own token.
    auto accepted = json::parse(admin({"device-registry", "accept", mac, "--json"}).out, nullptr, false);
    ASSERT_TRUE(accepted.is_object() && accepted["token"].is_string()) << accepted.dump();
    cfg["app"]["device_token"] = accepted["token"];
    ASSERT_TRUE(write_file_atomic(device_dir(mac) / "device.json", cfg.dump(2)));
    // First contact: nothing in the catalog yet; its report fills the record (project, chip, version).
    EXPECT_THAT(run_device(device_dir(mac)), HasSubstr("no update for simple_ota version 1"));
  }
  auto registry = admin({"device-registry", "list"});
  EXPECT_THAT(registry.out, HasSubstr(kMacs[3] + "        accepted  yes"));
  const std::string factory = booted_app(device_dir(kMacs[0]));
  admin({"fw", "push", (dir_ / "v2.bin").string(), (dir_ / "v3.bin").string()});
  for (const auto& mac : kMacs) admin({"device-registry", "tag", mac, "--add", "fleet"});
  auto g = admin({"group", "create", "fleet", "--filter", "tag=fleet"});
  EXPECT_THAT(g.out, HasSubstr("created group fleet (filter 'tag=fleet'): 4 device(s)"));

  // Bad input: one line, exit 1.
  auto refused = admin({"rollout", "create", "--version", "9", "--group", "fleet"}, 1);
  EXPECT_EQ(refused.err,
            "ota32: rollout create: server answered 404 unknown_firmware: version: no firmware "
            "with version '9' in the catalog\n");

  // 1. Version 2, stage 1 = 50 %: one canary confirms, the other rolls back -> paused by max_failures.
  auto created = admin({"rollout", "create", "--id", bad_id, "--version", "2", "--group", "fleet", "--stages",
                        "50,100", "--soak", "1h", "--max-failures", "1"});
  EXPECT_THAT(created.out,
              HasSubstr("created rollout " + bad_id + ": version 2 to group fleet, stages 50% 100%"));
  std::string out = run_device(device_dir(bad_stage1[0]));
  EXPECT_THAT(out, HasSubstr("self-test of version 2 passed"));
  EXPECT_EQ(booted_app(device_dir(bad_stage1[0])), "ota_0 2");
  out = run_device(device_dir(failing));
  EXPECT_THAT(out, HasSubstr("self-test of version 2 failed"));
  json r = show(bad_id);
  EXPECT_EQ(r["state"], "paused_auto") << r.dump(2);
  const json& d = r["decisions"][0];
  EXPECT_EQ(d["kind"], "paused_auto");
  EXPECT_EQ(d["evidence"][0]["rule"], "max_failures");
  EXPECT_EQ(d["evidence"][0]["scope"], "stage 1");
  EXPECT_EQ(d["evidence"][0]["failed"], 1);
  EXPECT_EQ(d["evidence"][0]["succeeded"], 1);
  EXPECT_EQ(d["evidence"][0]["fired"], true);
  EXPECT_EQ(r["stage_list"][0]["funnel"]["failed_by_reason"]["rolled_back"], 1);
  EXPECT_EQ(r["stage_list"][0]["funnel"]["confirmed"], 1);
  // Stage 2 never gets version 2.
  for (const auto& mac : kMacs) {
    if (std::find(bad_stage1.begin(), bad_stage1.end(), mac) != bad_stage1.end()) continue;
    EXPECT_THAT(run_device(device_dir(mac)), HasSubstr("no update for simple_ota version 1")) << mac;
    EXPECT_EQ(booted_app(device_dir(mac)), factory) << mac;
  }
  EXPECT_EQ(r["stage_list"][1]["funnel"]["offered"], 0);
  auto text = admin({"rollout", "show", bad_id});
  EXPECT_THAT(text.out, HasSubstr("paused_auto (stage 1, by policy): paused by rule max_failures"));
  EXPECT_THAT(text.out, HasSubstr("[fired] max_failures     stage 1: 1 failed of 2 reported"));
  admin({"rollout", "abort", bad_id});

  // 2. Version 3 (passes everywhere), soak 2 s: stage 1 updates, a restart keeps every counter, the timer
  // promotes, stage 2 updates, the rollout completes.
  admin({"rollout", "create", "--id", good_id, "--version", "3", "--group", "fleet", "--stages", "50,100",
         "--soak", "2s", "--max-failures", "1"});
  for (const auto& mac : good_stage1) {
    EXPECT_THAT(run_device(device_dir(mac)), HasSubstr("self-test of version 3 passed")) << mac;
    EXPECT_EQ(booted_app(device_dir(mac)).substr(booted_app(device_dir(mac)).size() - 2), " 3") << mac;
  }
  json before = show(good_id);
  ASSERT_EQ(server_->stop(SIGTERM), 0);
  ASSERT_NO_FATAL_FAILURE(start_server());
  json after = show(good_id);
  EXPECT_EQ(before["stage_list"], after["stage_list"]) << "a restart loses nothing and counts nothing twice";
  EXPECT_EQ(after["stage_list"][0]["funnel"]["confirmed"], 2);
  r = wait_for(good_id, "stage", 2);
  EXPECT_EQ(r["decisions"][0]["kind"], "promoted");
  for (const auto& mac : kMacs) {
    if (std::find(good_stage1.begin(), good_stage1.end(), mac) != good_stage1.end()) continue;
    EXPECT_THAT(run_device(device_dir(mac)), HasSubstr("self-test of version 3 passed")) << mac;
  }
  r = wait_for(good_id, "state", "completed");
  EXPECT_EQ(r["confirmed"], 4);
  EXPECT_EQ(r["failed"], 0);
  for (const auto& mac : kMacs) {
    std::string booted = booted_app(device_dir(mac));
    EXPECT_EQ(booted.substr(booted.size() - 2), " 3") << mac;
  }
  auto list = admin({"rollout", "list"});
  EXPECT_THAT(list.out, HasSubstr(good_id));
  EXPECT_THAT(list.out, HasSubstr("completed"));
}

}  // namespace
}  // namespace ota32::testing
