#include <gtest/gtest.h>

#include <algorithm>

#include "boot/bootloader.h"
#include "boot_test_util.h"
#include "flash/fault_flash.h"
#include "flash/nor_flash.h"
#include "test_images.h"

namespace ota32 {
namespace {

using testing::has_line;
using testing::put;
using testing::seed_bootloader;
using testing::seed_factory_app;
using testing::seed_flash;
using testing::seed_ota_app;
using testing::seed_partition_table;
using testing::texts;

const ChipInfo& esp32() { return *find_chip("esp32"); }

void set_entry(NorFlash& f, int i, uint32_t seq, uint32_t state) {
  const auto e = make_ota_entry(seq, state);
  put(f, 0xd000 + i * 0x1000, Bytes(e.raw.begin(), e.raw.end()));
}

OtaEntryBytes entry(NorFlash& f, int i) {
  Region r(f, 0xd000, 0x2000, "otadata");
  return (*read_otadata(r))[i];
}

// ota_0 = version 2 (VALID, seq 1), ota_1 = version 3 (seq 2, in `state`).
std::unique_ptr<MemFlash> two_slot_flash(uint32_t state) {
  auto f = seed_flash();
  put(*f, 0x110000, seed_ota_app("2"));
  put(*f, 0x210000, seed_ota_app("3"));
  set_entry(*f, 0, 1, kOtaStateValid);
  set_entry(*f, 1, 2, state);
  return f;
}

BootResult boot(Flash& f, BootConfig cfg = {}, BootEfuse efuse = {100, 0, 32}) {
  auto r = run_bootloader(f, esp32(), cfg, efuse);
  EXPECT_TRUE(r) << r.error().message();
  return std::move(*r);
}

TEST(Bootloader, SeedLayoutReproducesTheSeedLog) {
  auto f = seed_flash();
  BootConfig cfg;
  cfg.idf_version = "v4.3-dev-1561-g357a27760";  // the seed's bootloader: old segment-line format
  auto r = boot(*f, cfg);
  ASSERT_TRUE(r.app);
  EXPECT_EQ(r.app->index, kFactoryIndex);
  // The seed's lines that do not depend on the hardware, in order.
  const std::vector<std::string> seed = {
      "I boot.esp32: SPI Speed      : 40MHz",
      "I boot.esp32: SPI Mode       : DIO",
      "I boot.esp32: SPI Flash Size : 4MB",
      "I boot: Enabling RNG early entropy source...",
      "I boot: Partition Table:",
      "I boot: ## Label            Usage          Type ST Offset   Length",
      "I boot:  0 nvs              WiFi data        01 02 00009000 00004000",
      "I boot:  1 otadata          OTA data         01 00 0000d000 00002000",
      "I boot:  2 phy_init         RF data          01 01 0000f000 00001000",
      "I boot:  3 factory          factory app      00 00 00010000 00100000",
      "I boot:  4 ota_0            OTA app          00 10 00110000 00100000",
      "I boot:  5 ota_1            OTA app          00 11 00210000 00100000",
      "I boot: End of partition table",
      "I boot: Defaulting to factory image",
      "I esp_image: segment 0: paddr=0x00010020 vaddr=0x3f400020 size=0x1e510 (124176) map",
      "I esp_image: segment 1: paddr=0x0002e538 vaddr=0x3ffb0000 size=0x01ae0 (  6880) load",
      "I esp_image: segment 2: paddr=0x00030020 vaddr=0x400d0020 size=0x90374 (590708) map",
      "I esp_image: segment 3: paddr=0x000c039c vaddr=0x3ffb1ae0 size=0x02428 (  9256) load",
      "I esp_image: segment 4: paddr=0x000c27cc vaddr=0x40080000 size=0x00404 (  1028) load",
      "I esp_image: segment 5: paddr=0x000c2bd8 vaddr=0x40080404 size=0x1466c ( 83564) load",
      "I boot: Loaded app from partition at offset 0x10000",
      "I boot: Disabling RNG early entropy source...",
      "I cpu_start: Application information:",
      "I cpu_start: Project name:     simple_ota",
      "I cpu_start: App version:      1",
      "I cpu_start: Compile time:     Feb  4 2021 18:10:53",
      "I cpu_start: ELF file SHA256:  16c58cb2140dc9a6...",
      "I cpu_start: ESP-IDF:          v4.3-dev-1561-g357a27760",
  };
  auto t = texts(r);
  auto it = std::search(t.begin(), t.end(), seed.begin(), seed.begin() + 20);
  ASSERT_NE(it, t.end()) << "segment/table lines not found in order";
  for (const auto& line : seed) EXPECT_TRUE(has_line(r, line)) << line;
  auto pos = [&](const std::string& l) { return std::find(t.begin(), t.end(), l) - t.begin(); };
  EXPECT_LT(pos(seed[19]), pos(seed[20]));
  EXPECT_LT(pos(seed[21]), pos(seed[22]));
  // The clock is virtual and strictly deterministic; lines come out in time order.
  auto again = boot(*seed_flash(), cfg);
  ASSERT_EQ(again.log.size(), r.log.size());
  for (size_t i = 0; i < r.log.size(); ++i) EXPECT_EQ(again.log[i].ms, r.log[i].ms);
  EXPECT_TRUE(std::is_sorted(r.log.begin(), r.log.end(), [](auto& a, auto& b) { return a.ms < b.ms; }));
}

TEST(Bootloader, V55FormatsByDefault) {
  auto f = seed_flash();
  auto r = boot(*f);
  EXPECT_TRUE(has_line(r, "I esp_image: segment 0: paddr=00010020 vaddr=3f400020 size=1e510h (124176) map"));
  EXPECT_TRUE(has_line(r, "I esp_image: segment 1: paddr=0002e538 vaddr=3ffb0000 size=01ae0h (  6880) load"));
  EXPECT_TRUE(has_line(r, "I boot: chip revision: v1.0"));
  EXPECT_TRUE(has_line(r, "I boot: Multicore bootloader"));
}

TEST(Bootloader, NextBootAfterTheSeedOtaLoadsOta0) {
  auto f = seed_flash();
  put(*f, 0x110000, seed_ota_app());
  set_entry(*f, 0, 1, kOtaStateUndefined);  // esp_ota_set_boot_partition(ota_0), rollback disabled
  auto r = boot(*f);
  ASSERT_TRUE(r.app);
  EXPECT_EQ(r.app->index, 0);
  EXPECT_FALSE(has_line(r, "I boot: Defaulting to factory image"));
  EXPECT_TRUE(has_line(r, "I esp_image: segment 0: paddr=00110020 vaddr=3f400020 size=1e558h (124248) map"));
  EXPECT_TRUE(has_line(r, "I boot: Loaded app from partition at offset 0x110000"));
  EXPECT_EQ(r.app->desc->version, "2");
}

TEST(Bootloader, CorruptActiveSlotFallsBackDownward) {
  auto f = seed_flash();
  Bytes app = seed_ota_app();
  put(*f, 0x110000, seed_ota_app("2"));
  app[0x400] ^= 0x01;  // checksum / hash now wrong
  put(*f, 0x210000, app);
  set_entry(*f, 1, 2, kOtaStateUndefined);  // ota_1 active
  auto r = boot(*f);
  ASSERT_TRUE(r.app);
  EXPECT_EQ(r.app->index, 0);
  EXPECT_TRUE(has_line(r, "E boot: OTA app partition slot 1 is not bootable"));
  EXPECT_TRUE(has_line(r, "I boot: Loaded app from partition at offset 0x110000"));
}

TEST(Bootloader, EmptySlotAndCorruptFactoryTryTheRest) {
  auto f = seed_flash();
  put(*f, 0x10000, Bytes(0x1000, 0xFF));  // factory erased
  put(*f, 0x210000, seed_ota_app("3"));
  auto r = boot(*f);  // Defaulting to factory -> factory, ota_0 (empty), ota_1
  ASSERT_TRUE(r.app);
  EXPECT_EQ(r.app->index, 1);
  EXPECT_TRUE(has_line(r, "E esp_image: image at 0x10000 has invalid magic byte (nothing flashed here?)"));
  EXPECT_TRUE(has_line(r, "E boot: Factory app partition is not bootable"));
  EXPECT_TRUE(has_line(r, "E boot: OTA app partition slot 0 is not bootable"));
}

TEST(Bootloader, NothingBootableResets) {
  auto f = seed_flash();
  put(*f, 0x10000, Bytes(0x1000, 0xFF));
  auto r = boot(*f);
  EXPECT_FALSE(r.app);
  EXPECT_TRUE(has_line(r, "E boot: No bootable app partitions in the partition table"));
}

TEST(Bootloader, CorruptPartitionTableResets) {
  auto f = seed_flash();
  Bytes t = seed_partition_table();
  t[0x20 + 4] ^= 0x10;  // otadata offset changed: MD5 row no longer matches
  put(*f, 0x8000, t);
  auto r = boot(*f);
  EXPECT_FALSE(r.app);
  EXPECT_TRUE(has_line(r, "E boot: load partition table error!"));
}

TEST(Bootloader, MissingBootloaderIsTheRomsComplaint) {
  MemFlash f(4u << 20);
  auto r = boot(f);
  EXPECT_FALSE(r.app);
  ASSERT_EQ(r.log.size(), 1u);
  EXPECT_EQ(r.log[0].text, "invalid header: 0xffffffff");
}

TEST(Bootloader, WrongChipImageIsNotBootable) {
  auto f = seed_flash();
  put(*f, 0x110000, testing::build_image(5, {{0x3c000020, 0x200}}, testing::app_desc_bytes("c3app", "1")));
  set_entry(*f, 0, 1, kOtaStateUndefined);
  auto r = boot(*f);
  ASSERT_TRUE(r.app);
  EXPECT_EQ(r.app->index, kFactoryIndex);
  EXPECT_TRUE(has_line(r, "E boot_comm: mismatch chip ID, expected 0, found 5"));
}

TEST(Bootloader, ChipRevisionBelowImageMinimumIsNotBootable) {
  auto f = seed_flash();
  Bytes app = seed_ota_app();
  app[0x0F] = 44;  // min_chip_rev_full = 300 (v3.0), little-endian 0x012c
  app[0x10] = 1;
  put(*f, 0x110000, app);
  set_entry(*f, 0, 1, kOtaStateUndefined);
  auto r = boot(*f);
  EXPECT_EQ(r.app->index, kFactoryIndex);
  EXPECT_TRUE(has_line(r, "E boot_comm: chip revision check failed. Required >= v3.0, found v1.0."));
}

// Rollback (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE).
TEST(Rollback, NewBecomesPendingVerifyBeforeLoading) {
  auto f = seed_flash();
  put(*f, 0x110000, seed_ota_app());
  set_entry(*f, 0, 1, kOtaStateNew);
  BootConfig cfg;
  cfg.rollback = true;
  auto r = boot(*f, cfg);
  EXPECT_EQ(r.app->index, 0);
  EXPECT_EQ(entry(*f, 0).state(), kOtaStatePendingVerify);
  EXPECT_EQ(entry(*f, 0).seq(), 1u);
}

TEST(Rollback, UnconfirmedAppIsAbortedOnTheNextBootAndTheOtherBoots) {
  auto f = two_slot_flash(kOtaStateNew);
  BootConfig cfg;
  cfg.rollback = true;
  EXPECT_EQ(boot(*f, cfg).app->index, 1);  // NEW -> PENDING_VERIFY, boots ota_1
  auto r = boot(*f, cfg);                  // not confirmed: ABORTED, back to ota_0
  EXPECT_EQ(entry(*f, 1).state(), kOtaStateAborted);
  EXPECT_EQ(r.app->index, 0);
  EXPECT_EQ(r.app->desc->version, "2");
}

TEST(Rollback, WithoutRollbackConfigPendingVerifyStaysAndBoots) {
  auto f = seed_flash();
  put(*f, 0x110000, seed_ota_app());
  set_entry(*f, 0, 1, kOtaStatePendingVerify);
  auto r = boot(*f);
  EXPECT_EQ(r.app->index, 0);
  EXPECT_EQ(entry(*f, 0).state(), kOtaStatePendingVerify);
}

TEST(Rollback, AbortedOnlyEntryWithFactoryDefaultsToFactory) {
  auto f = seed_flash();
  put(*f, 0x110000, seed_ota_app());
  set_entry(*f, 0, 1, kOtaStatePendingVerify);
  BootConfig cfg;
  cfg.rollback = true;
  auto r = boot(*f, cfg);
  EXPECT_EQ(r.app->index, kFactoryIndex);
  EXPECT_TRUE(has_line(r, "I boot: Defaulting to factory image"));
}

TEST(Rollback, AppConfirmsOrRejectsItself) {
  auto f = two_slot_flash(kOtaStateNew);
  BootConfig cfg;
  cfg.rollback = true;
  auto r = boot(*f, cfg);
  ASSERT_EQ(r.app->index, 1);
  PartitionTable table = *parse_partition_binary(seed_partition_table(), {}, "t");
  const BootEfuse efuse{100, 0, 32};
  AppOtaContext ctx{*f, table, silent_app_verifier(*f, esp32(), efuse)};
  EXPECT_EQ(*get_state_partition(*f, table, r.app->partition), kOtaStatePendingVerify);
  BootLog log;
  ASSERT_TRUE(check_rollback_is_possible(ctx).value());
  ASSERT_TRUE(mark_app_invalid_rollback(ctx, log));
  EXPECT_EQ(entry(*f, 1).state(), kOtaStateInvalid);
  ASSERT_EQ(log.lines().size(), 1u);
  EXPECT_EQ(log.lines()[0].text, "Rollback to previously worked partition.");
  EXPECT_EQ(boot(*f, cfg).app->index, 0);
  // Confirming on ota_0 (already VALID) writes nothing.
  FaultFlash counting(*f);
  AppOtaContext ctx2{counting, table, silent_app_verifier(counting, esp32(), efuse)};
  ASSERT_TRUE(mark_app_valid_cancel_rollback(ctx2, log));
  EXPECT_EQ(counting.mutations(), 0u);
}

TEST(Rollback, RollbackImpossibleWhenOtherSlotIsEmptyAndNoFactoryImage) {
  auto f = seed_flash();
  put(*f, 0x10000, Bytes(0x1000, 0xFF));
  put(*f, 0x110000, seed_ota_app());
  set_entry(*f, 0, 1, kOtaStatePendingVerify);
  PartitionTable table = *parse_partition_binary(seed_partition_table(), {}, "t");
  const BootEfuse efuse{100, 0, 32};
  AppOtaContext ctx{*f, table, silent_app_verifier(*f, esp32(), efuse)};
  BootLog log;
  auto r = mark_app_invalid_rollback(ctx, log);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::rollback_refused);
  EXPECT_EQ(entry(*f, 0).state(), kOtaStatePendingVerify);
}

// Anti-rollback.
TEST(AntiRollback, InitialContentsWriteOtadataAndRaiseTheEfuse) {
  auto f = seed_flash();
  put(*f, 0x10000, Bytes(0x1000, 0xFF));  // no factory image
  put(*f, 0x110000, seed_ota_app("2", 3));
  BootConfig cfg;
  cfg.rollback = cfg.anti_rollback = true;
  auto r = boot(*f, cfg);
  ASSERT_TRUE(r.app);
  EXPECT_EQ(r.app->index, 0);
  EXPECT_TRUE(has_line(r, "I boot: Set actual ota_seq=1 in otadata[0]"));
  EXPECT_EQ(entry(*f, 0).seq(), 1u);
  EXPECT_EQ(entry(*f, 0).state(), kOtaStateValid);
  EXPECT_EQ(r.efuse.secure_version, 3u);
  EXPECT_TRUE(has_line(r, "I app_init: Secure version:   3") ||
              has_line(r, "I cpu_start: Secure version:   3"));
}

TEST(AntiRollback, OlderSecureVersionIsRefusedEvenIfSelected) {
  auto f = seed_flash();
  put(*f, 0x10000, seed_factory_app("1", 2));
  put(*f, 0x110000, seed_ota_app("2", 1));
  set_entry(*f, 0, 1, kOtaStateValid);
  BootConfig cfg;
  cfg.rollback = cfg.anti_rollback = true;
  auto r = boot(*f, cfg, {100, 2, 32});
  ASSERT_TRUE(r.app);
  EXPECT_EQ(r.app->index, kFactoryIndex);
  EXPECT_TRUE(has_line(r, "I boot: Enabled a check secure version of app for anti rollback"));
  EXPECT_TRUE(has_line(r, "I boot: Secure version (from eFuse) = 2"));
  EXPECT_TRUE(has_line(r, "E boot: ota data partition invalid, falling back to factory"));
  EXPECT_FALSE(has_line(r, "I efuse: Anti-rollback is set. eFuse field is updated(1)."));
  EXPECT_EQ(r.efuse.secure_version, 2u);
}

// A VALID entry's app raises the counter before it is loaded
// (bootloader_utility_get_selected_boot_partition), through the burner; a cut there is a power loss, nothing
// else.
TEST(AntiRollback, ValidEntryRaisesTheCounterBeforeLoadingThroughTheBurner) {
  auto f = seed_flash();
  put(*f, 0x10000, seed_factory_app("1", 0));
  put(*f, 0x110000, seed_ota_app("2", 3));
  set_entry(*f, 0, 1, kOtaStateValid);
  BootConfig cfg;
  cfg.rollback = cfg.anti_rollback = true;
  std::vector<uint32_t> burnt;
  SecureVersionBurner burn = [&](uint32_t v) -> Result<void> {
    burnt.push_back(v);
    return {};
  };
  auto r = run_bootloader(*f, esp32(), cfg, {100, 1, 32}, burn);
  ASSERT_TRUE(r);
  ASSERT_TRUE(r->app);
  EXPECT_EQ(r->app->index, 0);
  EXPECT_EQ(burnt, std::vector<uint32_t>{3});
  EXPECT_EQ(r->efuse.secure_version, 3u);
  auto t = texts(*r);
  auto set = std::find(t.begin(), t.end(), "I efuse: Anti-rollback is set. eFuse field is updated(3).");
  auto seg =
      std::find_if(t.begin(), t.end(), [](const std::string& l) { return l.find("segment 0") != l.npos; });
  ASSERT_NE(set, t.end());
  EXPECT_LT(set, seg);
  EXPECT_NE(std::find(t.begin(), t.end(), "I boot: Secure version (from eFuse) = 1"), t.end());
  // Booted again with the counter at 3: nothing to burn.
  burnt.clear();
  auto again = run_bootloader(*f, esp32(), cfg, r->efuse, burn);
  ASSERT_TRUE(again && again->app);
  EXPECT_TRUE(burnt.empty());
  // A cut at the burn stops the boot.
  SecureVersionBurner cut = [](uint32_t) -> Result<void> { return Error(ErrorCode::power_lost, "cut"); };
  auto lost = run_bootloader(*f, esp32(), cfg, {100, 1, 32}, cut);
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code(), ErrorCode::power_lost);
}

