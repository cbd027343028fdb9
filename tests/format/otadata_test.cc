// otadata: entry layout and CRC (spec otadata-and-boot.md §1), the bootloader's decision tables (§3.1-3.5,
// one test per row; src/boot runs them on flash), esp_ota_set_boot_partition's worked sequence (§2) and
// otatool's switch (§7).
#include "format/otadata.h"

#include <gtest/gtest.h>

namespace ota32 {
namespace {

constexpr uint32_t kNew = 0, kPending = 1, kValid = 2, kInvalid = 3, kAborted = 4, kUndef = 0xFFFFFFFF;

OtaSelectEntry ok(uint32_t seq, uint32_t state = kUndef) { return make_ota_select_entry(seq, state); }
OtaSelectEntry erased() { return parse_ota_select_entry(Bytes(32, 0xFF)); }
OtaSelectEntry bad(uint32_t seq, uint32_t state = kUndef) {
  auto e = ok(seq, state);
  e.crc ^= 1;
  return e;
}
Otadata od(OtaSelectEntry a, OtaSelectEntry b) { return Otadata{{a, b}}; }

// The single log line of a decision that logs at most one ("" if none).
std::string line(const BootSelection& s) {
  EXPECT_LE(s.log.size(), 1u);
  return s.log.empty() ? "" : s.log[0].text;
}
char level(const BootSelection& s) { return s.log.empty() ? ' ' : s.log[0].level; }

BootSelectOptions opts(bool factory, bool rollback = false) {
  BootSelectOptions o;
  o.has_factory = factory;
  o.rollback = rollback;
  return o;
}

TEST(Otadata, CrcTable) {
  EXPECT_EQ(otadata_crc(1), 0x4743989Au);
  EXPECT_EQ(otadata_crc(2), 0x55F63774u);
  EXPECT_EQ(otadata_crc(3), 0xED4A5011u);
  EXPECT_EQ(otadata_crc(4), 0x709D68A8u);
  EXPECT_EQ(otadata_crc(5), 0xC8210FCDu);
  EXPECT_EQ(otadata_crc(0xFFFFFFFF), 0x2144DF1Cu);
  EXPECT_EQ(otadata_crc(0), 0xFFFFFFFFu);
  EXPECT_EQ(otadata_crc(0xFFFFFFFE), 0x99F8B879u);
}

TEST(Otadata, EntryBytesAfterFirstSetBoot) {
  // §1.3: entry 0 after the first esp_ota_set_boot_partition(ota_0) with rollback disabled.
  Bytes b = serialize_ota_select_entry(ok(1));
  EXPECT_EQ(to_hex(b), "01000000" + std::string(40, 'f') + "ffffffff" + "9a984347");
  EXPECT_EQ(parse_ota_select_entry(b), ok(1));
}

TEST(Otadata, ImageLayoutAndEmpty) {
  Bytes img = otadata_image(od(ok(1), ok(2)));
  ASSERT_EQ(img.size(), 0x2000u);
  EXPECT_EQ(img[0], 1);
  EXPECT_EQ(img[0x1000], 2);
  EXPECT_EQ(img[0x20], 0xFF);
  EXPECT_EQ(empty_otadata_image(), Bytes(0x2000, 0xFF));
  auto d = parse_otadata(img);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->entries[1], ok(2));
  auto small = parse_otadata(Bytes(0x1FFF, 0xFF));
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().message(), "otadata is 8191 bytes; it needs two 4 KiB sectors (8192 bytes)");
  EXPECT_TRUE(parse_otadata(Bytes(0x3000, 0xFF)));  // larger is accepted; only offsets 0 and 0x1000 are read
}

TEST(Otadata, DefaultEntryIsErasedFlash) {
  EXPECT_EQ(parse_ota_select_entry(Bytes(32, 0xFF)), OtaSelectEntry{});
  EXPECT_EQ(serialize_ota_select_entry(OtaSelectEntry{}), Bytes(32, 0xFF));
  EXPECT_EQ(otadata_image(Otadata{}), empty_otadata_image());
}

