#include <gtest/gtest.h>

#include <algorithm>

#include "agent/ota_writer.h"
#include "core/hash.h"
#include "flash/fault_flash.h"
#include "flash/nor_flash.h"
#include "format/image_make.h"
#include "ota_ops/ota_test_layout.h"

namespace ota32::agent {
namespace {

using ota32::testing::CollectLog;
using ota32::testing::seed_layout;

Bytes make_image(std::string_view chip, std::string version, uint32_t size, uint32_t secure_version = 0) {
  MakeImageOptions o;
  o.chip = find_chip(chip);
  o.project = "simple_ota";
  o.version = std::move(version);
  o.size = size;
  o.secure_version = secure_version;
  o.seed = size + version.size();
  auto img = make_app_image(o);
  EXPECT_TRUE(img) << img.error().message();
  return img ? *img : Bytes();
}

class OtaWriterTest : public ::testing::Test {
 protected:
  OtaWriterTest() : flash_(4u << 20), table_(seed_layout()) {}
  OtaWriterOptions options() {
    OtaWriterOptions o;
    o.chip = find_chip("esp32");
    o.running_version = "1";
    return o;
  }
  const PartitionEntry& slot(const char* name) { return *table_.find(name); }
  Result<std::unique_ptr<OtaWriter>> begin(OtaWriterOptions o) {
    return OtaWriter::begin(flash_, table_, slot("ota_0"), table_.factory(), std::move(o), &log_);
  }
  // Writes `img` in chunks of `chunk` bytes.
  static Result<void> stream(OtaWriter& w, ByteView img, size_t chunk) {
    for (size_t off = 0; off < img.size(); off += chunk) {
      OTA32_TRY(w.write(img.subspan(off, std::min(chunk, img.size() - off))));
    }
    return {};
  }
  Bytes slot_bytes(const char* name, size_t n) {
    Bytes b(n);
    EXPECT_TRUE(flash_.read(slot(name).offset, b));
    return b;
  }

