#include "format/app_image.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/file_io.h"
#include "format/chip.h"
#include "format/image_make.h"
#include "test_support.h"

namespace ota32 {
namespace {

// spec/esp-app-image.md §10: the hand-built ESP32-C3 image, 352 bytes.
Bytes worked_example() {
  ImageHeader h;
  h.segment_count = 2;
  h.spi_mode = 2;
  h.spi_speed_size = 0x2F;
  h.entry_addr = 0x40380000;
  h.chip_id = 5;
  h.min_chip_rev = 3;
  h.min_chip_rev_full = 3;
  h.max_chip_rev_full = 199;
  h.hash_appended = 1;
  Bytes out(kImageHeaderSize);
  write_image_header(h, out.data());
  ByteWriter w(std::move(out));
  AppDescription d;
  d.secure_version = 1;
  d.version = "1.0.0";
  d.project_name = "demo";
  d.time = "12:00:00";
  d.date = "Jan  1 2025";
  d.idf_ver = "v5.5.1";
  for (int i = 0; i < 32; ++i) d.app_elf_sha256[i] = static_cast<uint8_t>(i);
  d.max_efuse_blk_rev_full = 199;
  d.mmu_page_size = 16;
  w.u32(0x3C000020);
  w.u32(256);
  auto desc = serialize_app_desc(d);
  w.bytes(desc);
  w.u32(0x40380000);
  w.u32(8);
  const uint8_t code[] = {0x13, 0x05, 0x00, 0x00, 0x3c, 0x00, 0x00, 0x00};
  w.bytes(code);
  w.fill(15, 0);
  w.u8(0x34);
  Bytes img = w.take();
  Sha256Digest s = sha256(img);
  img.insert(img.end(), s.begin(), s.end());
  return img;
}

TEST(ChipTable, LooksUpByNameAndId) {
  ASSERT_NE(find_chip("esp32c3"), nullptr);
  EXPECT_EQ(find_chip("ESP32-C3"), find_chip("esp32c3"));
  EXPECT_EQ(find_chip("esp32c3")->chip_id, 5);
  EXPECT_EQ(find_chip_by_id(0x12)->name, "esp32p4");
  EXPECT_EQ(find_chip_by_id(0x0004)->display_name, "ESP32-S3(beta2)");
  EXPECT_EQ(find_chip("esp8266"), nullptr);
  EXPECT_EQ(find_chip_by_id(0x99), nullptr);
  EXPECT_EQ(find_chip("esp32")->bootloader_offset, 0x1000u);
  EXPECT_EQ(find_chip("esp32c3")->bootloader_offset, 0x0u);
  for (auto n : {"esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c6", "esp32h2", "esp32p4"}) {
    const ChipInfo* c = find_chip(n);
    ASSERT_NE(c, nullptr) << n;
    EXPECT_EQ(c->mmu_page_size, 0x10000u) << n;
    EXPECT_TRUE(c->released) << n;
  }
}

TEST(ChipTable, MemoryTypeNamesInTableOrder) {
  EXPECT_EQ(memory_type_names(*find_chip("esp32"), 0x3FFB0000, ", "), "BYTE_ACCESSIBLE, DRAM");
  EXPECT_EQ(memory_type_names(*find_chip("esp32c3"), 0x3FC88000, ", "), "DRAM, BYTE_ACCESSIBLE");
  EXPECT_EQ(memory_type_names(*find_chip("esp32s2"), 0x3FFBDE90, ", "),
            "BYTE_ACCESSIBLE, MEM_INTERNAL, DRAM");
  EXPECT_EQ(memory_type_names(*find_chip("esp32c6"), 0x40800000, ", "), "DRAM, BYTE_ACCESSIBLE, IRAM");
  EXPECT_EQ(memory_type_names(*find_chip("esp32p4"), 0x40000020, ", "), "DROM, IROM");
  EXPECT_EQ(memory_type_names(*find_chip("esp32"), 0x20000000, ","), "");
  EXPECT_TRUE(segment_is_mapped(*find_chip("esp32"), 0x400D0020));
  EXPECT_TRUE(segment_is_mapped(*find_chip("esp32"), 0x3F400020));
  EXPECT_FALSE(segment_is_mapped(*find_chip("esp32"), 0x40080000));
  EXPECT_EQ(flash_freq_name(*find_chip("esp32c6"), 0), "80m");
  EXPECT_EQ(flash_freq_name(*find_chip("esp32c2"), 0xF), "60m");
  EXPECT_EQ(flash_freq_name(*find_chip("esp32c6"), 0xF), "");
  EXPECT_EQ(flash_size_name(0x20), "4MB");
  EXPECT_EQ(flash_size_name(0x80), "");
}

TEST(AppImage, ParsesTheWorkedExample) {
  Bytes img = worked_example();
  ASSERT_EQ(img.size(), 352u);
  auto p = parse_image(img, "ex.bin");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->header.chip_id, 5);
  EXPECT_EQ(p->header.min_chip_rev_full, 3);
  EXPECT_EQ(p->header.max_chip_rev_full, 199);
  ASSERT_EQ(p->segments.size(), 2u);
  EXPECT_EQ(p->segments[0].data_offset, 0x20u);
  EXPECT_EQ(p->segments[1].header_offset(), 0x120u);
  EXPECT_EQ(p->checksum_offset, 0x13Fu);
  EXPECT_EQ(p->stored_checksum, 0x34);
  EXPECT_EQ(p->calculated_checksum, 0x34);
  EXPECT_EQ(p->image_size, 352u);
  ASSERT_TRUE(p->stored_sha256);
  EXPECT_EQ(to_hex(*p->stored_sha256), "ab6c1415756ca2a005bc876b57127768092ca521e5034f222cba13ddbae14559");
  ASSERT_TRUE(p->app_desc);
  EXPECT_EQ(p->app_desc->project_name, "demo");
  EXPECT_EQ(p->app_desc->version, "1.0.0");
  EXPECT_EQ(p->app_desc->secure_version, 1u);
  EXPECT_EQ(p->app_desc->mmu_page_size, 16);
  EXPECT_EQ(p->app_desc->max_efuse_blk_rev_full, 199);
  auto v = verify_image(*p, img, {});
  EXPECT_TRUE(v) << v.error().message();
}

TEST(AppImage, HeaderRoundTrips) {
  Bytes img = worked_example();
  auto h = parse_image_header(ByteView(img).first(24));
  ASSERT_TRUE(h);
  uint8_t again[24];
  write_image_header(*h, again);
  EXPECT_TRUE(std::equal(again, again + 24, img.begin()));
  EXPECT_FALSE(parse_image_header(ByteView(img).first(23)));
}

TEST(AppImage, VerifyNamesTheFirstFailure) {
  const Bytes good = worked_example();
  auto run = [](const Bytes& b, VerifyOptions opt = {}) -> std::string {
    auto p = parse_image(b, "ex.bin");
    if (!p) return "parse: " + p.error().message();
    auto v = verify_image(*p, b, opt);
    return v ? "ok" : v.error().message();
  };
  EXPECT_EQ(run(good), "ok");
  Bytes b = good;
  b[0x40] ^= 1;  // segment data: checksum and hash both break, checksum is named first
  EXPECT_THAT(run(b),
              ::testing::HasSubstr("checksum at offset 0x13f: expected 0x35 (calculated), found 0x34"));
  b = good;
  b[0x150] ^= 1;  // the stored hash
  EXPECT_THAT(run(b), ::testing::HasSubstr("SHA-256 at offset 0x140: expected ab6c1415"));
  b = good;
  b[0x4] ^= 1;  // header byte covered only by the hash
  EXPECT_THAT(run(b), ::testing::HasSubstr("SHA-256 at offset 0x140"));
  VerifyOptions no_hash;
  no_hash.check_hash = false;
  EXPECT_EQ(run(b, no_hash), "ok");
  VerifyOptions other;
  other.chip = find_chip("esp32");
  EXPECT_THAT(run(good, other), ::testing::HasSubstr("chip_id at offset 0xc: expected 0 (ESP32), found 5"));
  b = good;
  b[0x18] = 0x24;  // DROM segment moved off its page offset
  EXPECT_THAT(run(b),
              ::testing::HasSubstr("segment 0 at offset 0x18: load address 0x3c000024 doesn't match data"));
  b = good;
  b[0x123] = 0x20;  // IRAM segment to 0x20380000: outside the map
  EXPECT_THAT(run(b), ::testing::HasSubstr("segment 1 at offset 0x120: load address 0x20380000"));
  b = good;
  b[0x20] = 0;  // app descriptor magic
  EXPECT_THAT(run(b), ::testing::HasSubstr("app descriptor at offset 0x20: magic word expected 0xabcd5432"));
}

TEST(AppImage, BadStructureIsAnErrorNeverACrash) {
  const Bytes good = worked_example();
  auto err = [](const Bytes& b) -> std::string {
    auto p = parse_image(b, "x.bin");
    return p ? "ok" : p.error().message();
  };
  EXPECT_EQ(err({}), "x.bin: file is empty");
  Bytes b = good;
  b[0] = 0xE8;
  EXPECT_EQ(err(b), "x.bin: invalid magic byte 0xe8 at offset 0x0 (expected 0xe9)");
  b = good;
  b[1] = 4;  // two segments more than there are: the 2nd extra header reads the checksum as a length
  EXPECT_THAT(err(b), ::testing::HasSubstr(
                          "segment 3 at offset 0x138 (load 0x00000000): length 0x34000000 runs past"));
  b = good;
  b[1] = 40;
  EXPECT_THAT(err(b), ::testing::HasSubstr("past the end"));
  b = good;
  store_le32(&b[0x1C], 0xFFFFFFF0);  // length overflow
  EXPECT_THAT(err(b), ::testing::HasSubstr(
                          "segment 0 at offset 0x18 (load 0x3c000020): length 0xfffffff0 runs past"));
  b = good;
  b[0x17] = 2;
  EXPECT_THAT(err(b), ::testing::HasSubstr("hash_appended byte at offset 0x17 is 0x02"));
  // Every truncation parses to an error or to an image that then fails verification.
  for (size_t n = 0; n < good.size(); ++n) {
    Bytes t(good.begin(), good.begin() + static_cast<ptrdiff_t>(n));
    auto p = parse_image(t, "t.bin");
    if (p) {
      EXPECT_FALSE(verify_image(*p, t, {})) << "prefix " << n;
    }
  }
  // Every single-byte corruption of the hash-covered part is caught by parse or verify.
  for (size_t i = 0; i < 0x140; ++i) {
    Bytes c = good;
    c[i] ^= 0x5A;
    auto p = parse_image(c, "c.bin");
    if (p) {
      EXPECT_FALSE(verify_image(*p, c, {})) << "byte " << i;
    }
  }
}

TEST(AppImage, AppDescRejectsWrongMagic) {
  std::array<uint8_t, 256> b{};
  auto d = parse_app_desc(b);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code(), ErrorCode::not_found);
  EXPECT_FALSE(parse_app_desc(ByteView(b).first(100)));
}

