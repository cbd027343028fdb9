// elf2image's layout rules, checked against the examples of spec/esp-app-image.md §10.1 (esptool v4.8.1).
#include "format/image_layout.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace ota32 {
namespace {

constexpr uint32_t A = 2, WA = 3, AX = 6;

ImageItem item(std::string name, uint32_t addr, size_t len, uint32_t flags, uint8_t fill = 0x11) {
  return ImageItem{addr, Bytes(len, fill), flags, std::move(name)};
}

struct Seg {
  uint32_t len, addr, hdr;
};

void expect_segments(const Bytes& img, const std::vector<Seg>& want) {
  auto p = parse_image(img, "layout");
  ASSERT_TRUE(p) << p.error().message();
  ASSERT_EQ(p->segments.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(p->segments[i].data_len, want[i].len) << "segment " << i;
    EXPECT_EQ(p->segments[i].load_addr, want[i].addr) << "segment " << i;
    EXPECT_EQ(p->segments[i].header_offset(), want[i].hdr) << "segment " << i;
  }
  EXPECT_EQ(p->stored_checksum, p->calculated_checksum);
  if (p->stored_sha256) {
    EXPECT_EQ(*p->stored_sha256, image_sha256(*p, img));
  }
}

std::vector<ImageItem> esp32_items() {
  std::vector<ImageItem> v;
  v.push_back(item(".flash.appdesc", 0x3F400020, 0x100, A, 0));
  v.push_back(item(".flash.rodata", 0x3F400120, 0x40, A));
  v.push_back(item(".dram0.data", 0x3FFB0000, 0x30, WA));
  v.push_back(item(".iram0.vectors", 0x40080000, 0x400, AX));
  v.push_back(item(".iram0.text", 0x40080400, 0x1000, AX));
  v.push_back(item(".flash.text", 0x400D0020, 0x200, AX));
  return v;
}

TEST(ImageLayout, Esp32Example) {
  LayoutOptions o;
  o.entry = 0x40080000;
  o.elf_sha256_offset = 0xb0;
  for (int i = 0; i < 32; ++i) o.elf_sha256[i] = static_cast<uint8_t>(0xA0 + i);
  auto r = layout_image(*find_chip("esp32"), esp32_items(), o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->merged, 2u);
  expect_segments(r->image, {{0x140, 0x3f400020, 0x18},
                             {0x30, 0x3ffb0000, 0x160},
                             {0x1400, 0x40080000, 0x198},
                             {0xea70, 0, 0x15a0},
                             {0x200, 0x400d0020, 0x10018}});
  const uint8_t hdr[24] = {0xe9, 0x05, 0, 0, 0, 0,    0x08, 0x40, 0xee, 0, 0, 0,
                           0,    0,    0, 0, 0, 0xff, 0xff, 0,    0,    0, 0, 1};
  EXPECT_TRUE(std::equal(hdr, hdr + 24, r->image.begin()));
  EXPECT_TRUE(std::equal(o.elf_sha256.begin(), o.elf_sha256.end(), r->image.begin() + 0xb0));
}

TEST(ImageLayout, SecurePadding) {
  LayoutOptions o;
  o.secure_pad = LayoutOptions::SecurePad::v2;
  auto r = layout_image(*find_chip("esp32"), esp32_items(), o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->image.size(), 0x20000u);
  auto p = parse_image(r->image);
  ASSERT_EQ(p->segments.size(), 6u);
  EXPECT_EQ(p->segments[5].data_len, 0xfda8u);
  EXPECT_EQ(p->segments[5].header_offset(), 0x10220u);
  o.secure_pad = LayoutOptions::SecurePad::v1;
  r = layout_image(*find_chip("esp32"), esp32_items(), o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->image.size(), 0x1FFB0u);
  o.append_digest = false;
  EXPECT_THAT(layout_image(*find_chip("esp32"), esp32_items(), o).error().message(),
              ::testing::HasSubstr("secure_pad only applies"));
}

TEST(ImageLayout, Esp32TailWorkaround) {
  std::vector<ImageItem> v;
  v.push_back(item(".flash.appdesc", 0x3F400020, 0xFFF0, A));
  auto r = layout_image(*find_chip("esp32"), std::move(v), {});
  ASSERT_TRUE(r);
  expect_segments(r->image, {{0x10004, 0x3f400020, 0x18}});
  // Not on other chips.
  v.clear();
  v.push_back(item(".flash.appdesc", 0x3C000020, 0xFFF0, A));
  r = layout_image(*find_chip("esp32c3"), std::move(v), {});
  expect_segments(r->image, {{0xFFF0, 0x3c000020, 0x18}});
}

TEST(ImageLayout, Esp32C3SplitsRamAroundFlash) {
  std::vector<ImageItem> v;
  v.push_back(item(".flash.appdesc", 0x3C000020, 0x100, A));
  v.push_back(item(".dram0.data", 0x3FC88000, 0x30, WA));
  v.push_back(item(".iram0.text", 0x40380000, 0x18000, AX));
  v.push_back(item(".flash.text", 0x42000020, 0x200, AX));
  auto r = layout_image(*find_chip("esp32c3"), std::move(v), {});
  ASSERT_TRUE(r);
  expect_segments(r->image, {{0x100, 0x3c000020, 0x18},
                             {0x30, 0x3fc88000, 0x120},
                             {0xfeb8, 0x40380000, 0x158},
                             {0x200, 0x42000020, 0x10018},
                             {0x8148, 0x4038feb8, 0x10220}});
}

TEST(ImageLayout, Esp32C6OverPadding) {
  std::vector<ImageItem> v;
  v.push_back(item(".flash.text", 0x42000020, 0x200, AX));
  v.push_back(item(".flash.appdesc", 0x42808020, 0x100, A));
  v.push_back(item(".flash.rodata", 0x42808120, 0x40, A));
  v.push_back(item(".iram0.text", 0x40800000, 0x3000, AX));
  v.push_back(item(".dram0.data", 0x40803000, 0x30, WA));
  auto r = layout_image(*find_chip("esp32c6"), std::move(v), {});
  ASSERT_TRUE(r);
  expect_segments(r->image, {{0x3000, 0x40800000, 0x18},
                             {0x30, 0x40803000, 0x3020},
                             {0x14fb8, 0, 0x3058},
                             {0x140, 0x42808020, 0x18018},
                             {0x7eb0, 0, 0x18160},
                             {0x200, 0x42000020, 0x20018}});
}

TEST(ImageLayout, Errors) {
  std::vector<ImageItem> v;
  v.push_back(item(".flash.appdesc", 0x3F400020, 0x100, A));
  v.push_back(item(".flash.rodata", 0x3F400200, 0x40, A));  // same 64 KiB page, not contiguous
  EXPECT_EQ(
      layout_image(*find_chip("esp32"), v, {}).error().message(),
      "Segment loaded at 0x3f400200 lands in same 64KB flash mapping as segment loaded at 0x3f400020. Can't "
      "generate binary. Suggest changing linker script or ELF to merge sections.");
  v.clear();
  for (uint32_t i = 0; i < 17; ++i) v.push_back(item("s", 0x3FFB0000 + i * 0x100, 0x10, WA));
  EXPECT_THAT(layout_image(*find_chip("esp32"), v, {}).error().message(),
              ::testing::HasSubstr("Invalid segment count 17 (max 16)"));
  LayoutOptions o;
  o.elf_sha256_offset = 0x1c;  // inside segment 0's header
  EXPECT_THAT(layout_image(*find_chip("esp32"), esp32_items(), o).error().message(),
              ::testing::HasSubstr(
                  "Cannot place SHA256 digest on segment boundary(elf_sha256_offset=28, file_pos=24"));
  o.elf_sha256_offset = 0x40;  // non-zero data
  auto items = esp32_items();
  items[0].data.assign(0x100, 1);
  EXPECT_THAT(layout_image(*find_chip("esp32"), items, o).error().message(),
              ::testing::HasSubstr("are not all zero"));
}

}  // namespace
}  // namespace ota32
