// ota32 device new | flash | boot | run, through the built binary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "boot/bootloader.h"
#include "boot/test_images.h"
#include "core/file_io.h"
#include "e2e/run_process.h"
#include "test_support.h"

namespace ota32 {
namespace {

using testing::run_ota32;

struct Files {
  testing::TempDir tmp;
  std::string dir() const { return (tmp / "dev").string(); }
  std::string file(const std::string& name, const Bytes& data) const {
    EXPECT_TRUE(write_file_atomic(tmp / name, data));
    return (tmp / name).string();
  }
};

size_t count_lines(const std::string& s) { return std::count(s.begin(), s.end(), '\n'); }

TEST(DeviceCli, NewFlashBootTheSeedLayout) {
  Files f;
  auto n = run_ota32({"device", "new", f.dir(), "--mac", "10:52:1c:67:b1:10"});
  ASSERT_EQ(n.exit_code, 0) << n.err;
  EXPECT_NE(n.out.find("ESP32 (revision v1.0), 4M flash, MAC 10:52:1c:67:b1:10, bootloader at 0x1000"),
            std::string::npos)
      << n.out;
  auto fl =
      run_ota32({"device", "flash", f.dir(), "--flash_mode", "dio", "--flash_freq", "40m", "--flash_size",
                 "4MB", "0x8000", f.file("partition-table.bin", testing::seed_partition_table()), "0xd000",
                 f.file("ota_data_initial.bin", Bytes(8192, 0xFF)), "0x1000",
                 f.file("bootloader.bin", testing::seed_bootloader()), "0x10000",
                 f.file("simple_ota.bin", testing::seed_factory_app())});
  ASSERT_EQ(fl.exit_code, 0) << fl.err;
  EXPECT_NE(fl.out.find("Compressed 8192 bytes to 31...\nWriting at 0x0000d000... (100 %)\n"),
            std::string::npos);
  EXPECT_NE(fl.out.find("Hash of data verified.\n\nLeaving...\nHard resetting via RTS pin...\n"),
            std::string::npos);
  auto b = run_ota32({"device", "boot", f.dir()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.out.find("boot: Defaulting to factory image\n"), std::string::npos) << b.out;
  EXPECT_NE(b.out.find("boot: Loaded app from partition at offset 0x10000\n"), std::string::npos);
  auto j = run_ota32({"device", "boot", f.dir(), "--json"});
  ASSERT_EQ(j.exit_code, 0);
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["partition"], "factory");
  EXPECT_EQ(doc["project_name"], "simple_ota");
}

TEST(DeviceCli, BadInputIsOneLineExit1AndLeavesTheDeviceUntouched) {
  Files f;
  ASSERT_EQ(run_ota32({"device", "new", f.dir()}).exit_code, 0);
  const auto before = read_file(f.tmp / "dev" / "flash.bin");
  const std::string small = f.file("a.bin", Bytes(64, 0x11));
  struct Case {
    std::vector<std::string> args;
    std::string message;
  } cases[] = {
      {{"device", "flash", f.dir(), "0x3ffff0", small},
       "ota32: File " + small + " (length 64) at offset 4194288 will not fit in 4194304 bytes of flash."},
      {{"device", "flash", f.dir(), "0x10000", small, "0x10100", small},
       "ota32: Detected overlap at address: 0x10100 for file: " + small},
      {{"device", "flash", f.dir(), "0x10000"}, "ota32: write_flash: '0x10000' has no file after it"},
      {{"device", "flash", f.dir(), "0xzz", small}, "ota32: address: '0xzz' is not a number"},
      {{"device", "flash", f.dir(), "0x10000", (f.tmp / "missing.bin").string()}, "ota32: "},
      {{"device", "flash", f.tmp.path().string(), "0x10000", small},
       "ota32: " + f.tmp.path().string() + ": not a device directory (no device.json)"},
      {{"device", "boot", (f.tmp / "nope").string()}, "ota32: "},
      {{"device", "new", f.dir()}, "ota32: " + f.dir() + ": already exists and is not an empty directory"},
      {{"device", "new", (f.tmp / "x").string(), "--chip", "esp9"}, "ota32: --chip: unknown chip 'esp9'"},
  };
  for (const auto& c : cases) {
    auto r = run_ota32(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args[3] << "\n" << r.err;
    EXPECT_EQ(count_lines(r.err), 1u) << r.err;
    EXPECT_EQ(r.err.rfind(c.message, 0), 0u) << r.err;
  }
  EXPECT_EQ(read_file(f.tmp / "dev" / "flash.bin").value(), before.value());
  EXPECT_FALSE(std::filesystem::exists(f.tmp / "x"));
}

// No ESP-IDF build at hand: `image make --bootloader` makes the 2nd-stage bootloader the device boots.
TEST(DeviceCli, BootsASyntheticBootloaderFromImageMake) {
  Files f;
  const std::string bl = (f.tmp / "bootloader.bin").string(), app = (f.tmp / "app.bin").string();
  auto m = run_ota32({"image", "make", "--bootloader", "--chip", "esp32", "-o", bl});
  ASSERT_EQ(m.exit_code, 0) << m.err;
  ASSERT_EQ(run_ota32({"image", "make", "--chip", "esp32", "--project", "p", "--version", "1", "-o", app})
                .exit_code,
            0);
  ASSERT_EQ(run_ota32({"device", "new", f.dir()}).exit_code, 0);
  auto fl = run_ota32({"device", "flash", f.dir(), "0x1000", bl, "0x8000",
                       f.file("pt.bin", testing::seed_partition_table()), "0x10000", app});
  ASSERT_EQ(fl.exit_code, 0) << fl.err;
  auto b = run_ota32({"device", "boot", f.dir()});
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_NE(b.out.find("boot: ESP-IDF v5.5.5 2nd stage bootloader\n"), std::string::npos) << b.out;
  EXPECT_NE(b.out.find("boot.esp32: SPI Flash Size : 2MB\n"), std::string::npos) << b.out;
  EXPECT_NE(b.out.find("app_init: App version:      1\n"), std::string::npos) << b.out;
  // An app needs --project and --version; a bootloader takes neither.
  auto no_project = run_ota32({"image", "make", "--chip", "esp32", "--version", "1", "-o", app});
  EXPECT_EQ(no_project.exit_code, 2);
  EXPECT_EQ(no_project.err.rfind("ota32: --project is required (or --bootloader)\n", 0), 0u)
      << no_project.err;
  EXPECT_EQ(
      run_ota32({"image", "make", "--bootloader", "--chip", "esp32", "--project", "p", "-o", bl}).exit_code,
      2);
}

TEST(DeviceCli, BootOfABlankDeviceFails) {
  Files f;
  ASSERT_EQ(run_ota32({"device", "new", f.dir()}).exit_code, 0);
  auto b = run_ota32({"device", "boot", f.dir()});
  EXPECT_EQ(b.exit_code, 1);
  EXPECT_NE(b.out.find("invalid header: 0xffffffff"), std::string::npos);
  EXPECT_NE(b.err.find("did not boot: no valid 2nd-stage bootloader at 0x1000"), std::string::npos) << b.err;
}

TEST(DeviceCli, RunRollsBackAVersionWhoseSelfTestFails) {
  Files f;
  ASSERT_EQ(run_ota32({"device", "new", f.dir(), "--rollback"}).exit_code, 0);
  // device.json: version 2's self-test fails.
  auto cfg = nlohmann::json::parse(read_text_file(f.tmp / "dev" / "device.json").value());
  EXPECT_EQ(cfg["bootloader"]["rollback"], true);
  cfg["app"]["self_test_fails"] = {"2"};
  ASSERT_TRUE(write_file_atomic(f.tmp / "dev" / "device.json", cfg.dump()));
  auto entry = make_ota_entry(1, kOtaStateNew);
  Bytes otadata(8192, 0xFF);
  std::copy(entry.raw.begin(), entry.raw.end(), otadata.begin());
  auto fl = run_ota32({"device", "flash", f.dir(), "0x8000",
                       f.file("pt.bin", testing::seed_partition_table()), "0xd000",
                       f.file("otadata.bin", otadata), "0x1000", f.file("bl.bin", testing::seed_bootloader()),
                       "0x10000", f.file("v1.bin", testing::seed_factory_app("1")), "0x110000",
                       f.file("v2.bin", testing::seed_ota_app("2"))});
  ASSERT_EQ(fl.exit_code, 0) << fl.err;
  auto r = run_ota32({"device", "run", f.dir()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto first = r.out.find("Loaded app from partition at offset 0x110000");
  auto rollback = r.out.find("esp_ota_ops: Rollback to previously worked partition.");
  auto second = r.out.find("Loaded app from partition at offset 0x10000");
  ASSERT_NE(first, std::string::npos) << r.out;
  ASSERT_NE(rollback, std::string::npos) << r.out;
  ASSERT_NE(second, std::string::npos) << r.out;
  EXPECT_LT(first, rollback);
  EXPECT_LT(rollback, second);

  // --expect-version: the run ends on the factory app (version 1) after the rollback. The device is back
  // at that state on every run (the rolled-back slot stays invalid).
  auto ok = run_ota32({"device", "run", f.dir(), "--expect-version", "1"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  auto bad = run_ota32({"device", "run", f.dir(), "--expect-version", "2"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_EQ(bad.err, "ota32: " + f.dir() + ": runs version '1' from factory, expected '2'\n");
}

// ota32 device powercut-sweep on the seed layout: the summary, --json, and exit 1 naming the first failing
// cut when the device's otadata already selects a slot that does not verify.
TEST(DeviceCli, PowercutSweepReportsSurvivalAndTheFirstFailingCut) {
  Files f;
  ASSERT_EQ(run_ota32({"device", "new", f.dir()}).exit_code, 0);
  const std::string table = f.file("partition-table.bin", testing::seed_partition_table());
  const std::string boot = f.file("bootloader.bin", testing::seed_bootloader());
  const std::string app = f.file("simple_ota.bin", testing::seed_factory_app());
  ASSERT_EQ(run_ota32({"device", "flash", f.dir(), "0x1000", boot, "0x8000", table, "0xd000",
                       f.file("ota_data_initial.bin", Bytes(8192, 0xFF)), "0x10000", app})
                .exit_code,
            0);
  const std::string v4 = f.file("v4.bin", testing::seed_ota_app("4", 0, 4));
  auto ok = run_ota32({"device", "powercut-sweep", f.dir(), "--image", v4, "--scenario", "mark-valid",
                       "--multi", "3", "--seed", "5"});
  ASSERT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("clean run: 4 flash operations; torn mode random, seed 5\n"), std::string::npos)
      << ok.out;
  EXPECT_NE(ok.out.find("survived 4 of 4 cuts and 3 of 3 pairs of cuts\n"), std::string::npos) << ok.out;
  auto j = run_ota32({"device", "powercut-sweep", f.dir(), "--image", v4, "--sample", "3", "--json"});
  ASSERT_EQ(j.exit_code, 0) << j.err;
  auto doc = nlohmann::json::parse(j.out);
  EXPECT_EQ(doc["scenario"], "ota");
  EXPECT_EQ(doc["cuts"], 3);
  EXPECT_EQ(doc["cuts_survived"], 3);
  EXPECT_GT(doc["operations"].get<int>(), 800);

  // otadata entry 0 (seq 1) names ota_0, which is empty: the bootloader falls back to the factory app,
  // and the sweep reports the selection at the first cut (the last, with ota_0 complete, survives).
  Bytes otadata(8192, 0xFF);
  auto e = serialize_ota_select_entry(make_ota_select_entry(1, kOtaStateValid));
  std::copy(e.begin(), e.end(), otadata.begin());
  ASSERT_EQ(run_ota32({"device", "flash", f.dir(), "0xd000", f.file("otadata.bin", otadata)}).exit_code, 0);
  auto bad = run_ota32({"device", "powercut-sweep", f.dir(), "--image", v4, "--sample", "2"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("survived 1 of 2 cuts\n"), std::string::npos) << bad.out;
  EXPECT_EQ(bad.err, "ota32: " + f.dir() +
                         ": 1 of 2 cut runs failed; first: cut at operation 0 (erase 0x00110000 +0x1000 "
                         "(torn)): otadata entry 0 selects ota_0, whose image does not verify\n");
  auto same = run_ota32({"device", "powercut-sweep", f.dir(), "--image", app});
  EXPECT_EQ(same.exit_code, 1);
  EXPECT_NE(same.err.find("the new image is the one the device already runs"), std::string::npos);
  auto usage = run_ota32({"device", "powercut-sweep", f.dir(), "--image", v4, "--scenario", "swap"});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("--scenario"), std::string::npos) << usage.err;
}

}  // namespace
}  // namespace ota32