TEST(AppImage, RealImagesParseAndVerify) {
  OTA32_REQUIRE_TESTDATA();
  struct Case {
    const char* file;
    const char* chip;
    size_t segments;
    bool app;
  } cases[] = {{"esp_idf_blink_esp32s2.bin", "esp32s2", 6, true},
               {"bootloader_esp32.bin", "esp32", 4, false},
               {"bootloader_esp32c3.bin", "esp32c3", 0, false}};
  for (const auto& c : cases) {
    auto data = read_file(testing::testdata_dir() / "images" / c.file);
    ASSERT_TRUE(data) << c.file;
    auto p = parse_image(*data, c.file);
    ASSERT_TRUE(p) << p.error().message();
    if (c.segments) {
      EXPECT_EQ(p->segments.size(), c.segments) << c.file;
    }
    EXPECT_EQ(p->stored_checksum, p->calculated_checksum) << c.file;
    EXPECT_EQ(p->app_desc.has_value(), c.app) << c.file;
    VerifyOptions opt;
    opt.chip = find_chip(c.chip);
    auto v = verify_image(*p, *data, opt);
    EXPECT_TRUE(v) << v.error().message();
  }
  auto blink = read_file(testing::testdata_dir() / "images" / "esp_idf_blink_esp32s2.bin");
  auto p = parse_image(*blink, "blink");
  EXPECT_EQ(p->app_desc->project_name, "blink");
  EXPECT_EQ(p->app_desc->version, "qa-test-v5.0-20220830-4-g4532e6");
  EXPECT_EQ(to_hex(p->app_desc->app_elf_sha256),
            "3059e6b55a965865febd28fa9f6028ad5cd0dab311febb0a3ea79eaa223ac2b0");
  EXPECT_EQ(to_hex(*p->stored_sha256), "10f48f4a71a48cc4c917d70d13bf717b1bc7f3187b3d564b00192f7e381531b7");
}

