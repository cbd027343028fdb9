// esp_ota_ops' app side (ota_ops/ota_ops.h), each call against the otadata it reads and the flash writes it
// makes. spec/otadata-and-boot.md §2 and §4.
#include "ota_ops/ota_ops.h"

#include <gtest/gtest.h>

#include <set>

#include "flash/fault_flash.h"
#include "flash/nor_flash.h"
#include "format/image_make.h"
#include "ota_ops/ota_test_layout.h"

namespace ota32 {
namespace {

using testing::CollectLog;
using testing::seed_layout;

class OtaOpsTest : public ::testing::Test {
 protected:
  OtaOpsTest() : flash_(4u << 20), table_(seed_layout()) {}

  static OtaSelectEntry entry_of(uint32_t seq, uint32_t state) { return make_ota_select_entry(seq, state); }
  void put(int sector, const OtaSelectEntry& e) { ASSERT_TRUE(testing::put_seed_otadata(flash_, sector, e)); }
  OtaSelectEntry get(int sector) { return testing::get_seed_otadata(flash_, sector); }
  const PartitionEntry& slot(const char* name) { return *table_.find(name); }
  // An app of `secure_version` in partition `name` (for the anti-rollback rule, which reads its descriptor).
  void put_app(const char* name, uint32_t secure_version) {
    MakeImageOptions o;
    o.chip = find_chip("esp32");
    o.project = "app";
    o.version = name;
    o.size = 128 * 1024;
    o.secure_version = secure_version;
    auto img = make_app_image(o);
    ASSERT_TRUE(img) << img.error().message();
    ASSERT_TRUE(flash_.erase(slot(name).offset, 128 * 1024));
    ASSERT_TRUE(flash_.program(slot(name).offset, *img));
  }
  // The image check is the bootloader's (boot/bootloader.h silent_app_verifier); here: a set of names.
  AppOtaContext context(Flash& flash) {
    return AppOtaContext{
        flash, table_,
        [this](const PartitionEntry& p) -> Result<bool> { return bootable_.count(p.name) > 0; },
        efuse_secure_version_, anti_rollback_};
  }
  AppOtaContext context() { return context(flash_); }

