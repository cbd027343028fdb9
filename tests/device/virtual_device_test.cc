#include <gtest/gtest.h>

#include "boot/test_images.h"
#include "core/file_io.h"
#include "device/virtual_device.h"
#include "test_support.h"

namespace ota32 {
namespace {

namespace fs = std::filesystem;
using testing::seed_bootloader;
using testing::seed_factory_app;
using testing::seed_ota_app;
using testing::seed_partition_table;

TEST(DeviceDir, NewCreatesErasedFlashEfuseAndConfig) {
  testing::TempDir tmp;
  DeviceNewOptions o;
  o.mac = "10:52:1C:67:B1:10";
  ASSERT_TRUE(VirtualDevice::create(tmp / "dev", o));
  auto flash = read_file(tmp / "dev" / "flash.bin");
  ASSERT_TRUE(flash);
  EXPECT_EQ(*flash, Bytes(4u << 20, 0xFF));
  auto dev = VirtualDevice::open(tmp / "dev");
  ASSERT_TRUE(dev) << dev.error().message();
  EXPECT_EQ((*dev)->efuse().mac, "10:52:1c:67:b1:10");
  EXPECT_EQ((*dev)->efuse().chip_revision, 100u);
  EXPECT_EQ((*dev)->efuse().secure_version, 0u);
  EXPECT_EQ((*dev)->chip().bootloader_offset, 0x1000u);
  EXPECT_FALSE((*dev)->config().bootloader.rollback);
}

TEST(DeviceDir, ChipTableGivesTheBootloaderOffset) {
  testing::TempDir tmp;
  DeviceNewOptions o;
  o.chip = "esp32c3";
  o.flash_size = 2u << 20;
  ASSERT_TRUE(VirtualDevice::create(tmp / "c3", o));
  auto dev = VirtualDevice::open(tmp / "c3");
  ASSERT_TRUE(dev);
  EXPECT_EQ((*dev)->chip().bootloader_offset, 0x0u);
  EXPECT_EQ((*dev)->flash().size(), 2u << 20);
}

TEST(DeviceDir, BadInputIsOneClearError) {
  testing::TempDir tmp;
  DeviceNewOptions o;
  o.chip = "esp8266x";
  auto r = VirtualDevice::create(tmp / "x", o);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("unknown chip 'esp8266x'"), std::string::npos);
  EXPECT_FALSE(fs::exists(tmp / "x"));
  o.chip = "esp32";
  o.flash_size = 1000;
  EXPECT_FALSE(VirtualDevice::create(tmp / "x", o));
  ASSERT_TRUE(write_file_atomic(tmp / "file", std::string_view("x")));
  o.flash_size = 4u << 20;
  EXPECT_EQ(VirtualDevice::create(tmp / "file", o).error().code(), ErrorCode::already_exists);
  auto not_dev = VirtualDevice::open(tmp.path());
  ASSERT_FALSE(not_dev);
  EXPECT_NE(not_dev.error().message().find("not a device directory (no device.json)"), std::string::npos);
}

TEST(DeviceDir, FlashSizeMismatchIsRefused) {
  testing::TempDir tmp;
  ASSERT_TRUE(VirtualDevice::create(tmp / "d", {}));
  ASSERT_TRUE(write_file_atomic(tmp / "d" / "flash.bin", Bytes(0x1000, 0xFF)));
  auto dev = VirtualDevice::open(tmp / "d");
  ASSERT_FALSE(dev);
  EXPECT_NE(dev.error().message().find("flash_size"), std::string::npos);
}

TEST(DeviceDir, BadJsonNamesTheField) {
  testing::TempDir tmp;
  ASSERT_TRUE(VirtualDevice::create(tmp / "d", {}));
  ASSERT_TRUE(write_file_atomic(
      tmp / "d" / "device.json",
      std::string_view(R"({"chip":"esp32","flash_size":4194304,"bootloader":{"rollback":1}})")));
  auto dev = VirtualDevice::open(tmp / "d");
  ASSERT_FALSE(dev);
  EXPECT_NE(dev.error().message().find("bootloader.rollback: not a boolean"), std::string::npos);
}

// Flash the seed's four files into a fresh device directory, as `idf.py flash` does.
void flash_seed(VirtualDevice& dev) {
  WriteFlashOptions opt;
  opt.flash_mode = "dio";
  opt.flash_freq = "40m";
  opt.flash_size = "4MB";
  std::vector<FlashFile> files = {{0x8000, "partition-table.bin", seed_partition_table()},
                                  {0xd000, "ota_data_initial.bin", Bytes(8192, 0xFF)},
                                  {0x1000, "bootloader.bin", seed_bootloader()},
                                  {0x10000, "simple_ota.bin", seed_factory_app()}};
  ASSERT_TRUE(dev.write_flash(files, opt, [](const std::string&) {}));
}

TEST(VirtualDevice, FlashThenBootTheSeed) {
  testing::TempDir tmp;
  ASSERT_TRUE(VirtualDevice::create(tmp / "d", {}));
  auto dev = VirtualDevice::open(tmp / "d");
  ASSERT_TRUE(dev);
  flash_seed(**dev);
  auto boot = (*dev)->power_on();
  ASSERT_TRUE(boot);
  ASSERT_TRUE(boot->app);
  EXPECT_EQ(boot->app->partition.name, "factory");
  // The flash persisted: a second open sees the same device.
  dev->reset();
  auto again = VirtualDevice::open(tmp / "d");
  ASSERT_TRUE(again);
  EXPECT_TRUE((*again)->power_on()->app);
}

std::unique_ptr<VirtualDevice> rollback_device(std::vector<std::string> failing_versions) {
  DeviceConfig c;
  c.bootloader.rollback = true;
  c.app.self_test_fails = std::move(failing_versions);
  Efuse e;
  e.mac = "24:0a:c4:00:00:01";
  e.chip_revision = 100;
  auto dev = VirtualDevice::in_memory(c, e, Bytes(4u << 20, 0xFF));
  EXPECT_TRUE(dev);
  flash_seed(**dev);
  // An OTA of version 2 into ota_0 (what esp_ota_end + esp_ota_set_boot_partition leave, rollback on).
  auto& f = (*dev)->raw_flash();
  Bytes app = seed_ota_app("2");
  EXPECT_TRUE(f.erase(0x110000, 0xE0000));
  EXPECT_TRUE(f.program(0x110000, app));
  auto entry = make_ota_entry(1, kOtaStateNew);
  EXPECT_TRUE(f.program(0xd000, entry.raw));
  return std::move(*dev);
}

TEST(VirtualDevice, RunConfirmsAPassingSelfTest) {
  auto dev = rollback_device({});
  auto run = dev->run();
  ASSERT_TRUE(run) << run.error().message();
  ASSERT_EQ(run->boots.size(), 1u);
  EXPECT_EQ(run->boots[0].app->partition.name, "ota_0");
  Region od(dev->flash(), 0xd000, 0x2000, "otadata");
  EXPECT_EQ((*read_otadata(od))[0].state(), kOtaStateValid);
  // Confirmed: later boots keep ota_0.
  EXPECT_EQ(dev->power_on()->app->partition.name, "ota_0");
}

TEST(VirtualDevice, RunRollsBackAFailingSelfTest) {
  auto dev = rollback_device({"2"});
  auto run = dev->run();
  ASSERT_TRUE(run);
  ASSERT_EQ(run->boots.size(), 2u);
  EXPECT_EQ(run->boots[0].app->partition.name, "ota_0");
  EXPECT_EQ(run->boots[1].app->partition.name, "factory");
  auto has = [](const BootResult& b, const std::string& text) {
    return std::any_of(b.log.begin(), b.log.end(), [&](const LogLine& l) { return l.text == text; });
  };
  EXPECT_TRUE(has(run->boots[0], "Rollback to previously worked partition."));
  EXPECT_TRUE(has(run->boots[1], "Defaulting to factory image"));
  Region od(dev->flash(), 0xd000, 0x2000, "otadata");
  EXPECT_EQ((*read_otadata(od))[0].state(), kOtaStateInvalid);
}

TEST(VirtualDevice, AntiRollbackEfuseIsPersisted) {
  testing::TempDir tmp;
  DeviceNewOptions o;
  o.bootloader.rollback = o.bootloader.anti_rollback = true;
  ASSERT_TRUE(VirtualDevice::create(tmp / "d", o));
  auto dev = VirtualDevice::open(tmp / "d");
  ASSERT_TRUE(dev);
  flash_seed(**dev);
  auto& f = (*dev)->raw_flash();
  ASSERT_TRUE(f.erase(0x10000, 0x1000));  // no factory app: initial contents boot ota_0
  ASSERT_TRUE(f.program(0x110000, seed_ota_app("2", 4)));
  auto boot = (*dev)->power_on();
  ASSERT_TRUE(boot && boot->app);
  EXPECT_EQ((*dev)->efuse().secure_version, 4u);
  dev->reset();
  EXPECT_EQ((*VirtualDevice::open(tmp / "d"))->efuse().secure_version, 4u);
}

}  // namespace
}  // namespace ota32