TEST(ImageMake, DefaultLooksLikeTheSeedApp) {
  MakeImageOptions o;
  o.chip = find_chip("esp32");
  o.project = "simple_ota";
  o.version = "1.0";
  auto img = make_app_image(o);
  ASSERT_TRUE(img) << img.error().message();
  auto p = parse_image(*img, "made");
  ASSERT_TRUE(p) << p.error().message();
  // The seed's boot log (partition at 0x10000): paddr = 0x10000 + data offset.
  struct Seg {
    uint32_t off, addr, len;
  } seed[] = {{0x00020, 0x3f400020, 0x1e510}, {0x1e538, 0x3ffb0000, 0x01ae0}, {0x20020, 0x400d0020, 0x90374},
              {0xb039c, 0x3ffb1ae0, 0x02428}, {0xb27cc, 0x40080000, 0x00404}, {0xb2bd8, 0x40080404, 0x1466c}};
  ASSERT_EQ(p->segments.size(), 6u);
  for (size_t i = 0; i < 6; ++i) {
    EXPECT_EQ(p->segments[i].data_offset, seed[i].off) << i;
    EXPECT_EQ(p->segments[i].load_addr, seed[i].addr) << i;
    EXPECT_EQ(p->segments[i].data_len, seed[i].len) << i;
  }
  ASSERT_TRUE(p->app_desc);
  EXPECT_EQ(p->app_desc->project_name, "simple_ota");
  EXPECT_EQ(p->app_desc->version, "1.0");
  EXPECT_TRUE(verify_image(*p, *img, {}));
  EXPECT_EQ(*make_app_image(o), *img);  // deterministic
  o.seed = 1;
  EXPECT_NE(*make_app_image(o), *img);
}

