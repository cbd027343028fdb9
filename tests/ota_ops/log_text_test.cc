#include <gtest/gtest.h>

#include "ota_ops/log_text.h"

namespace ota32 {
namespace {

TEST(LogText, ChipRevision) {
  EXPECT_EQ(rev_text(0), "v0.0");
  EXPECT_EQ(rev_text(100), "v1.0");
  EXPECT_EQ(rev_text(301), "v3.1");
  EXPECT_EQ(rev_text(399), "v3.99");
}

// spec/otadata-and-boot.md §6.3: v4.3-beta1 and later print the new segment line; v4.2 and older and the
// v4.3-dev builds the old one. The bootloader (from its descriptor or BootConfig::idf_version) and the
// agent (device.json's bootloader version) ask the same function.
TEST(LogText, WhichVersionsPrintTheOldSegmentLine) {
  struct Row {
    const char* idf_ver;
    bool old;
  };
  const Row rows[] = {
      {"v5.5.5", false},    {"v5.0", false},
      {"v4.4.7", false},    {"v4.3", false},
      {"v4.3.2", false},    {"v4.3-beta1", false},
      {"v4.3-rc", false},   {"v4.3-dev-1561-g357a27760", true},  // the seed
      {"v4.2.2", true},     {"v4.1", true},
      {"v4.0", true},       {"v4.0.1", true},
      {"v4.0-dirty", true}, {"v3.3.5", true},
      {"v3.0-rc1", true},   {"", false},
      {"5.5.5", false},     {"master", false},
  };
  for (const auto& r : rows) EXPECT_EQ(old_segment_log_format(r.idf_ver), r.old) << r.idf_ver;
}

TEST(LogText, SegmentLineBothForms) {
  EXPECT_EQ(segment_log_text(0, 0x10020, 0x3f400020, 0x1e510, "map", false),
            "segment 0: paddr=00010020 vaddr=3f400020 size=1e510h (124176) map");
  EXPECT_EQ(segment_log_text(0, 0x10020, 0x3f400020, 0x1e510, "map", true),
            "segment 0: paddr=0x00010020 vaddr=0x3f400020 size=0x1e510 (124176) map");
  EXPECT_EQ(segment_log_text(1, 0x2e538, 0x3ffb0000, 0x1ae0, "load", true),
            "segment 1: paddr=0x0002e538 vaddr=0x3ffb0000 size=0x01ae0 (  6880) load");
  // The app side: a RAM segment is not loaded, so the line ends in a space.
  EXPECT_EQ(segment_log_text(1, 0x2179f4, 0x3ffb0000, 0xfd4, "", false),
            "segment 1: paddr=002179f4 vaddr=3ffb0000 size=00fd4h (  4052) ");
}

TEST(LogText, IdfMajorMinor) {
  EXPECT_EQ(idf_major_minor("v5.2.1"), std::make_pair(5, 2));
  EXPECT_EQ(idf_major_minor("v4.3-dev-1561-g357a27760"), std::make_pair(4, 3));
  EXPECT_FALSE(idf_major_minor("release"));
}

}  // namespace
}  // namespace ota32