TEST(Otadata, StatesByName) {
  EXPECT_EQ(*parse_ota_state("pending_verify"), kPending);
  EXPECT_EQ(*parse_ota_state("ESP_OTA_IMG_ABORTED"), kAborted);
  EXPECT_EQ(*parse_ota_state("undefined"), kUndef);
  EXPECT_EQ(*parse_ota_state("7"), 7u);
  EXPECT_FALSE(parse_ota_state("bogus"));
  EXPECT_EQ(ota_state_name(2), "VALID");
  EXPECT_EQ(ota_state_name(9), "0x00000009");
}

TEST(Otadata, Predicates) {
  EXPECT_TRUE(ota_entry_invalid(erased()));
  EXPECT_TRUE(ota_entry_invalid(ok(1, kInvalid)));
  EXPECT_TRUE(ota_entry_invalid(ok(1, kAborted)));
  EXPECT_FALSE(ota_entry_invalid(bad(1)));  // the CRC is not part of "invalid"
  EXPECT_FALSE(ota_entry_valid(bad(1)));
  EXPECT_TRUE(ota_entry_valid(ok(1, kNew)));
  EXPECT_TRUE(ota_entry_valid(ok(1, 7)));  // unknown states behave like VALID
  // 00 00 00 00 + FF x 28 is CRC-good: slot 0xFFFFFFFF % count.
  Bytes zero(32, 0xFF);
  std::fill(zero.begin(), zero.begin() + 4, 0);
  EXPECT_TRUE(ota_entry_valid(parse_ota_select_entry(zero)));
  EXPECT_EQ(ota_slot_of_seq(0, 2), 1u);
  EXPECT_EQ(ota_slot_of_seq(0, 3), 0u);
  EXPECT_EQ(ota_slot_of_seq(5, 3), 1u);
}

// ---- §3.1 decision table, one test per row ----

TEST(BootSelect, NoOtadataPartitionBootsFactorySilently) {
  BootSelectOptions o = opts(false, true);
  o.has_otadata = false;
  auto s = select_boot_slot(od(ok(1, kPending), ok(2, kNew)), 2, o);  // not looked at
  EXPECT_EQ(s.ota_slot, std::nullopt);
  EXPECT_EQ(s.start_index(), kFactoryIndex);
  EXPECT_EQ(s.entry_index, -1);
  EXPECT_TRUE(s.log.empty());
  EXPECT_TRUE(s.writes.empty());
  EXPECT_FALSE(s.initial_contents);
}

TEST(BootSelect, BothEmptyWithFactory) {
  auto s = select_boot_slot(od(erased(), erased()), 2, opts(true));
  EXPECT_EQ(s.ota_slot, std::nullopt);
  EXPECT_EQ(s.start_index(), kFactoryIndex);
  EXPECT_EQ(line(s), "Defaulting to factory image");
  EXPECT_EQ(level(s), 'I');
  EXPECT_FALSE(s.initial_contents);
}

TEST(BootSelect, BothEmptyNoFactory) {
  auto s = select_boot_slot(od(erased(), erased()), 2, opts(false));
  EXPECT_EQ(s.ota_slot, 0u);
  EXPECT_EQ(s.start_index(), 0);
  EXPECT_EQ(line(s), "No factory image, trying OTA 0");
  EXPECT_TRUE(s.initial_contents);
  EXPECT_EQ(initial_seq_write(0).entry, ok(1, kValid));
}

TEST(BootSelect, BothInvalidOrAbortedCrcGood) {
  auto f = select_boot_slot(od(ok(3, kInvalid), ok(4, kAborted)), 2, opts(true));
  EXPECT_EQ(f.ota_slot, std::nullopt);
  EXPECT_EQ(line(f), "Defaulting to factory image");
  auto n = select_boot_slot(od(ok(3, kInvalid), erased()), 2, opts(false));
  EXPECT_EQ(n.ota_slot, 0u);
  EXPECT_EQ(line(n), "No factory image, trying OTA 0");
  EXPECT_FALSE(n.initial_contents);  // a CRC-good entry prevents "initial contents"
}