TEST(BootloaderDesc, SerialiseParseRoundTrip) {
  BootloaderDescription d;
  d.secure_version = 3;
  d.version = 0x01020304;
  d.idf_ver = "v5.5.5";
  d.date_time = "Jan  1 2025 00:00:00";
  auto raw = serialize_bootloader_desc(d);
  EXPECT_EQ(raw[0], 0x50);
  EXPECT_EQ(raw[3], 3);
  EXPECT_EQ(raw[4], 0x04);  // little-endian version
  auto back = parse_bootloader_desc(raw);
  ASSERT_TRUE(back) << back.error().message();
  EXPECT_EQ(back->secure_version, 3);
  EXPECT_EQ(back->version, 0x01020304u);
  EXPECT_EQ(back->idf_ver, "v5.5.5");
  EXPECT_EQ(back->date_time, "Jan  1 2025 00:00:00");
}

// image make --bootloader: the seed's ESP32 bootloader load map (its ROM log), the descriptor first,
// ESP-IDF's default flash header (2MB, DIO, 40m), a valid image on every chip.
TEST(ImageMake, BootloaderHasTheSeedsLoadMapAndADescriptor) {
  MakeBootloaderOptions o;
  o.chip = find_chip("esp32");
  auto img = make_bootloader_image(o);
  ASSERT_TRUE(img) << img.error().message();
  auto p = parse_image(*img, "bootloader");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->header.entry_addr, 0x40080678u);
  EXPECT_EQ(p->header.spi_mode, 2);       // DIO
  EXPECT_EQ(p->header.spi_size(), 0x10);  // 2MB
  EXPECT_EQ(p->header.spi_speed(), 0);    // 40m
  ASSERT_EQ(p->segments.size(), 3u);
  EXPECT_EQ(p->segments[0].load_addr, 0x3fff0030u);
  EXPECT_EQ(p->segments[0].data_len, 4u + 6928u);
  EXPECT_EQ(p->segments[1].load_addr, 0x40078000u);
  EXPECT_EQ(p->segments[1].data_len, 14328u);
  EXPECT_EQ(p->segments[2].load_addr, 0x40080400u);
  EXPECT_EQ(p->segments[2].data_len, 3660u);
  EXPECT_FALSE(p->app_desc);
  ASSERT_TRUE(p->bootloader_desc);
  EXPECT_EQ(p->bootloader_desc->idf_ver, "v5.5.5");
  EXPECT_TRUE(verify_image(*p, *img, {}));
  EXPECT_EQ(*make_bootloader_image(o), *img);  // deterministic
  o.seed = 1;
  EXPECT_NE(*make_bootloader_image(o), *img);
  for (auto name : {"esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c6", "esp32h2", "esp32p4"}) {
    o.chip = find_chip(name);
    o.secure_version = 2;
    auto other = make_bootloader_image(o);
    ASSERT_TRUE(other) << name << ": " << other.error().message();
    auto q = parse_image(*other, name);
    ASSERT_TRUE(q) << name << ": " << q.error().message();
    EXPECT_EQ(q->header.chip_id, o.chip->chip_id) << name;
    EXPECT_TRUE(verify_image(*q, *other, {})) << name;
    ASSERT_TRUE(q->bootloader_desc) << name;
    EXPECT_EQ(q->bootloader_desc->secure_version, 2) << name;
  }
  o.chip = nullptr;
  EXPECT_FALSE(make_bootloader_image(o));
}