  MemFlash flash_;
  PartitionTable table_;
  CollectLog log_;
};

TEST_F(OtaWriterTest, StreamsAnImageAndVerifiesIt) {
  Bytes img = make_image("esp32", "2", 96 * 1024);
  for (size_t chunk : {size_t{1}, size_t{100}, size_t{1024}, size_t{5000}}) {
    auto w = begin(options());
    ASSERT_TRUE(w) << w.error().message();
    auto r = stream(**w, img, chunk);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ((*w)->written(), img.size());
    auto v = (*w)->end();
    ASSERT_TRUE(v) << v.error().message();
    EXPECT_EQ(v->size, img.size());
    EXPECT_EQ(v->sha256, sha256(img));
    ASSERT_TRUE(v->desc);
    EXPECT_EQ(v->desc->version, "2");
    EXPECT_EQ(slot_bytes("ota_0", img.size()), img);
  }
  // esp_ota_end's segment lines, v4.3+ format with paddr at the slot.
  auto it = std::find_if(log_.lines.begin(), log_.lines.end(), [](const std::string& l) {
    return l.find("segment 0: paddr=00110020") != std::string::npos;
  });
  EXPECT_NE(it, log_.lines.end());
}

TEST_F(OtaWriterTest, SeedLogFormat) {
  Bytes img = make_image("esp32", "2", 96 * 1024);
  auto o = options();
  o.old_log_format = true;
  auto w = begin(o);
  ASSERT_TRUE(w);
  ASSERT_TRUE(stream(**w, img, 1024));
  ASSERT_TRUE((*w)->end());
  ASSERT_FALSE(log_.lines.empty());
  EXPECT_TRUE(log_.lines[0].starts_with("I esp_image: segment 0: paddr=0x00110020 vaddr=0x3f4"))
      << log_.lines[0];
}

TEST_F(OtaWriterTest, FirstByteMustBeE9) {
  auto w = begin(options());
  ASSERT_TRUE(w);
  Bytes junk = {'<', 'h', 't', 'm', 'l', '>'};
  auto r = (*w)->write(junk);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::corrupt);
  EXPECT_NE(r.error().message().find("invalid magic byte (expected 0xE9, saw 0x3c)"), std::string::npos);
  EXPECT_EQ(slot_bytes("ota_0", 16), Bytes(16, 0xFF));
}

TEST_F(OtaWriterTest, ImageForAnotherChipIsRefusedBeforeAnythingIsWritten) {
  Bytes img = make_image("esp32c3", "2", 96 * 1024);
  auto w = begin(options());
  ASSERT_TRUE(w);
  auto r = stream(**w, img, 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::unsupported);
  EXPECT_NE(r.error().message().find("image is for esp32c3 (chip id 5), this device is esp32 (chip id 0)"),
            std::string::npos)
      << r.error().message();
  EXPECT_EQ(slot_bytes("ota_0", 4096), Bytes(4096, 0xFF));
}

TEST_F(OtaWriterTest, SameVersionRefusedUnlessAllowed) {
  Bytes img = make_image("esp32", "1", 96 * 1024);
  auto w = begin(options());
  ASSERT_TRUE(w);
  auto r = stream(**w, img, 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::already_exists);
  auto o = options();
  o.allow_same_version = true;
  auto w2 = begin(o);
  ASSERT_TRUE(stream(**w2, img, 1024));
  EXPECT_TRUE((*w2)->end());
}

TEST_F(OtaWriterTest, RolledBackVersionRefused) {
  Bytes img = make_image("esp32", "4", 96 * 1024);
  auto o = options();
  o.invalid_versions = {"4"};
  auto w = begin(o);
  ASSERT_TRUE(w);
  auto r = stream(**w, img, 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::rollback_refused);
  EXPECT_NE(r.error().message().find("New version is the same as invalid version"), std::string::npos);
}

TEST_F(OtaWriterTest, LowerSecureVersionRefused) {
  Bytes img = make_image("esp32", "2", 96 * 1024, 1);
  auto o = options();
  o.efuse_secure_version = 2;
  auto w = begin(o);
  ASSERT_TRUE(w);
  auto r = stream(**w, img, 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::rollback_refused);
  EXPECT_NE(r.error().message().find("1 < 2"), std::string::npos) << r.error().message();
}

TEST_F(OtaWriterTest, ImageLargerThanTheSlotIsOutOfRange) {
  table_.entries.back().size = 64 * 1024;  // ota_1 shrunk to 64 KiB
  Bytes img = make_image("esp32", "2", 96 * 1024);
  auto w = OtaWriter::begin(flash_, table_, slot("ota_1"), &slot("ota_0"), options(), &log_);
  ASSERT_TRUE(w) << w.error().message();
  auto r = stream(**w, img, 1024);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::out_of_range);
  EXPECT_NE(r.error().message().find("image larger than the ota_1 partition (64K"), std::string::npos)
      << r.error().message();
  EXPECT_EQ((*w)->written(), 64u * 1024);
  // Bulk erase with the size known refuses at begin.
  auto o = options();
  o.bulk_erase = true;
  o.image_size = static_cast<uint32_t>(img.size());
  auto b = OtaWriter::begin(flash_, table_, slot("ota_1"), &slot("ota_0"), o, &log_);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), ErrorCode::out_of_range);
}

TEST_F(OtaWriterTest, TruncatedImageFailsVerification) {
  Bytes img = make_image("esp32", "2", 96 * 1024);
  auto w = begin(options());
  ASSERT_TRUE(stream(**w, ByteView(img).first(img.size() / 2), 1024));
  auto v = (*w)->end();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::corrupt);
  EXPECT_NE(v.error().message().find("image truncated"), std::string::npos) << v.error().message();
  EXPECT_EQ(log_.lines.back(), "E esp_ota_ops: New image failed verification");
}

TEST_F(OtaWriterTest, CorruptByteFailsVerification) {
  Bytes img = make_image("esp32", "2", 96 * 1024);
  img[40000] ^= 0x01;
  auto w = begin(options());
  ASSERT_TRUE(stream(**w, img, 1024));
  auto v = (*w)->end();
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::corrupt);
  EXPECT_NE(v.error().message().find("checksum"), std::string::npos) << v.error().message();
}

