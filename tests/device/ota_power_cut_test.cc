// A power cut at every flash operation of an OTA update on a rollback build (esp_ota_begin's otadata
// invalidation, the sequential erases and writes, esp_ota_set_boot_partition): after the cut the device must
// boot a valid image, and it is either the old one or the new one (design.md "Flash and faults").
#include <gtest/gtest.h>

#include <algorithm>

#include "agent/ota_writer.h"
#include "boot/test_images.h"
#include "device/virtual_device.h"

namespace ota32 {
namespace {

using testing::seed_bootloader;
using testing::seed_factory_app;
using testing::seed_ota_app;
using testing::seed_partition_table;

DeviceConfig rollback_config() {
  DeviceConfig c;
  c.bootloader.rollback = true;
  return c;
}

Efuse test_efuse() {
  Efuse e;
  e.mac = "24:0a:c4:00:00:02";
  e.chip_revision = 100;
  return e;
}

// ota_0 runs v2 (otadata entry 0, seq 3, VALID); entry 1 (seq 2, VALID) still names ota_1, which holds an
// older v1: the update to v4 goes into ota_1, and esp_ota_begin first invalidates entry 1.
Bytes before_update() {
  MemFlash f(4u << 20);
  auto put = [&](uint32_t at, ByteView b) { EXPECT_TRUE(f.program(at, b)); };
  put(0x1000, seed_bootloader());
  put(0x8000, seed_partition_table());
  put(0x10000, seed_factory_app("1"));
  put(0x110000, seed_ota_app("2"));
  put(0x210000, seed_ota_app("1", 0, 3));
  put(0xd000, make_ota_entry(3, kOtaStateValid).raw);
  put(0xe000, make_ota_entry(2, kOtaStateValid).raw);
  Bytes out(f.size());
  EXPECT_TRUE(f.read(0, out));
  return out;
}

// What the agent does after boot: esp_ota_begin/write/end/set_boot_partition into the next slot.
Result<void> install(VirtualDevice& dev, const BootResult& boot, ByteView image) {
  OTA32_ASSIGN(PartitionTable table, dev.partition_table());
  agent::OtaWriterOptions o;
  o.chip = &dev.chip();
  o.rollback_enabled = true;
  o.running_version = boot.app->desc->version;
  const PartitionEntry* target = agent::next_update_partition(table, &boot.app->partition);
  OTA32_ASSIGN(auto w, agent::OtaWriter::begin(dev.flash(), table, *target, &boot.app->partition, o));
  for (size_t off = 0; off < image.size(); off += 16384) {
    OTA32_TRY(w->write(image.subspan(off, std::min<size_t>(16384, image.size() - off))));
  }
  OTA32_TRY(w->end());
  return w->set_boot_partition();
}

std::string boot_version(const Bytes& flash) {
  auto dev = VirtualDevice::in_memory(rollback_config(), test_efuse(), flash);
  if (!dev) return "no device: " + dev.error().message();
  auto boot = (*dev)->power_on();
  if (!boot) return "boot error: " + boot.error().message();
  if (!boot->app || !boot->app->desc) return "no app booted";
  return boot->app->partition.name + " " + boot->app->desc->version;
}

TEST(OtaPowerCut, EveryCutBootsTheOldOrTheNewImage) {
  const Bytes base = before_update();
  const Bytes image = seed_ota_app("4", 0, 4);
  ASSERT_EQ(boot_version(base), "ota_0 2");

  // The clean run: how many flash operations it takes, and what it leaves.
  auto clean = VirtualDevice::in_memory(rollback_config(), test_efuse(), base);
  ASSERT_TRUE(clean);
  auto boot = (*clean)->power_on();
  ASSERT_TRUE(boot && boot->app);
  uint64_t before = (*clean)->flash().mutations();
  auto done = install(**clean, *boot, image);
  ASSERT_TRUE(done) << done.error().message();
  const uint64_t ops = (*clean)->flash().mutations() - before;
  // The first write is esp_ota_begin's invalidation of otadata entry 1 (sector 0xe000).
  const auto& log = (*clean)->flash().log();
  auto first =
      std::find_if(log.begin(), log.end(), [](const FlashOp& op) { return op.kind != FlashOp::Kind::read; });
  ASSERT_NE(first, log.end());
  EXPECT_EQ(to_string(*first), "erase 0x0000e000 +0x1000");
  EXPECT_EQ(boot_version((*clean)->snapshot()), "ota_1 4");
  ASSERT_GT(ops, 20u);

  for (uint64_t cut = 0; cut < ops; ++cut) {
    auto dev = VirtualDevice::in_memory(rollback_config(), test_efuse(), base);
    ASSERT_TRUE(dev);
    auto b = (*dev)->power_on();
    ASSERT_TRUE(b && b->app);
    (*dev)->flash().cut_power_at((*dev)->flash().mutations() + cut);
    auto r = install(**dev, *b, image);
    ASSERT_FALSE(r) << "cut at op " << cut;
    EXPECT_EQ(r.error().code(), ErrorCode::power_lost) << "cut at op " << cut;
    std::string v = boot_version((*dev)->snapshot());
    // Until the new entry is programmed (the last operation) the old image boots.
    if (cut + 1 < ops) {
      EXPECT_EQ(v, "ota_0 2") << "cut at op " << cut;
    } else {
      EXPECT_TRUE(v == "ota_0 2" || v == "ota_1 4") << "cut at op " << cut << ": " << v;
    }
  }
}

}  // namespace
}  // namespace ota32
