#include <gtest/gtest.h>

#include <algorithm>

#include "flash/budget_flash.h"
#include "flash/fault_flash.h"

namespace ota32 {
namespace {

Bytes contents(const NorFlash& f) { return Bytes(f.contents().begin(), f.contents().end()); }

// Flash with a pattern in sectors 1..2, so erases have bits to set.
std::unique_ptr<MemFlash> patterned() {
  auto f = std::make_unique<MemFlash>(0x4000);
  Bytes p(0x2000);
  for (size_t i = 0; i < p.size(); ++i) p[i] = static_cast<uint8_t>(i * 37);
  EXPECT_TRUE(f->program(0x1000, p));
  return f;
}

TEST(FaultFlash, LogsOperationsAndPassesThrough) {
  MemFlash base(0x4000);
  FaultFlash f(base);
  ASSERT_TRUE(f.erase(0x1000, 0x1000));
  ASSERT_TRUE(f.program(0x1000, Bytes{1, 2, 3}));
  Bytes b(3);
  ASSERT_TRUE(f.read(0x1000, b));
  EXPECT_EQ(b, (Bytes{1, 2, 3}));
  ASSERT_EQ(f.log().size(), 2u);
  EXPECT_EQ(to_string(f.log()[0]), "erase 0x00001000 +0x1000");
  EXPECT_EQ(to_string(f.log()[1]), "program 0x00001000 +0x3");
  EXPECT_EQ(f.mutations(), 2u);
  EXPECT_FALSE(f.power_lost());
}

TEST(FaultFlash, CutProgramLeavesPagePrefixAndOnlyClearsRequestedBits) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    MemFlash base(0x4000);
    const Bytes before = contents(base);
    FaultFlash f(base, seed);
    f.cut_power_at(0);
    Bytes data(0x1000);
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i * 13 + 1);
    auto r = f.program(0x1080, data);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::power_lost);
    EXPECT_TRUE(f.power_lost());
    const Bytes after = contents(base);
    // Outside the write: untouched. Inside: new = old AND (data OR R), i.e. between data and old.
    for (size_t a = 0; a < after.size(); ++a) {
      if (a < 0x1080 || a >= 0x2080) {
        ASSERT_EQ(after[a], before[a]) << a;
      } else {
        uint8_t d = data[a - 0x1080];
        ASSERT_EQ(after[a] & d, d) << "a bit the data clears... only those may clear";
      }
    }
    // Pages form a prefix: once a page is not fully written, later pages are untouched.
    bool seen_incomplete = false;
    for (uint32_t page = 0x1000; page < 0x2100; page += 0x100) {
      uint32_t lo = std::max<uint32_t>(page, 0x1080), hi = std::min<uint32_t>(page + 0x100, 0x2080);
      bool complete = true, untouched = true;
      for (uint32_t a = lo; a < hi; ++a) {
        complete &= after[a] == data[a - 0x1080];
        untouched &= after[a] == 0xFF;
      }
      if (seen_incomplete) {
        ASSERT_TRUE(untouched) << "seed " << seed << " page " << page;
      }
      if (!complete) seen_incomplete = true;
    }
  }
}

TEST(FaultFlash, CutEraseLeavesSectorPrefixAndOnlySetsBits) {
  for (uint64_t seed = 0; seed < 50; ++seed) {
    auto base = patterned();
    const Bytes before = contents(*base);
    FaultFlash f(*base, seed);
    f.cut_power_at(0);
    ASSERT_EQ(f.erase(0x1000, 0x2000).error().code(), ErrorCode::power_lost);
    const Bytes after = contents(*base);
    for (size_t a = 0; a < after.size(); ++a) {
      ASSERT_EQ(after[a] & before[a], before[a]) << "erase only sets bits, at " << a;
      if (a < 0x1000 || a >= 0x3000) {
        ASSERT_EQ(after[a], before[a]);
      }
    }
    bool first_erased =
        std::all_of(after.begin() + 0x1000, after.begin() + 0x2000, [](uint8_t c) { return c == 0xFF; });
    bool second_untouched =
        std::equal(after.begin() + 0x2000, after.begin() + 0x3000, before.begin() + 0x2000);
    bool second_erased =
        std::all_of(after.begin() + 0x2000, after.begin() + 0x3000, [](uint8_t c) { return c == 0xFF; });
    if (!first_erased) {
      EXPECT_TRUE(second_untouched) << "seed " << seed;
    }
    if (second_erased) {
      EXPECT_TRUE(first_erased);
    }
  }
}