// esp_ota_mark_app_valid_cancel_rollback with anti-rollback: VALID first, then the counter.
TEST(AntiRollback, ConfirmingANewerAppBurnsTheCounterAfterTheValidWrite) {
  auto f = seed_flash();
  put(*f, 0x10000, seed_factory_app("1", 1));
  put(*f, 0x110000, seed_ota_app("2", 2));
  set_entry(*f, 0, 1, kOtaStateNew);
  BootConfig cfg;
  cfg.rollback = cfg.anti_rollback = true;
  auto r = boot(*f, cfg, {100, 1, 32});
  ASSERT_EQ(r.app->index, 0);
  EXPECT_EQ(r.efuse.secure_version, 1u);  // PENDING_VERIFY: not raised by the bootloader
  PartitionTable table = *parse_partition_binary(seed_partition_table(), {}, "t");
  AppOtaContext ctx{*f, table, silent_app_verifier(*f, esp32(), r.efuse), 1, true};
  ctx.running = &r.app->partition;
  std::vector<std::pair<uint32_t, uint32_t>> order;  // (state of entry 0 when burnt, value)
  ctx.burn_secure_version = [&](uint32_t v) -> Result<void> {
    order.emplace_back(entry(*f, 0).state(), v);
    return {};
  };
  BootLog log;
  ASSERT_TRUE(mark_app_valid_cancel_rollback(ctx, log));
  ASSERT_EQ(order.size(), 1u);
  EXPECT_EQ(order[0], std::make_pair(uint32_t{kOtaStateValid}, uint32_t{2}));
  ASSERT_EQ(log.lines().size(), 1u);
  EXPECT_EQ(log.lines()[0].text, "Anti-rollback is set. eFuse field is updated(2).");
  // A secure_version the field cannot hold: VALID is written, the burn refused with ESP-IDF's words.
  set_entry(*f, 0, 1, kOtaStatePendingVerify);
  ctx.secure_version_bits = 1;
  BootLog log2;
  auto over = mark_app_valid_cancel_rollback(ctx, log2);
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(entry(*f, 0).state(), kOtaStateValid);
  EXPECT_EQ(log2.lines()[0].text, "Max secure version is 1. Given 2 version can not be written.");
}