TEST(ImageMake, ExactSizeOnEveryChip) {
  for (auto name : {"esp32", "esp32s2", "esp32s3", "esp32c2", "esp32c3", "esp32c6", "esp32h2", "esp32p4"}) {
    for (uint32_t size : {0x20000u, 0x20010u, 0x40000u + 5, 0x31234u, 4u << 20}) {
      MakeImageOptions o;
      o.chip = find_chip(name);
      o.project = "proj";
      o.version = "2.3.4";
      o.secure_version = 7;
      o.size = size;
      auto img = make_app_image(o);
      ASSERT_TRUE(img) << name << " " << size << ": " << img.error().message();
      EXPECT_EQ(img->size(), (size + 15) & ~15u) << name;
      auto p = parse_image(*img, name);
      ASSERT_TRUE(p) << p.error().message();
      auto v = verify_image(*p, *img, {});
      EXPECT_TRUE(v) << name << " " << size << ": " << v.error().message();
      ASSERT_TRUE(p->app_desc) << name;
      EXPECT_EQ(p->app_desc->secure_version, 7u);
      EXPECT_EQ(p->segments[0].data_offset, 0x20u) << name;
    }
  }
}

TEST(ImageMake, RejectsBadOptions) {
  MakeImageOptions o;
  EXPECT_FALSE(make_app_image(o));
  o.chip = find_chip("esp32");
  o.project = std::string(33, 'x');
  EXPECT_THAT(make_app_image(o).error().message(), ::testing::HasSubstr("--project"));
  o.project = "p";
  o.size = 1000;
  EXPECT_THAT(make_app_image(o).error().message(), ::testing::HasSubstr("below the smallest esp32 image"));
}

}  // namespace
}  // namespace ota32
