#include <gtest/gtest.h>

#include "core/file_io.h"
#include "flash/nor_flash.h"
#include "test_support.h"

namespace ota32 {
namespace {

Bytes read_all(Flash& f, uint32_t addr, uint32_t len) {
  Bytes b(len);
  EXPECT_TRUE(f.read(addr, b));
  return b;
}

TEST(MemFlash, StartsErasedAndReadsAnywhere) {
  MemFlash f(0x4000);
  EXPECT_EQ(f.size(), 0x4000u);
  EXPECT_EQ(read_all(f, 0x123, 7), Bytes(7, 0xFF));
  EXPECT_EQ(read_all(f, 0x3FFF, 1), Bytes(1, 0xFF));
  Bytes none;
  EXPECT_TRUE(f.read(0x4000, none));  // empty read at the end is fine
}

TEST(MemFlash, ProgramOnlyClearsBitsAndAcrossPages) {
  MemFlash f(0x2000);
  Bytes data(300, 0x5A);
  ASSERT_TRUE(f.program(0xF0, data));  // crosses the 0x100 page boundary: no wrap in the emulator
  EXPECT_EQ(read_all(f, 0xF0, 300), data);
  EXPECT_EQ(read_all(f, 0xEF, 1), Bytes{0xFF});
  EXPECT_EQ(read_all(f, 0xF0 + 300, 1), Bytes{0xFF});
  // Clearing more bits over programmed cells is allowed (0x5A & 0x50).
  ASSERT_TRUE(f.program(0xF0, Bytes{0x50}));
  EXPECT_EQ(read_all(f, 0xF0, 1), Bytes{0x50});
  // FF over programmed cells programs nothing and is allowed.
  ASSERT_TRUE(f.program(0xF1, Bytes{0xFF}));
  EXPECT_EQ(read_all(f, 0xF1, 1), Bytes{0x5A});
}

TEST(MemFlash, StrictRuleRefusesZeroToOneAndLeavesFlashUnchanged) {
  MemFlash f(0x1000);
  ASSERT_TRUE(f.program(0x10, Bytes{0x0F, 0x0F}));
  auto r = f.program(0x10, Bytes{0x0F, 0xF0});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("0x00000011"), std::string::npos) << r.error().message();
  EXPECT_EQ(read_all(f, 0x10, 2), (Bytes{0x0F, 0x0F}));
}

TEST(MemFlash, AndRuleDoesWhatTheChipDoes) {
  MemFlash f(0x1000);
  f.set_program_rule(ProgramRule::and_bits);
  ASSERT_TRUE(f.program(0, Bytes{0x0F}));
  ASSERT_TRUE(f.program(0, Bytes{0xF3}));
  EXPECT_EQ(read_all(f, 0, 1), Bytes{0x03});
}

TEST(MemFlash, EraseRulesAlignmentAndRange) {
  MemFlash f(0x3000);
  ASSERT_TRUE(f.program(0x1000, Bytes(0x1000, 0x00)));
  ASSERT_TRUE(f.program(0x0FFF, Bytes{0x00}));
  auto misaligned = f.erase(0x1800, 0x1000);
  ASSERT_FALSE(misaligned);
  EXPECT_EQ(misaligned.error().code(), ErrorCode::invalid_argument);
  auto short_len = f.erase(0x1000, 0x800);
  ASSERT_FALSE(short_len);
  EXPECT_EQ(short_len.error().code(), ErrorCode::invalid_argument);
  auto past = f.erase(0x2000, 0x2000);
  ASSERT_FALSE(past);
  EXPECT_EQ(past.error().code(), ErrorCode::out_of_range);
  EXPECT_EQ(read_all(f, 0x1000, 0x1000), Bytes(0x1000, 0x00));  // refused erases did nothing

  ASSERT_TRUE(f.erase(0x1000, 0x1000));
  EXPECT_EQ(read_all(f, 0x1000, 0x1000), Bytes(0x1000, 0xFF));
  EXPECT_EQ(read_all(f, 0x0FFF, 1), Bytes{0x00});  // neighbour sector untouched
  EXPECT_TRUE(f.erase(0x1000, 0));
}

TEST(MemFlash, OutOfRangeReadAndProgram) {
  MemFlash f(0x1000);
  Bytes b(2);
  auto r = f.read(0xFFF, b);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::out_of_range);
  auto p = f.program(0xFFFFFFFF, Bytes{0});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code(), ErrorCode::out_of_range);
}

TEST(FileFlash, CreateOpenProgramPersists) {
  testing::TempDir dir;
  auto path = dir / "flash.bin";
  ASSERT_TRUE(FileFlash::create(path, 0x10000));
  {
    auto f = FileFlash::open(path);
    ASSERT_TRUE(f) << f.error().message();
    EXPECT_EQ((*f)->size(), 0x10000u);
    ASSERT_TRUE((*f)->program(0x8000, Bytes{0xAA, 0x50}));
    ASSERT_TRUE((*f)->erase(0x0, 0x1000));
  }
  auto bytes = read_file(path);
  ASSERT_TRUE(bytes);
  ASSERT_EQ(bytes->size(), 0x10000u);
  EXPECT_EQ((*bytes)[0x8000], 0xAA);
  EXPECT_EQ((*bytes)[0x8001], 0x50);
  EXPECT_EQ((*bytes)[0x8002], 0xFF);
}

TEST(FileFlash, RuleViolationsAreErrors) {
  testing::TempDir dir;
  auto path = dir / "flash.bin";
  ASSERT_TRUE(FileFlash::create(path, 0x4000));
  auto f = FileFlash::open(path);
  ASSERT_TRUE(f);
  ASSERT_TRUE((*f)->program(0x100, Bytes{0x00}));
  EXPECT_EQ((*f)->program(0x100, Bytes{0x01}).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ((*f)->erase(0x100, 0x1000).error().code(), ErrorCode::invalid_argument);
  EXPECT_EQ((*f)->erase(0x4000, 0x1000).error().code(), ErrorCode::out_of_range);
  EXPECT_EQ((*f)->program(0x3FFF, Bytes{0, 0}).error().code(), ErrorCode::out_of_range);
}

TEST(FileFlash, OpenRefusesMissingAndBadSizes) {
  testing::TempDir dir;
  auto missing = FileFlash::open(dir / "nope.bin");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::not_found);
  ASSERT_TRUE(write_file_atomic(dir / "odd.bin", Bytes(1000, 0xFF)));
  auto odd = FileFlash::open(dir / "odd.bin");
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(odd.error().message().find("odd.bin"), std::string::npos);
  EXPECT_FALSE(FileFlash::create(dir / "zero.bin", 0));
  EXPECT_FALSE(std::filesystem::exists(dir / "zero.bin"));
}

}  // namespace
}  // namespace ota32