TEST_F(OtaWriterTest, SequentialEraseOverwritesAnOldImage) {
  Bytes old = make_image("esp32", "3", 160 * 1024);
  Bytes img = make_image("esp32", "2", 96 * 1024);
  auto w1 = begin(options());
  ASSERT_TRUE(stream(**w1, old, 4096));
  auto w2 = begin(options());
  ASSERT_TRUE(stream(**w2, img, 777));
  auto v = (*w2)->end();
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(slot_bytes("ota_0", img.size()), img);
}

TEST_F(OtaWriterTest, ResumeAfterRebootRestartsAtTheTornSector) {
  Bytes img = make_image("esp32", "2", 96 * 1024);
  auto w1 = begin(options());
  ASSERT_TRUE(stream(**w1, ByteView(img).first(40000), 1000));
  auto w2 = OtaWriter::resume(flash_, table_, slot("ota_0"), table_.factory(), options(), 40000, &log_);
  ASSERT_TRUE(w2) << w2.error().message();
  EXPECT_EQ((*w2)->resume_offset(), 36864u);
  ASSERT_TRUE(stream(**w2, ByteView(img).subspan(36864), 1000));
  auto v = (*w2)->end();
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->sha256, sha256(img));
}

TEST_F(OtaWriterTest, RefusesNonOtaTargets) {
  auto w = OtaWriter::begin(flash_, table_, *table_.factory(), nullptr, options(), &log_);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::invalid_argument);
  auto same = OtaWriter::begin(flash_, table_, slot("ota_0"), &slot("ota_0"), options(), &log_);
  ASSERT_FALSE(same);
  EXPECT_NE(same.error().message().find("running partition"), std::string::npos);
}

}  // namespace
}  // namespace ota32::agent

namespace ota32::agent {
namespace {

class SetBootTest : public OtaWriterTest {
 protected:
  Result<void> install(const char* slot_name, const PartitionEntry* running, std::string version,
                       bool rollback) {
    Bytes img = make_image("esp32", std::move(version), 96 * 1024);
    auto o = options();
    o.running_version.reset();
    o.rollback_enabled = rollback;
    OTA32_ASSIGN(auto w, OtaWriter::begin(flash_, table_, slot(slot_name), running, o, &log_));
    OTA32_TRY(stream(*w, img, 4096));
    OTA32_TRY(w->end());
    return w->set_boot_partition();
  }
  std::array<uint32_t, 3> entry(int i) {
    uint8_t e[32];
    EXPECT_TRUE(flash_.read(0xd000 + i * 0x1000, std::span<uint8_t>(e, 32)));
    return {load_le32(e), load_le32(e + 24), load_le32(e + 28)};
  }
};

TEST_F(SetBootTest, WorkedSequenceOfTheSpec) {
  ASSERT_TRUE(install("ota_0", table_.factory(), "2", false));
  EXPECT_EQ(entry(0), (std::array<uint32_t, 3>{1, 0xFFFFFFFF, 0x4743989A}));
  EXPECT_EQ(entry(1)[0], 0xFFFFFFFFu);
  ASSERT_TRUE(install("ota_1", &slot("ota_0"), "3", false));
  EXPECT_EQ(entry(1), (std::array<uint32_t, 3>{2, 0xFFFFFFFF, 0x55F63774}));
  EXPECT_EQ(entry(0)[0], 1u);  // the other sector is never touched
  ASSERT_TRUE(install("ota_0", &slot("ota_1"), "4", false));
  EXPECT_EQ(entry(0), (std::array<uint32_t, 3>{3, 0xFFFFFFFF, 0xED4A5011}));
}

TEST_F(SetBootTest, RollbackBuildWritesStateNew) {
  ASSERT_TRUE(install("ota_0", table_.factory(), "2", true));
  EXPECT_EQ(entry(0), (std::array<uint32_t, 3>{1, 0, 0x4743989A}));
}

TEST_F(SetBootTest, RefusedWithoutAVerifiedImage) {
  auto w = begin(options());
  ASSERT_TRUE(w);
  auto r = (*w)->set_boot_partition();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ(entry(0)[0], 0xFFFFFFFFu);
}

}  // namespace
}  // namespace ota32::agent

