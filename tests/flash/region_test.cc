#include <gtest/gtest.h>

#include "flash/nor_flash.h"

namespace ota32 {
namespace {

TEST(Region, OffsetsAreRelativeAndBoundsChecked) {
  MemFlash f(0x10000);
  Region otadata(f, 0xD000, 0x2000, "otadata");
  ASSERT_TRUE(otadata.erase(0x1000, 0x1000));
  ASSERT_TRUE(otadata.program(0x1000, Bytes{1, 0, 0, 0}));
  Bytes b(4);
  ASSERT_TRUE(f.read(0xE000, b));
  EXPECT_EQ(b, (Bytes{1, 0, 0, 0}));
  auto r = otadata.read(0x1FFF, 2);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::out_of_range);
  EXPECT_NE(r.error().message().find("otadata"), std::string::npos);
  EXPECT_FALSE(otadata.erase(0x2000, 0x1000));
}

}  // namespace
}  // namespace ota32
