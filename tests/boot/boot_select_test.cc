// One test per row of the bootloader's decision tables (spec/otadata-and-boot.md §3.1-3.5).
#include <gtest/gtest.h>

#include "boot/boot_select.h"

namespace ota32 {
namespace {

const EntryView kFF{};  // erased
EntryView ok(uint32_t seq, uint32_t state = kOtaStateUndefined) { return {seq, state, true}; }
EntryView bad(uint32_t seq) { return {seq, kOtaStateUndefined, false}; }  // CRC wrong
EntryView x(uint32_t seq) { return {seq, kOtaStateAborted, true}; }       // CRC-good, ABORTED

SelectInput input(EntryView e0, EntryView e1, bool factory, int slots = 2) {
  SelectInput in;
  in.entries = {e0, e1};
  in.has_factory = factory;
  in.ota_app_count = slots;
  return in;
}

std::string first_log(const Selection& s) { return s.log.empty() ? "" : s.log[0].text; }

TEST(SelectBoot, NoOtadataPartitionBootsFactorySilently) {
  SelectInput in = input(kFF, kFF, true);
  in.has_otadata = false;
  auto s = select_boot_partition(in);
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_TRUE(s.log.empty());
}

TEST(SelectBoot, BothErasedWithFactoryDefaultsToFactory) {
  auto s = select_boot_partition(input(kFF, kFF, true));
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_EQ(first_log(s), "Defaulting to factory image");
  EXPECT_EQ(s.log[0].level, 'I');
  EXPECT_FALSE(s.initial_contents);
}

TEST(SelectBoot, BothErasedWithoutFactoryTriesOta0WithInitialContents) {
  auto s = select_boot_partition(input(kFF, kFF, false));
  EXPECT_EQ(s.start_index, 0);
  EXPECT_EQ(first_log(s), "No factory image, trying OTA 0");
  EXPECT_TRUE(s.initial_contents);
}

TEST(SelectBoot, BothInvalidCrcGoodWithFactory) {
  auto s = select_boot_partition(input(x(3), ok(2, kOtaStateInvalid), true));
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_EQ(first_log(s), "Defaulting to factory image");
}

TEST(SelectBoot, BothInvalidCrcGoodWithoutFactoryHasNoInitialContents) {
  auto s = select_boot_partition(input(x(3), kFF, false));
  EXPECT_EQ(s.start_index, 0);
  EXPECT_EQ(first_log(s), "No factory image, trying OTA 0");
  EXPECT_FALSE(s.initial_contents);
}

TEST(SelectBoot, CrcBadAbortedCountsAsInvalidButKeepsInitialContents) {
  EntryView aborted_bad{5, kOtaStateAborted, false};
  auto s = select_boot_partition(input(kFF, aborted_bad, false));
  EXPECT_EQ(s.start_index, 0);
  EXPECT_TRUE(s.initial_contents);
}

TEST(SelectBoot, NoOtaSlotsDefaultsToFactory) {
  auto s = select_boot_partition(input(ok(1), kFF, true, 0));
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_EQ(first_log(s), "Defaulting to factory image");
}

TEST(SelectBoot, OneValidEntryPicksItsSlotSilently) {
  for (auto other : {kFF, bad(7), x(9)}) {
    auto s = select_boot_partition(input(ok(1), other, true));
    EXPECT_EQ(s.start_index, 0);
    EXPECT_EQ(s.active_entry, 0);
    EXPECT_TRUE(s.log.empty());
  }
  auto s = select_boot_partition(input(kFF, ok(2), true));
  EXPECT_EQ(s.start_index, 1);
  EXPECT_EQ(s.active_entry, 1);
}

TEST(SelectBoot, BothValidLargerSeqWinsTieGoesToEntry0) {
  EXPECT_EQ(select_boot_partition(input(ok(3), ok(2), true)).start_index, 0);  // seq 3 -> slot 0
  EXPECT_EQ(select_boot_partition(input(ok(1), ok(2), true)).start_index, 1);
  auto tie = select_boot_partition(input(ok(3), ok(3), true));
  EXPECT_EQ(tie.active_entry, 0);
}

TEST(SelectBoot, SlotIsSeqMinusOneModuloCount) {
  EXPECT_EQ(select_boot_partition(input(ok(5), kFF, true, 3)).start_index, 1);
  // seq 0 is CRC-good in the ROM CRC (0xFFFFFFFF); (0 - 1) % 2 = 1.
  EXPECT_EQ(select_boot_partition(input(ok(0), kFF, true, 2)).start_index, 1);
  EXPECT_EQ(select_boot_partition(input(ok(0), kFF, true, 3)).start_index, 0);
}

TEST(SelectBoot, BadCrcWithFactoryFallsBackToFactory) {
  auto s = select_boot_partition(input(bad(1), kFF, true));
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_EQ(first_log(s), "ota data partition invalid, falling back to factory");
  EXPECT_EQ(s.log[0].level, 'E');
}

TEST(SelectBoot, BadCrcWithoutFactoryTriesAllPartitions) {
  auto s = select_boot_partition(input(bad(1), x(2), false));
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_EQ(first_log(s), "ota data partition invalid and no factory, will try all partitions");
  EXPECT_FALSE(s.initial_contents);
}

TEST(SelectBoot, StatesOtherThanInvalidAbortedAreSelectable) {
  for (uint32_t st : {uint32_t{kOtaStateNew}, uint32_t{kOtaStatePendingVerify}, uint32_t{kOtaStateValid},
                      uint32_t{kOtaStateUndefined}, uint32_t{5}}) {
    EXPECT_EQ(select_boot_partition(input(ok(2, st), kFF, true)).start_index, 1) << st;
  }
}

TEST(RollbackStep, PendingVerifyBecomesAbortedOnlyWithRollback) {
  std::array<EntryView, 2> e{ok(1, kOtaStatePendingVerify), bad(2)};
  e[1].state = kOtaStatePendingVerify;  // whatever its CRC
  EXPECT_EQ(entries_to_abort(e, true), (std::vector<int>{0, 1}));
  EXPECT_TRUE(entries_to_abort(e, false).empty());
  EXPECT_TRUE(entries_to_abort({ok(1, kOtaStateNew), ok(2, kOtaStateValid)}, true).empty());
}

TEST(RollbackStep, NewBecomesPendingVerifyOnlyWithRollback) {
  EXPECT_TRUE(promote_new_to_pending(ok(1, kOtaStateNew), true));
  EXPECT_FALSE(promote_new_to_pending(ok(1, kOtaStateNew), false));
  EXPECT_FALSE(promote_new_to_pending(ok(1, kOtaStateValid), true));
}

TEST(AntiRollback, InitialStateStartsAtFactoryWithInitialContents) {
  SelectInput in = input(kFF, bad(4), false);
  in.anti_rollback = true;
  auto s = select_boot_partition(in);
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_TRUE(s.initial_contents);
  ASSERT_EQ(s.log.size(), 3u);
  EXPECT_EQ(s.log[0].text, "Enabled a check secure version of app for anti rollback");
  EXPECT_EQ(s.log[1].text, "Secure version (from eFuse) = 0");
  EXPECT_EQ(s.log[2].text, "otadata[0..1] in initial state");
}

TEST(AntiRollback, EntryWhoseAppIsBelowTheEfuseDoesNotQualify) {
  SelectInput in = input(ok(1), ok(2), true);  // entry 1 (slot 1) would win on seq
  in.anti_rollback = true;
  in.efuse_secure_version = 2;
  in.slot_secure_version[0] = 3;
  in.slot_secure_version[1] = 1;
  auto s = select_boot_partition(in);
  EXPECT_EQ(s.start_index, 0);
  EXPECT_EQ(s.active_entry, 0);
}

TEST(AntiRollback, NoQualifyingEntryFallsBackToFactory) {
  SelectInput in = input(ok(1), kFF, true);
  in.anti_rollback = true;
  in.efuse_secure_version = 5;
  in.slot_secure_version[0] = 4;
  auto s = select_boot_partition(in);
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_EQ(s.log.back().text, "ota data partition invalid, falling back to factory");
}

TEST(AntiRollback, MissingDescriptorIsLoggedAndDoesNotQualify) {
  SelectInput in = input(ok(1), kFF, false);
  in.anti_rollback = true;
  auto s = select_boot_partition(in);
  EXPECT_EQ(s.start_index, kFactoryIndex);
  EXPECT_EQ(s.log[2].text, "Failed to get partition description 0");
}

TEST(AttemptOrder, FromActiveSlotDownThenUpThenTest) {
  EXPECT_EQ(boot_attempt_order(1, 2, false), (std::vector<int>{1, 0, kFactoryIndex}));
  EXPECT_EQ(boot_attempt_order(kFactoryIndex, 2, false), (std::vector<int>{kFactoryIndex, 0, 1}));
  EXPECT_EQ(boot_attempt_order(0, 3, true), (std::vector<int>{0, kFactoryIndex, 1, 2, kTestAppIndex}));
  EXPECT_EQ(boot_attempt_order(kTestAppIndex, 2, true), (std::vector<int>{kTestAppIndex}));
}

}  // namespace
}  // namespace ota32