TEST(FaultFlash, TornResultIsDeterministicForSeedAndVariesAcrossSeeds) {
  auto run = [](uint64_t seed, uint64_t cut) {
    auto base = patterned();
    FaultFlash f(*base, seed);
    f.cut_power_at(cut);
    (void)f.erase(0x1000, 0x1000);
    (void)f.program(0x1000, Bytes(0x400, 0x00));
    (void)f.erase(0x2000, 0x2000);
    return contents(*base);
  };
  for (uint64_t cut = 0; cut < 3; ++cut) EXPECT_EQ(run(7, cut), run(7, cut)) << "cut " << cut;
  int distinct = 0;
  for (uint64_t seed = 1; seed < 10; ++seed) distinct += run(seed, 2) != run(0, 2);
  EXPECT_GT(distinct, 0);
}

TEST(FaultFlash, EverythingFailsAfterTheCut) {
  MemFlash base(0x4000);
  FaultFlash f(base);
  f.cut_power_at(1);
  ASSERT_TRUE(f.erase(0, 0x1000));
  EXPECT_FALSE(f.erase(0x1000, 0x1000));
  Bytes b(1);
  EXPECT_EQ(f.read(0, b).error().code(), ErrorCode::power_lost);
  EXPECT_EQ(f.program(0, Bytes{0}).error().code(), ErrorCode::power_lost);
  ASSERT_EQ(f.log().size(), 2u);
  EXPECT_TRUE(f.log()[1].torn);
  EXPECT_EQ(f.mutations(), 2u);
}

TEST(FaultFlash, RefusedOperationIsNotTorn) {
  MemFlash base(0x4000);
  FaultFlash f(base);
  f.cut_power_at(0);
  EXPECT_EQ(f.erase(0x800, 0x1000).error().code(), ErrorCode::invalid_argument);
  EXPECT_FALSE(f.power_lost());
}

TEST(FaultFlash, TornModesNotStartedAndCompleted) {
  for (TornMode mode : {TornMode::not_started, TornMode::completed}) {
    auto base = patterned();
    const Bytes before = contents(*base);
    FaultFlash f(*base, 5);
    f.set_torn_mode(mode);
    f.cut_power_at(1);
    ASSERT_TRUE(f.program(0x0, Bytes(16, 0x00)));
    auto r = f.erase(0x1000, 0x2000);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::power_lost);
    const Bytes after = contents(*base);
    for (size_t a = 0x1000; a < 0x3000; ++a) {
      ASSERT_EQ(after[a], mode == TornMode::completed ? 0xFF : before[a]) << to_string(mode) << " " << a;
    }
    EXPECT_TRUE(f.log().back().torn);
  }
  EXPECT_EQ(*parse_torn_mode("not-started"), TornMode::not_started);
  EXPECT_EQ(parse_torn_mode("half").error().message(),
            "unknown torn mode 'half' (random, not-started, completed)");
}

TEST(FaultFlash, RestorePowerLetsCallsThroughAndKeepsCounting) {
  MemFlash base(0x4000);
  FaultFlash f(base);
  f.cut_power_at(0);
  ASSERT_FALSE(f.erase(0x1000, 0x1000));
  Bytes b(4);
  EXPECT_FALSE(f.read(0, b));
  f.restore_power();
  EXPECT_FALSE(f.power_lost());
  ASSERT_TRUE(f.read(0, b));
  ASSERT_TRUE(f.erase(0x1000, 0x1000));
  ASSERT_TRUE(f.program(0x1000, Bytes{1}));
  EXPECT_EQ(f.mutations(), 3u);  // the cut one counts: the numbering goes on
}

// BudgetFlash: the program crossing the budget inside the window lands up to it, then the power is gone.
TEST(BudgetFlash, CutsThePowerAtTheByteBudgetInsideTheWindow) {
  MemFlash mem(64 * 1024);
  BudgetFlash f(mem, 0x4000, 0x4000, 1000);
  const Bytes data(600, 0x00);
  ASSERT_TRUE(f.program(0x1000, data));  // outside the window: not counted
  ASSERT_TRUE(f.program(0x4000, data));
  auto r = f.program(0x4000 + 600, data);  // 400 of these 600 bytes fit the budget
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::power_lost);
  EXPECT_TRUE(f.power_lost());
  Bytes back(0x400);
  ASSERT_TRUE(mem.read(0x4000, back));
  EXPECT_EQ(std::count(back.begin(), back.end(), 0x00), 1000);  // exactly the budget reached the cells
  EXPECT_EQ(back[1000], 0xFF);
  uint8_t b[1];
  EXPECT_EQ(f.read(0, b).error().code(), ErrorCode::power_lost);
  EXPECT_EQ(f.erase(0, 4096).error().code(), ErrorCode::power_lost);
}

}  // namespace
}  // namespace ota32
