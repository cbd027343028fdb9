// CowFlash against the NOR model: the same calls on a MemFlash and a CowFlash give the same answers and the
// same contents (random sequences with refused operations, both program rules, flushes anywhere); devices
// sharing a snapshot never see each other's writes; identical writes are stored once.
#include <gtest/gtest.h>

#include <memory>

#include "core/splitmix.h"
#include "flash/cow_flash.h"
#include "flash/nor_flash.h"

namespace ota32 {
namespace {

Bytes pattern(size_t n, uint64_t seed) {
  SplitMix64 r(seed);
  Bytes b(n);
  for (auto& c : b) c = r.byte();
  return b;
}

std::string outcome(const Result<void>& r) {
  return r ? std::string("ok") : std::string(to_string(r.error().code())) + " " + r.error().message();
}

void differential(ProgramRule rule, uint64_t seed) {
  constexpr uint32_t kSize = 16 * kFlashSectorSize;
  Bytes start = pattern(kSize, seed);
  for (uint32_t s = 0; s < kSize; s += kFlashSectorSize * 3)
    std::fill_n(start.begin() + s, kFlashSectorSize, 0xFF);
  MemFlash mem(start, "flash");
  SectorStore store;
  auto table = CowFlash::intern_snapshot(store, start);
  CowFlash cow(store, table, "flash");
  store.release(table);
  mem.set_program_rule(rule);
  cow.set_program_rule(rule);
  SplitMix64 r(seed * 7 + 1);
  for (int op = 0; op < 3000; ++op) {
    uint64_t kind = r.below(10);
    SCOPED_TRACE("op " + std::to_string(op) + " kind " + std::to_string(kind));
    if (kind < 4) {  // program: anywhere, any length (some past the end), often over programmed cells
      uint32_t addr = static_cast<uint32_t>(r.below(kSize + 64));
      size_t len = r.below(3) == 0 ? r.below(9000) : r.below(300);
      Bytes data = pattern(len, r.next());
      if (r.below(2) == 0)
        for (auto& c : data) c |= 0xF0;  // fewer 0->1 refusals
      ASSERT_EQ(outcome(mem.program(addr, data)), outcome(cow.program(addr, data)));
    } else if (kind < 6) {  // erase: mostly aligned, sometimes not, sometimes past the end
      uint32_t addr = static_cast<uint32_t>(r.below(18)) * kFlashSectorSize;
      uint32_t len = static_cast<uint32_t>(r.below(4)) * kFlashSectorSize;
      if (r.below(8) == 0) addr += 0x800;
      if (r.below(8) == 0) len += 0x100;
      ASSERT_EQ(outcome(mem.erase(addr, len)), outcome(cow.erase(addr, len)));
    } else if (kind < 9) {
      uint32_t addr = static_cast<uint32_t>(r.below(kSize + 16));
      size_t len = r.below(10000);
      Bytes a(len), b(len);
      auto ra = mem.read(addr, a);
      auto rb = cow.read(addr, b);
      ASSERT_EQ(outcome(ra), outcome(rb));
      if (ra) {
        ASSERT_EQ(a, b);
      }
    } else {
      cow.flush();  // a reboot: contents stay
    }
  }
  EXPECT_EQ(cow.contents(), Bytes(mem.contents().begin(), mem.contents().end()));
}

TEST(CowFlash, AnswersAndHoldsWhatMemFlashDoesStrict) {
  for (uint64_t seed = 1; seed <= 4; ++seed) differential(ProgramRule::strict, seed);
}

TEST(CowFlash, AnswersAndHoldsWhatMemFlashDoesAndBits) {
  for (uint64_t seed = 1; seed <= 4; ++seed) differential(ProgramRule::and_bits, seed);
}

TEST(CowFlash, RefusedProgramAcrossSectorsChangesNothing) {
  SectorStore store;
  std::vector<SectorStore::Id> table(2, store.erased());
  CowFlash f(store, table);
  ASSERT_TRUE(f.program(kFlashSectorSize + 10, Bytes{0x00}));
  // Starts in sector 0 (fine), reaches the programmed cell in sector 1 (0 -> 1): nothing is written.
  Bytes data(kFlashSectorSize, 0x0F);
  auto r = f.program(100, data);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("0x0000100a"), std::string::npos) << r.error().message();
  Bytes b(kFlashSectorSize);
  ASSERT_TRUE(f.read(0, b));
  EXPECT_EQ(b, Bytes(kFlashSectorSize, 0xFF));
}

TEST(CowFlash, EraseOfAHalfWrittenSectorReadsErased) {
  SectorStore store;
  std::vector<SectorStore::Id> table(1, store.erased());
  CowFlash f(store, table);
  ASSERT_TRUE(f.program(0, pattern(1000, 3)));  // private buffer, not yet in the store
  ASSERT_TRUE(f.erase(0, kFlashSectorSize));
  EXPECT_EQ(f.contents(), Bytes(kFlashSectorSize, 0xFF));
  f.flush();
  EXPECT_EQ(store.stats().unique, 1u);  // only the erased sector: the dropped buffer was never stored
}

TEST(CowFlash, DevicesSharingASnapshotDoNotSeeEachOther) {
  SectorStore store;
  Bytes base = pattern(4 * kFlashSectorSize, 9);
  auto table = CowFlash::intern_snapshot(store, base);
  CowFlash a(store, table), b(store, table);
  ASSERT_TRUE(a.erase(kFlashSectorSize, kFlashSectorSize));
  ASSERT_TRUE(a.program(kFlashSectorSize, Bytes(16, 0x12)));
  ASSERT_TRUE(b.program(0, Bytes(8, 0x00)));
  a.flush();
  b.flush();
  Bytes want_a = base, want_b = base;
  std::fill_n(want_a.begin() + kFlashSectorSize, kFlashSectorSize, 0xFF);
  std::fill_n(want_a.begin() + kFlashSectorSize, 16, 0x12);
  std::fill_n(want_b.begin(), 8, 0x00);
  EXPECT_EQ(a.contents(), want_a);
  EXPECT_EQ(b.contents(), want_b);
  CowFlash c(store, table);  // a new device from the snapshot: the snapshot itself is untouched
  EXPECT_EQ(c.contents(), base);
  store.release(table);
}

TEST(CowFlash, IdenticalWritesAreStoredOnceAndFreedWithTheirFlashes) {
  SectorStore store;
  constexpr uint32_t kSectors = 64;
  std::vector<SectorStore::Id> table(kSectors, store.erased());
  Bytes image = pattern(16 * kFlashSectorSize + 100, 5);  // a 16-sector-and-a-bit firmware
  {
    std::vector<std::unique_ptr<CowFlash>> fleet;
    for (int i = 0; i < 50; ++i) {
      fleet.push_back(std::make_unique<CowFlash>(store, table));
      auto& f = *fleet.back();
      for (uint32_t off = 0; off < image.size(); off += 1024) {  // as the OTA writer streams it
        if (off % kFlashSectorSize == 0) {
          ASSERT_TRUE(f.erase(0x10000 + off, kFlashSectorSize));
        }
        size_t n = std::min<size_t>(1024, image.size() - off);
        ASSERT_TRUE(f.program(0x10000 + off, ByteView(image).subspan(off, n)));
      }
      f.flush();
      EXPECT_LE(f.private_bytes(), kSectors * sizeof(SectorStore::Id) + 256);
    }
    // The erased sector + 17 image sectors, however many devices wrote them.
    EXPECT_EQ(store.stats().unique, 18u);
    Bytes got(image.size());
    ASSERT_TRUE(fleet[49]->read(0x10000, got));
    EXPECT_EQ(got, image);
  }
  EXPECT_EQ(store.stats().unique, 1u);
}

}  // namespace
}  // namespace ota32