TEST(BootSelect, BadCrcAbortedEntryStillAllowsInitialContents) {
  auto s = select_boot_slot(od(erased(), bad(3, kAborted)), 2, opts(false));
  EXPECT_EQ(s.ota_slot, 0u);
  EXPECT_TRUE(s.initial_contents);
}

TEST(BootSelect, OneValidEntry) {
  for (auto other : {erased(), bad(7), ok(9, kInvalid), ok(9, kAborted)}) {
    auto s = select_boot_slot(od(ok(2), other), 2, opts(true));
    EXPECT_EQ(s.entry_index, 0);
    EXPECT_EQ(s.ota_slot, 1u);
    EXPECT_TRUE(s.log.empty());
    auto t = select_boot_slot(od(other, ok(3)), 2, opts(true));
    EXPECT_EQ(t.entry_index, 1);
    EXPECT_EQ(t.ota_slot, 0u);
  }
}

TEST(BootSelect, BothValidLargerSeqWinsTieIsEntry0) {
  auto s = select_boot_slot(od(ok(3), ok(4)), 2, opts(true));
  EXPECT_EQ(s.entry_index, 1);
  EXPECT_EQ(s.ota_slot, 1u);
  auto tie = select_boot_slot(od(ok(3), ok(3)), 2, opts(true));
  EXPECT_EQ(tie.entry_index, 0);
}

TEST(BootSelect, SlotIsSeqMinusOneModuloCount) {
  EXPECT_EQ(select_boot_slot(od(ok(5), ok(2)), 3, opts(true)).ota_slot, 1u);
  // seq 0 is CRC-good in the ROM CRC (0xFFFFFFFF); (0 - 1) % 2 = 1, % 3 = 0.
  EXPECT_EQ(select_boot_slot(od(ok(0), erased()), 2, opts(true)).ota_slot, 1u);
  EXPECT_EQ(select_boot_slot(od(ok(0), erased()), 3, opts(true)).ota_slot, 0u);
}

TEST(BootSelect, StatesOtherThanInvalidAbortedAreSelectable) {
  for (uint32_t st : {kNew, kPending, kValid, kUndef, uint32_t{5}}) {
    EXPECT_EQ(select_boot_slot(od(ok(2, st), erased()), 2, opts(true)).ota_slot, 1u) << st;
  }
}

TEST(BootSelect, BadCrcWithFactory) {
  auto s = select_boot_slot(od(bad(2), erased()), 2, opts(true));
  EXPECT_EQ(s.ota_slot, std::nullopt);
  EXPECT_EQ(s.entry_index, -1);
  EXPECT_EQ(line(s), "ota data partition invalid, falling back to factory");
  EXPECT_EQ(level(s), 'E');
  EXPECT_FALSE(s.initial_contents);
}

TEST(BootSelect, BadCrcNoFactory) {
  auto s = select_boot_slot(od(ok(4, kAborted), bad(2)), 2, opts(false));
  EXPECT_EQ(s.ota_slot, std::nullopt);
  EXPECT_EQ(s.start_index(), kFactoryIndex);  // then every slot upwards
  EXPECT_EQ(line(s), "ota data partition invalid and no factory, will try all partitions");
  EXPECT_EQ(level(s), 'E');
  EXPECT_FALSE(s.initial_contents);
}

TEST(BootSelect, NoOtaSlots) {
  auto s = select_boot_slot(od(ok(1), erased()), 0, opts(true));
  EXPECT_EQ(s.ota_slot, std::nullopt);
  EXPECT_EQ(line(s), "Defaulting to factory image");
}

TEST(BootSelect, NonRollbackNeverWrites) {
  auto s = select_boot_slot(od(ok(1, kPending), ok(2, kNew)), 2, false);
  EXPECT_TRUE(s.writes.empty());
  EXPECT_EQ(s.ota_slot, 1u);
}