namespace ota32::agent {
namespace {

// esp_ota_begin with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE (spec otadata-and-boot.md §5.1 steps 2 and 5):
// the running app's state and the inactive otadata entry, all through Flash.
class BeginRollbackTest : public OtaWriterTest {
 protected:
  static OtaSelectEntry entry_of(uint32_t seq, uint32_t state) { return make_ota_select_entry(seq, state); }
  void put(int sector, const OtaSelectEntry& e) { ASSERT_TRUE(testing::put_seed_otadata(flash_, sector, e)); }
  OtaSelectEntry get(int sector) { return testing::get_seed_otadata(flash_, sector); }
  const PartitionEntry* running(const std::string& name) {
    return name.empty() ? nullptr : table_.find(name);
  }
  Result<std::unique_ptr<OtaWriter>> begin_from(const std::string& running_name, bool rollback = true) {
    auto o = options();
    o.rollback_enabled = rollback;
    const PartitionEntry* run = running(running_name);
    return OtaWriter::begin(flash_, table_, *next_update_partition(table_, run), run, o, &log_);
  }
};

TEST_F(BeginRollbackTest, PendingVerifyRunningAppRefusesTheUpdate) {
  put(0, entry_of(1, kOtaStatePendingVerify));  // ota_0, booted once, not confirmed
  // Something in ota_1 that a bulk erase would wipe.
  ASSERT_TRUE(flash_.program(0x210000, Bytes(16, 0x00)));
  auto o = options();
  o.rollback_enabled = true;
  o.bulk_erase = true;
  auto w = OtaWriter::begin(flash_, table_, slot("ota_1"), &slot("ota_0"), o, &log_);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::rollback_refused);
  EXPECT_NE(w.error().message().find("ESP_ERR_OTA_ROLLBACK_INVALID_STATE"), std::string::npos)
      << w.error().message();
  EXPECT_NE(w.error().message().find("ota_0"), std::string::npos) << w.error().message();
  ASSERT_FALSE(log_.lines.empty());
  EXPECT_EQ(log_.lines.back(),
            "E esp_ota_ops: Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)");
  EXPECT_EQ(slot_bytes("ota_1", 16), Bytes(16, 0x00));  // nothing erased
  EXPECT_EQ(get(0), entry_of(1, kOtaStatePendingVerify));