  MemFlash flash_;
  PartitionTable table_;
  CollectLog log_;
  std::set<std::string> bootable_;
  uint32_t efuse_secure_version_ = 0;
  bool anti_rollback_ = false;
};

TEST_F(OtaOpsTest, OtadataEntriesThroughARegion) {
  Region od(flash_, 0xd000, 0x2000, "otadata");
  ASSERT_TRUE(write_otadata_entry(od, 1, make_ota_entry(2, kOtaStateValid)));
  ASSERT_TRUE(write_otadata_entry(od, OtadataWrite{0, entry_of(3, kOtaStateNew)}));
  auto raw = read_otadata(od);
  ASSERT_TRUE(raw);
  EXPECT_EQ((*raw)[0].seq(), 3u);
  EXPECT_EQ((*raw)[0].state(), kOtaStateNew);
  EXPECT_EQ((*raw)[1].entry(), entry_of(2, kOtaStateValid));
  EXPECT_EQ((*raw)[1].crc(), otadata_crc(2));
  auto both = read_otadata_entries(flash_, table_);
  ASSERT_TRUE(both);
  EXPECT_EQ(both->entries[0], entry_of(3, kOtaStateNew));
  EXPECT_EQ(both->entries[1], entry_of(2, kOtaStateValid));
}

TEST_F(OtaOpsTest, OtadataRegionNeedsTwoSectors) {
  PartitionTable none = table_;
  none.entries.erase(none.entries.begin() + 1);
  auto missing = otadata_region(flash_, none);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::not_found);
  PartitionTable small = table_;
  small.entries[1].size = 0x1000;
  auto tiny = otadata_region(flash_, small);
  ASSERT_FALSE(tiny);
  EXPECT_EQ(tiny.error().code(), ErrorCode::corrupt);
  EXPECT_EQ(tiny.error().message(), "otadata: otadata partition of 0x1000 bytes, 0x2000 needed");
}

TEST_F(OtaOpsTest, NextUpdatePartition) {
  EXPECT_EQ(next_update_partition(table_, table_.factory())->name, "ota_0");
  EXPECT_EQ(next_update_partition(table_, &slot("ota_0"))->name, "ota_1");
  EXPECT_EQ(next_update_partition(table_, &slot("ota_1"))->name, "ota_0");
  EXPECT_EQ(next_update_partition(table_, nullptr)->name, "ota_0");
  PartitionTable none;
  EXPECT_EQ(next_update_partition(none, nullptr), nullptr);
}

TEST_F(OtaOpsTest, GetStatePartition) {
  OtaSelectEntry bad_crc = entry_of(1, kOtaStatePendingVerify);
  bad_crc.crc ^= 1;
  struct Row {
    const char* what;
    const char* partition;
    OtaSelectEntry e0, e1;
    std::optional<uint32_t> state;  // nullopt: the error below
    ErrorCode code = ErrorCode::not_found;
  };
  OtaSelectEntry empty;
  const Row rows[] = {
      {"ota_0 from entry 0", "ota_0", entry_of(1, kOtaStatePendingVerify), empty, kOtaStatePendingVerify},
      {"ota_1 from entry 1", "ota_1", entry_of(1, kOtaStateValid), entry_of(2, kOtaStateNew), kOtaStateNew},
      {"seq 3 names ota_0 again", "ota_0", empty, entry_of(3, kOtaStateInvalid), kOtaStateInvalid},
      {"entry 0 first, whichever is active", "ota_0", entry_of(1, kOtaStateAborted),
       entry_of(3, kOtaStateValid), kOtaStateAborted},
      {"a bad CRC is skipped", "ota_0", bad_crc, entry_of(3, kOtaStateValid), kOtaStateValid},
      {"no entry for the slot", "ota_1", entry_of(1, kOtaStateValid), empty, std::nullopt},
      {"factory is not an OTA slot", "factory", entry_of(1, kOtaStateValid), empty, std::nullopt,
       ErrorCode::unsupported},
  };
  for (const auto& r : rows) {
    put(0, r.e0);
    put(1, r.e1);
    auto s = get_state_partition(flash_, table_, slot(r.partition));
    if (r.state) {
      ASSERT_TRUE(s) << r.what << ": " << s.error().message();
      EXPECT_EQ(*s, *r.state) << r.what;
    } else {
      ASSERT_FALSE(s) << r.what;
      EXPECT_EQ(s.error().code(), r.code) << r.what;
      EXPECT_TRUE(is_esp_ota_answer(s.error())) << r.what;
    }
  }
  PartitionTable small = table_;
  small.entries[1].size = 0x1000;
  auto tiny = get_state_partition(flash_, small, slot("ota_0"));
  ASSERT_FALSE(tiny);
  EXPECT_EQ(tiny.error().code(), ErrorCode::not_found);
  // A flash failure is not one of ESP-IDF's answers.
  FaultFlash cut(flash_);
  cut.cut_power_at(0);
  ASSERT_FALSE(cut.erase(0x3f0000, 0x1000));
  auto lost = get_state_partition(cut, table_, slot("ota_0"));
  ASSERT_FALSE(lost);
  EXPECT_EQ(lost.error().code(), ErrorCode::power_lost);
  EXPECT_FALSE(is_esp_ota_answer(lost.error()));
}

TEST_F(OtaOpsTest, MarkValidRewritesOnlyTheActiveEntrysSector) {
  put(0, entry_of(1, kOtaStateValid));
  put(1, entry_of(2, kOtaStatePendingVerify));
  FaultFlash counting(flash_);
  ASSERT_TRUE(mark_app_valid_cancel_rollback(context(counting), log_));
  EXPECT_EQ(get(1), entry_of(2, kOtaStateValid));
  EXPECT_EQ(get(0), entry_of(1, kOtaStateValid));
  ASSERT_EQ(counting.log().size(), 2u);  // the erase and the program of sector 1
  EXPECT_EQ(counting.log()[0].kind, FlashOp::Kind::erase);
  EXPECT_EQ(counting.log()[0].addr, 0xe000u);
  // Already VALID: nothing written.
  FaultFlash again(flash_);
  ASSERT_TRUE(mark_app_valid_cancel_rollback(context(again), log_));
  EXPECT_EQ(again.mutations(), 0u);
  EXPECT_TRUE(log_.lines.empty());
}

TEST_F(OtaOpsTest, MarkValidOnFactoryIsNotFound) {
  auto r = mark_app_valid_cancel_rollback(context(), log_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_EQ(log_.lines, std::vector<std::string>{"E esp_ota_ops: Running firmware is factory"});
}

TEST_F(OtaOpsTest, CheckRollbackIsPossible) {
  struct Row {
    const char* what;
    OtaSelectEntry e0, e1;  // the running app is the active entry
    std::set<std::string> bootable;
    bool anti_rollback;
    bool possible;
  };
  OtaSelectEntry empty;
  const Row rows[] = {
      {"the other slot verifies",
       entry_of(1, kOtaStateValid),
       entry_of(2, kOtaStatePendingVerify),
       {"ota_0"},
       false,
       true},
      {"the other slot does not verify",
       entry_of(1, kOtaStateValid),
       entry_of(2, kOtaStatePendingVerify),
       {"factory"},
       false,
       false},
      {"no other entry: the factory app",
       entry_of(1, kOtaStatePendingVerify),
       empty,
       {"factory"},
       false,
       true},
      {"no other entry, factory broken", entry_of(1, kOtaStatePendingVerify), empty, {}, false, false},
      {"the other entry INVALID: the factory app",
       entry_of(1, kOtaStateInvalid),
       entry_of(2, kOtaStatePendingVerify),
       {"factory", "ota_0"},
       false,
       true},
      {"anti-rollback never falls back to factory",
       entry_of(1, kOtaStatePendingVerify),
       empty,
       {"factory"},
       true,
       false},
      {"no active entry (factory running)", empty, empty, {"factory", "ota_0"}, false, false},
  };
  for (const auto& r : rows) {
    put(0, r.e0);
    put(1, r.e1);
    bootable_ = r.bootable;
    anti_rollback_ = r.anti_rollback;
    auto p = check_rollback_is_possible(context());
    ASSERT_TRUE(p) << r.what << ": " << p.error().message();
    EXPECT_EQ(*p, r.possible) << r.what;
  }
}

TEST_F(OtaOpsTest, CheckRollbackWithAntiRollbackComparesTheSecureVersion) {
  put_app("ota_0", 2);
  put(0, entry_of(1, kOtaStateValid));
  put(1, entry_of(2, kOtaStatePendingVerify));
  bootable_ = {"ota_0"};
  anti_rollback_ = true;
  for (uint32_t efuse : {0u, 2u, 3u}) {
    efuse_secure_version_ = efuse;
    EXPECT_EQ(*check_rollback_is_possible(context()), efuse <= 2) << "eFuse secure_version " << efuse;
  }
  auto desc = get_partition_description(flash_, slot("ota_0"));
  ASSERT_TRUE(desc && *desc);
  EXPECT_EQ((*desc)->secure_version, 2u);
  EXPECT_FALSE(*get_partition_description(flash_, slot("ota_1")));  // erased: no descriptor
}

TEST_F(OtaOpsTest, MarkInvalidRollsBackOrRefuses) {
  put(0, entry_of(1, kOtaStateValid));
  put(1, entry_of(2, kOtaStatePendingVerify));
  auto refused = mark_app_invalid_rollback(context(), log_);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::rollback_refused);
  EXPECT_EQ(get(1), entry_of(2, kOtaStatePendingVerify));
  EXPECT_EQ(log_.lines,
            std::vector<std::string>{
                "E esp_ota_ops: Rollback is not possible, do not have any suitable apps in slots"});
  log_.lines.clear();
  bootable_ = {"ota_0"};
  ASSERT_TRUE(mark_app_invalid_rollback(context(), log_));
  EXPECT_EQ(get(1), entry_of(2, kOtaStateInvalid));
  EXPECT_EQ(get(0), entry_of(1, kOtaStateValid));
  EXPECT_EQ(log_.lines, std::vector<std::string>{"I esp_ota_ops: Rollback to previously worked partition."});
  // Now the active entry is 0 (ota_0), whose other entry is INVALID and there is no factory image.
  log_.lines.clear();
  EXPECT_EQ(mark_app_invalid_rollback(context(), log_).error().code(), ErrorCode::rollback_refused);
}

TEST_F(OtaOpsTest, InvalidateInactiveReportsWhetherItErased) {
  put(0, entry_of(3, kOtaStateValid));
  put(1, entry_of(2, kOtaStateValid));
  auto again = invalidate_inactive_ota_data_slot(flash_, table_, &slot("ota_0"));
  ASSERT_TRUE(again);
  EXPECT_TRUE(*again);
  EXPECT_EQ(get(1), OtaSelectEntry{});
  auto twice = invalidate_inactive_ota_data_slot(flash_, table_, &slot("ota_0"));
  ASSERT_TRUE(twice);
  EXPECT_FALSE(*twice);  // now empty: ESP_FAIL, nothing done
  PartitionTable no_otadata = table_;
  no_otadata.entries.erase(no_otadata.entries.begin() + 1);
  auto none = invalidate_inactive_ota_data_slot(flash_, no_otadata, no_otadata.find("ota_0"));
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);
}