// ---- §3.2 rollback ----

TEST(BootSelectRollback, NewBecomesPendingVerify) {
  auto s = select_boot_slot(od(ok(1, kValid), ok(2, kNew)), 2, opts(true, true));
  EXPECT_EQ(s.ota_slot, 1u);
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_EQ(s.writes[0].sector, 1);
  EXPECT_EQ(s.writes[0].entry, ok(2, kPending));
}

TEST(BootSelectRollback, PendingVerifyIsAbortedAndTheOtherEntryBoots) {
  auto s = select_boot_slot(od(ok(1, kValid), ok(2, kPending)), 2, opts(true, true));
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_EQ(s.writes[0].sector, 1);
  EXPECT_EQ(s.writes[0].entry.ota_state, kAborted);
  EXPECT_EQ(s.writes[0].entry.crc, otadata_crc(2));  // crc not recomputed, still good: it covers seq only
  EXPECT_EQ(s.entry_index, 0);
  EXPECT_EQ(s.ota_slot, 0u);
}

TEST(BootSelectRollback, PendingVerifyAbortedWhateverItsCrc) {
  auto s = select_boot_slot(od(bad(1, kPending), erased()), 2, opts(true, true));
  ASSERT_EQ(s.writes.size(), 1u);
  EXPECT_EQ(s.writes[0].sector, 0);
  EXPECT_EQ(line(s), "Defaulting to factory image");
  // Both entries PENDING_VERIFY: both aborted, entry 0 first.
  auto both = select_boot_slot(od(ok(1, kPending), bad(2, kPending)), 2, opts(true, true));
  ASSERT_EQ(both.writes.size(), 2u);
  EXPECT_EQ(both.writes[0].sector, 0);
  EXPECT_EQ(both.writes[1].sector, 1);
  EXPECT_EQ(both.writes[1].entry.ota_state, kAborted);
}

TEST(BootSelectRollback, OnlyEntryAbortedWithBadOther) {
  auto s = select_boot_slot(od(ok(2, kPending), bad(1)), 2, opts(true, true));
  EXPECT_EQ(line(s), "ota data partition invalid, falling back to factory");
}

// ---- §3.3 anti-rollback ----

TEST(BootSelectAntiRollback, InitialState) {
  BootSelectOptions o;
  o.anti_rollback = true;
  o.has_factory = false;
  auto s = select_boot_slot(od(erased(), bad(3)), 2, o);
  ASSERT_EQ(s.log.size(), 3u);
  EXPECT_EQ(s.log[0].text, "Enabled a check secure version of app for anti rollback");
  EXPECT_EQ(s.log[1].text, "Secure version (from eFuse) = 0");
  EXPECT_EQ(s.log[2].text, "otadata[0..1] in initial state");
  EXPECT_EQ(s.log[2].level, 'I');
  EXPECT_TRUE(s.initial_contents);
  EXPECT_EQ(s.ota_slot, std::nullopt);
}

TEST(BootSelectAntiRollback, LowSecureVersionDisqualifies) {
  BootSelectOptions o;
  o.anti_rollback = true;
  o.efuse_secure_version = 2;
  o.slot_secure_version[0] = 3;
  o.slot_secure_version[1] = 1;
  auto s =
      select_boot_slot(od(ok(1, kValid), ok(2, kValid)), 2, o);  // slot 1 has the larger seq but is too old
  EXPECT_EQ(s.entry_index, 0);
  EXPECT_EQ(s.ota_slot, 0u);
  ASSERT_EQ(s.log.size(), 2u);
  EXPECT_EQ(s.log[1].text, "Secure version (from eFuse) = 2");
  o.efuse_secure_version = 5;
  auto none = select_boot_slot(od(ok(1, kValid), ok(2, kValid)), 2, o);
  EXPECT_EQ(none.ota_slot, std::nullopt);
  EXPECT_EQ(none.log.back().text, "ota data partition invalid, falling back to factory");
  EXPECT_EQ(none.log.back().level, 'E');
}