  // Without rollback support esp_ota_begin does not look at the state.
  auto off = OtaWriter::begin(flash_, table_, slot("ota_1"), &slot("ota_0"), options(), &log_);
  EXPECT_TRUE(off) << off.error().message();
}

TEST_F(BeginRollbackTest, OnlyTheRunningSlotsFirstCrcGoodEntryCounts) {
  struct Row {
    const char* what;
    std::string running;
    OtaSelectEntry e0, e1;
    bool refused;
  };
  OtaSelectEntry empty;
  OtaSelectEntry bad_crc = entry_of(1, kOtaStatePendingVerify);
  bad_crc.crc ^= 1;
  std::vector<Row> rows = {
      {"confirmed", "ota_0", entry_of(1, kOtaStateValid), empty, false},
      {"state NEW (not PENDING_VERIFY)", "ota_0", entry_of(1, kOtaStateNew), empty, false},
      {"rollback disabled build's UNDEFINED", "ota_0", entry_of(1, kOtaStateUndefined), empty, false},
      {"the PENDING_VERIFY entry is another slot's", "ota_0", entry_of(1, kOtaStateValid),
       entry_of(2, kOtaStatePendingVerify), false},
      {"running ota_1, PENDING_VERIFY", "ota_1", entry_of(1, kOtaStateValid),
       entry_of(2, kOtaStatePendingVerify), true},
      {"bad CRC: no state for the slot", "ota_0", bad_crc, empty, false},
      {"factory is not an OTA slot", "factory", entry_of(1, kOtaStatePendingVerify), empty, false},
      // esp_ota_get_state_partition takes entry 0 first, whichever is active.
      {"entry 0 first (PENDING_VERIFY)", "ota_0", entry_of(1, kOtaStatePendingVerify),
       entry_of(3, kOtaStateValid), true},
      {"entry 0 first (VALID)", "ota_0", entry_of(3, kOtaStateValid), entry_of(1, kOtaStatePendingVerify),
       false},
  };
  for (const auto& row : rows) {
    put(0, row.e0);
    put(1, row.e1);
    auto w = begin_from(row.running);
    if (row.refused) {
      ASSERT_FALSE(w) << row.what;
      EXPECT_EQ(w.error().code(), ErrorCode::rollback_refused) << row.what;
    } else {
      EXPECT_TRUE(w) << row.what << ": " << w.error().message();
    }
  }
}

TEST_F(BeginRollbackTest, InvalidatesTheInactiveEntryOnlyWhenTheSpecSaysSo) {
  struct Row {
    const char* what;
    std::string running;
    OtaSelectEntry e0, e1;
    int erased;  // the sector erased, -1 = none
    bool rollback = true;
  };
  OtaSelectEntry empty;
  OtaSelectEntry bad_crc = entry_of(2, kOtaStateValid);
  bad_crc.crc ^= 1;
  std::vector<Row> rows = {
      {"inactive names ota_1, running ota_0", "ota_0", entry_of(3, kOtaStateValid),
       entry_of(2, kOtaStateValid), 1},
      {"inactive names ota_0, running ota_1", "ota_1", entry_of(1, kOtaStateValid),
       entry_of(2, kOtaStateValid), 0},
      {"inactive state is ignored (INVALID)", "ota_0", entry_of(3, kOtaStateValid),
       entry_of(2, kOtaStateInvalid), 1},
      {"running factory: any OTA slot is not running", "factory", entry_of(2, kOtaStateValid),
       entry_of(1, kOtaStateValid), 1},
      {"inactive names the running slot", "ota_0", entry_of(3, kOtaStateValid), entry_of(1, kOtaStateValid),
       -1},
      {"inactive empty", "ota_0", entry_of(1, kOtaStateValid), empty, -1},
      {"inactive bad CRC", "ota_0", entry_of(3, kOtaStateValid), bad_crc, -1},
      {"no active entry", "factory", entry_of(1, kOtaStateInvalid), entry_of(2, kOtaStateAborted), -1},
      {"running unknown", "", entry_of(3, kOtaStateValid), entry_of(2, kOtaStateValid), -1},
      {"rollback disabled", "ota_0", entry_of(3, kOtaStateValid), entry_of(2, kOtaStateValid), -1, false},
  };
  for (const auto& row : rows) {
    put(0, row.e0);
    put(1, row.e1);
    auto w = begin_from(row.running, row.rollback);
    ASSERT_TRUE(w) << row.what << ": " << w.error().message();
    EXPECT_EQ(get(0), row.erased == 0 ? empty : row.e0) << row.what;
    EXPECT_EQ(get(1), row.erased == 1 ? empty : row.e1) << row.what;
  }
}

TEST_F(BeginRollbackTest, APowerCutDuringTheInvalidationStopsBegin) {
  put(0, entry_of(3, kOtaStateValid));
  put(1, entry_of(2, kOtaStateValid));
  FaultFlash faulty(flash_);
  faulty.cut_power_at(0);  // sequential erase: the otadata erase is begin's only flash write
  auto o = options();
  o.rollback_enabled = true;
  auto w = OtaWriter::begin(faulty, table_, slot("ota_1"), &slot("ota_0"), o, &log_);
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::power_lost);
  ASSERT_EQ(faulty.log().size(), 1u);
  EXPECT_EQ(faulty.log()[0].kind, FlashOp::Kind::erase);
  EXPECT_EQ(faulty.log()[0].addr, 0xe000u);
  EXPECT_EQ(get(0), entry_of(3, kOtaStateValid));  // the active entry is never touched
}

}  // namespace
}  // namespace ota32::agent