TEST_F(OtaOpsTest, SetBootPartitionWritesThePlannedEntry) {
  for (bool rollback : {false, true}) {
    put(0, OtaSelectEntry{});
    put(1, OtaSelectEntry{});
    FaultFlash counting(flash_);
    ASSERT_TRUE(set_boot_partition(counting, table_, slot("ota_0"), rollback));
    EXPECT_EQ(counting.mutations(), 2u);  // one erase, one program
    EXPECT_EQ(get(0), entry_of(1, rollback ? kOtaStateNew : kOtaStateUndefined)) << rollback;
    ASSERT_TRUE(set_boot_partition(flash_, table_, slot("ota_1"), rollback));
    EXPECT_EQ(get(1), entry_of(2, rollback ? kOtaStateNew : kOtaStateUndefined)) << rollback;
    EXPECT_EQ(*get_state_partition(flash_, table_, slot("ota_1")),
              rollback ? kOtaStateNew : kOtaStateUndefined);
  }
  PartitionTable no_otadata = table_;
  no_otadata.entries.erase(no_otadata.entries.begin() + 1);
  EXPECT_EQ(set_boot_partition(flash_, no_otadata, *no_otadata.find("ota_0"), false).error().code(),
            ErrorCode::not_found);
}

TEST_F(OtaOpsTest, APowerCutStopsTheWrite) {
  put(0, entry_of(1, kOtaStateValid));
  put(1, entry_of(2, kOtaStatePendingVerify));
  FaultFlash faulty(flash_);
  faulty.cut_power_at(0);
  auto r = mark_app_valid_cancel_rollback(context(faulty), log_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::power_lost);
  EXPECT_EQ(get(0), entry_of(1, kOtaStateValid));  // the other entry is never touched
}

}  // namespace
}  // namespace ota32