TEST(InitialContents, FactoryPartitionPresentButEmptyDoesNotWriteOtadata) {
  auto f = seed_flash();
  put(*f, 0x10000, Bytes(0x1000, 0xFF));
  put(*f, 0x110000, seed_ota_app());
  auto r = boot(*f);
  EXPECT_TRUE(has_line(r, "I boot: Defaulting to factory image"));
  EXPECT_EQ(r.app->index, 0);
  EXPECT_EQ(entry(*f, 0).seq(), 0xFFFFFFFFu);
}

TEST(InitialContents, NoFactoryBlankOtadataWritesEntry0) {
  auto f = seed_flash();
  put(*f, 0x8000, testing::seed_partition_table(false));
  put(*f, 0x110000, seed_ota_app());
  auto r = boot(*f);
  EXPECT_TRUE(has_line(r, "I boot: No factory image, trying OTA 0"));
  EXPECT_TRUE(has_line(r, "I boot: Set actual ota_seq=1 in otadata[0]"));
  EXPECT_EQ(entry(*f, 0).seq(), 1u);
}

TEST(PowerCut, OtadataRewriteCutLeavesABootableDevice) {
  // A counted sweep: the clean rollback boot of ota_1 (PENDING_VERIFY -> ABORTED) makes some otadata writes;
  // cut the power at every one of them, in every torn mode, and the next boot must still start an app.
  auto clean = two_slot_flash(kOtaStatePendingVerify);
  BootConfig cfg;
  cfg.rollback = true;
  FaultFlash counter(*clean);
  auto first = run_bootloader(counter, esp32(), cfg, {100, 0, 32});
  ASSERT_TRUE(first && first->app);
  const uint64_t ops = counter.mutations();
  ASSERT_EQ(ops, 2u);  // the ABORTED rewrite: erase the entry's sector, program the entry
  EXPECT_EQ(entry(*clean, 1).state(), kOtaStateAborted);
  int cuts = 0;
  for (TornMode mode : {TornMode::random, TornMode::not_started, TornMode::completed}) {
    for (uint64_t cut = 0; cut < ops; ++cut) {
      auto f = two_slot_flash(kOtaStatePendingVerify);
      FaultFlash ff(*f, cut);
      ff.set_torn_mode(mode);
      ff.cut_power_at(cut);
      auto torn = run_bootloader(ff, esp32(), cfg, {100, 0, 32});
      ASSERT_FALSE(torn) << "cut " << cut;
      EXPECT_EQ(torn.error().code(), ErrorCode::power_lost);
      auto r = boot(*f, cfg);
      ASSERT_TRUE(r.app) << to_string(mode) << " cut " << cut;
      // The unconfirmed ota_1 never starts again: a torn entry 1 reads invalid, an intact one is aborted.
      EXPECT_EQ(r.app->index, 0) << to_string(mode) << " cut " << cut;
      EXPECT_NE(entry(*f, 1).state(), kOtaStatePendingVerify) << to_string(mode) << " cut " << cut;
      ++cuts;
    }
  }
  EXPECT_EQ(cuts, 6);
}

}  // namespace
}  // namespace ota32