TEST(BootSelectAntiRollback, MissingDescriptorIsLoggedAndDoesNotQualify) {
  BootSelectOptions o;
  o.anti_rollback = true;
  o.has_factory = false;
  auto s = select_boot_slot(od(ok(1, kValid), erased()), 2, o);  // slot 0 has no readable descriptor
  EXPECT_EQ(s.ota_slot, std::nullopt);
  ASSERT_EQ(s.log.size(), 4u);
  EXPECT_EQ(s.log[2].text, "Failed to get partition description 0");
  EXPECT_EQ(s.log[2].level, 'E');
  EXPECT_EQ(s.log[3].text, "ota data partition invalid and no factory, will try all partitions");
}

// ---- where it boots (§3.5) ----

TEST(BootAttemptOrder, FromStartDownToFactoryThenUpThenTest) {
  EXPECT_EQ(boot_attempt_order(1, 2, false), (std::vector<int>{1, 0, kFactoryIndex}));
  EXPECT_EQ(boot_attempt_order(kFactoryIndex, 2, false), (std::vector<int>{kFactoryIndex, 0, 1}));
  EXPECT_EQ(boot_attempt_order(0, 3, true), (std::vector<int>{0, kFactoryIndex, 1, 2, kTestAppIndex}));
  EXPECT_EQ(boot_attempt_order(kTestAppIndex, 2, true), (std::vector<int>{kTestAppIndex}));
}

TEST(BootPartition, LoaderOrder) {
  PartitionTable t;
  t.entries = {{"factory", 0, 0x00, 0x10000, 0x100000},
               {"ota_0", 0, 0x10, 0x110000, 0x100000},
               {"ota_1", 0, 0x11, 0x210000, 0x100000}};
  BootSelection s;
  EXPECT_EQ(boot_partition_for(t, s)->name, "factory");
  s.ota_slot = 1;
  EXPECT_EQ(boot_partition_for(t, s)->name, "ota_1");
  t.entries.erase(t.entries.begin());  // no factory, start FACTORY_INDEX: try all slots upwards
  s.ota_slot.reset();
  EXPECT_EQ(boot_partition_for(t, s)->name, "ota_0");
  PartitionTable none;
  EXPECT_EQ(boot_partition_for(none, s), nullptr);
}

// ---- §2 esp_ota_set_boot_partition ----

TEST(SetBootPartition, WorkedSequenceTwoSlots) {
  Otadata d = od(erased(), erased());
  struct Step {
    uint32_t slot;
    int sector;
    uint32_t seq;
    uint32_t boots;
  } steps[] = {{0, 0, 1, 0}, {1, 1, 2, 1}, {0, 0, 3, 0}, {0, 1, 3, 0}};
  for (const auto& st : steps) {
    auto w = plan_set_boot_partition(d, st.slot, 2, false);
    ASSERT_TRUE(w);
    EXPECT_EQ(w->sector, st.sector);
    EXPECT_EQ(w->entry.ota_seq, st.seq);
    EXPECT_EQ(w->entry.ota_state, kUndef);
    EXPECT_EQ(w->entry.crc, otadata_crc(st.seq));
    d.entries[static_cast<size_t>(w->sector)] = w->entry;
    EXPECT_EQ(select_boot_slot(d, 2, false).ota_slot, st.boots);
  }
}

TEST(SetBootPartition, ThreeSlots) {
  Otadata d = od(ok(4), ok(5));
  auto a = plan_set_boot_partition(d, 0, 3, false);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->sector, 0);
  EXPECT_EQ(a->entry.ota_seq, 7u);
  auto b = plan_set_boot_partition(d, 2, 3, true);
  ASSERT_TRUE(b);
  EXPECT_EQ(b->entry.ota_seq, 6u);
  EXPECT_EQ(b->entry.ota_state, kNew);
}

TEST(SetBootPartition, NoActiveEntryWritesSector0EvenOverAHigherAbortedOne) {
  auto w = plan_set_boot_partition(od(bad(3), ok(8, kAborted)), 1, 2, false);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->sector, 0);
  EXPECT_EQ(w->entry.ota_seq, 2u);
}

TEST(SetBootPartition, KeepsTheSectorsLabel) {
  OtaSelectEntry other = ok(9, kInvalid);
  other.seq_label.fill(0x41);
  auto w = plan_set_boot_partition(od(ok(1), other), 1, 2, false);
  ASSERT_TRUE(w);
  EXPECT_EQ(w->sector, 1);
  EXPECT_EQ(w->entry.seq_label[0], 0x41);
  EXPECT_EQ(w->entry.ota_state, kUndef);
}

TEST(SetBootPartition, SlotOutOfRange) {
  auto w = plan_set_boot_partition(od(erased(), erased()), 2, 2, false);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::invalid_argument);
}

// Found by fuzz/otadata_fuzz.cc: from seq 0xfffffffe (slot 1 of 2), switching to ota_0 computed seq
// 0xffffffff (the erased marker): the written entry read as empty and the device kept booting ota_1.
TEST(SetBootPartition, SequenceNeverBecomesTheErasedMarker) {
  Otadata d = od(ok(0xFFFFFFFE), erased());
  auto w = plan_set_boot_partition(d, 0, 2, false);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::out_of_range);
  auto t = plan_otatool_switch(d, 0, 2);
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code(), ErrorCode::out_of_range);
  auto same = plan_set_boot_partition(d, 1, 2, false);  // the active slot again: seq 0xfffffffe is fine
  ASSERT_TRUE(same);
  EXPECT_EQ(same->entry.ota_seq, 0xFFFFFFFEu);
}

TEST(SetBootPartition, ApplyErasesOnlyTheTargetSector) {
  Bytes img = otadata_image(od(ok(1), ok(9, kInvalid)));
  img[0x1100] = 0x12;  // junk in sector 1 beyond the entry: erased by the write
  img[0x100] = 0x34;   // junk in sector 0: untouched
  auto d = parse_otadata(img);
  auto w = plan_set_boot_partition(*d, 1, 2, false);
  Bytes out = apply_otadata_write(img, *w);
  EXPECT_EQ(out[0x1100], 0xFF);
  EXPECT_EQ(out[0x100], 0x34);
  EXPECT_EQ(parse_otadata(out)->entries[1], ok(2));
}

// ---- §7 otatool ----

TEST(OtatoolSwitch, StateIgnoredAndKept) {
  // Entry 1 is CRC-good but INVALID: for the device it does not count, for otatool it is the base.
  Otadata d = od(ok(1), ok(4, kInvalid));
  auto dev = plan_set_boot_partition(d, 0, 2, false);
  auto tool = plan_otatool_switch(d, 0, 2);
  ASSERT_TRUE(dev && tool);
  EXPECT_EQ(dev->sector, 1);
  EXPECT_EQ(dev->entry.ota_seq, 1u);
  EXPECT_EQ(tool->sector, 0);
  EXPECT_EQ(tool->entry.ota_seq, 5u);
  EXPECT_EQ(tool->entry.ota_state, kUndef);  // kept from sector 0
  Bytes img = otadata_image(d);
  img[0x10] = 0x55;
  Bytes out = apply_otatool_write(img, *tool);
  EXPECT_EQ(out[0x10], 0x55);  // nothing but seq and crc changes
  EXPECT_EQ(parse_otadata(out)->entries[0].ota_seq, 5u);
}

TEST(OtatoolSwitch, BlankSectorKeepsItsFfState) {
  auto tool = plan_otatool_switch(od(erased(), erased()), 1, 2);
  ASSERT_TRUE(tool);
  EXPECT_EQ(tool->sector, 0);
  EXPECT_EQ(tool->entry, ok(2));
}

}  // namespace
}  // namespace ota32
