#include "format/elf2image.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/file_io.h"
#include "format/app_image.h"
#include "format/elf.h"
#include "format/esp8266_image.h"
#include "test_support.h"

namespace ota32 {
namespace {

struct Sec {
  std::string name;
  uint32_t type, flags, addr;
  Bytes data;
};

// A minimal ELF32: header, section data, .shstrtab, section headers, one PT_LOAD program header.
Bytes make_elf(const std::vector<Sec>& secs, uint16_t machine = 0x5E, uint32_t entry = 0x40080000) {
  Bytes out(52, 0);
  std::string strtab(1, '\0');
  std::vector<std::pair<uint32_t, uint32_t>> placed;  // offset, name offset
  for (const auto& s : secs) {
    placed.push_back({static_cast<uint32_t>(out.size()), static_cast<uint32_t>(strtab.size())});
    strtab += s.name + '\0';
    out.insert(out.end(), s.data.begin(), s.data.end());
  }
  uint32_t shstr_name = static_cast<uint32_t>(strtab.size());
  strtab += ".shstrtab";
  strtab += '\0';
  uint32_t strtab_off = static_cast<uint32_t>(out.size());
  out.insert(out.end(), strtab.begin(), strtab.end());
  while (out.size() % 4) out.push_back(0);
  uint32_t phoff = static_cast<uint32_t>(out.size());
  ByteWriter ph;
  ph.u32(1), ph.u32(52), ph.u32(0x3F400020), ph.u32(0x3F400020), ph.u32(4), ph.u32(4), ph.u32(4), ph.u32(4);
  out.insert(out.end(), ph.view().begin(), ph.view().end());
  uint32_t shoff = static_cast<uint32_t>(out.size());
  ByteWriter sh;
  sh.fill(40, 0);  // null section
  for (size_t i = 0; i < secs.size(); ++i) {
    sh.u32(placed[i].second), sh.u32(secs[i].type), sh.u32(secs[i].flags), sh.u32(secs[i].addr);
    sh.u32(placed[i].first), sh.u32(static_cast<uint32_t>(secs[i].data.size())), sh.fill(16, 0);
  }
  sh.u32(shstr_name), sh.u32(3), sh.u32(0), sh.u32(0), sh.u32(strtab_off);
  sh.u32(static_cast<uint32_t>(strtab.size())), sh.fill(16, 0);
  out.insert(out.end(), sh.view().begin(), sh.view().end());
  const uint8_t ident[] = {0x7F, 'E', 'L', 'F', 1, 1, 1};
  std::copy(std::begin(ident), std::end(ident), out.begin());
  store_le16(&out[16], 2);
  store_le16(&out[18], machine);
  store_le32(&out[20], 1);
  store_le32(&out[24], entry);
  store_le32(&out[28], phoff);
  store_le32(&out[32], shoff);
  store_le16(&out[40], 52);
  store_le16(&out[42], 32);
  store_le16(&out[44], 1);
  store_le16(&out[46], 40);
  store_le16(&out[48], static_cast<uint16_t>(secs.size() + 2));
  store_le16(&out[50], static_cast<uint16_t>(secs.size() + 1));
  return out;
}

std::vector<Sec> esp32_sections() {
  Bytes desc(0x100, 0);
  store_le32(desc.data(), kAppDescMagic);
  return {{".flash.appdesc", 1, 2, 0x3F400020, desc},
          {".flash.rodata", 1, 2, 0x3F400120, Bytes(0x40, 0x22)},
          {".dram0.data", 1, 3, 0x3FFB0000, Bytes(0x30, 0x33)},
          {".dram0.bss", 8, 3, 0x3FFB0030, {}},
          {".iram0.vectors", 1, 6, 0x40080000, Bytes(0x400, 0x44)},
          {".iram0.text", 1, 6, 0x40080400, Bytes(0x1000, 0x55)},
          {".flash.text", 1, 6, 0x400D0020, Bytes(0x200, 0x66)}};
}

TEST(Elf2Image, MatchesEsptoolOnTheTemplateApp) {
  OTA32_REQUIRE_TESTDATA();
  auto dir = testing::testdata_dir() / "elf";
  auto elf = read_file(dir / "esp32-app-template.elf");
  ASSERT_TRUE(elf);
  Elf2ImageOptions o;
  o.chip = find_chip("esp32");
  auto r = elf2image(*elf, "esp32-app-template.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->image, *read_file(dir / "esp32-app-template.bin"));
  EXPECT_THAT(r->console, ::testing::ElementsAre("Creating esp32 image...", "Merged 1 ELF section",
                                                 "Successfully created esp32 image."));
  o.flash_size = "4MB";
  o.flash_mode = "qio";
  o.flash_freq = "80m";
  r = elf2image(*elf, "esp32-app-template.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->image, *read_file(dir / "esp32-app-template.4mb-qio-80m.bin"));
  // As the IDF build runs it: the ELF's SHA-256 lands in app_desc.
  o.elf_sha256_offset = 0xb0;
  r = elf2image(*elf, "esp32-app-template.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  auto img = parse_image(r->image);
  ASSERT_TRUE(img && img->app_desc);
  EXPECT_EQ(img->app_desc->app_elf_sha256, sha256(*elf));
  EXPECT_TRUE(verify_image(*img, r->image, {}));
}

TEST(Elf2Image, SpecExampleFromAnElf) {
  Bytes elf = make_elf(esp32_sections());
  Elf2ImageOptions o;
  o.chip = find_chip("esp32");
  o.elf_sha256_offset = 0xb0;
  auto r = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_THAT(r->console, ::testing::Contains("Merged 2 ELF sections"));
  auto img = parse_image(r->image);
  ASSERT_TRUE(img);
  ASSERT_EQ(img->segments.size(), 5u);
  EXPECT_EQ(img->segments[3].load_addr, 0u);
  EXPECT_EQ(img->segments[3].data_len, 0xea70u);
  EXPECT_EQ(img->segments[4].header_offset(), 0x10018u);
  EXPECT_EQ(img->header.entry_addr, 0x40080000u);
  EXPECT_EQ(img->app_desc->app_elf_sha256, sha256(elf));
  EXPECT_TRUE(verify_image(*img, r->image, {}));
  // Segment mode: one PT_LOAD of 4 bytes.
  o.use_segments = true;
  o.elf_sha256_offset = 0;
  r = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  img = parse_image(r->image);
  ASSERT_EQ(img->segments.size(), 1u);
  EXPECT_EQ(img->segments[0].data_len, 4u);
}

TEST(Elf2Image, OptionsAndTheirErrors) {
  Bytes elf = make_elf(esp32_sections());
  Elf2ImageOptions o;
  o.chip = find_chip("esp32c2");
  auto msg = [&](const Elf2ImageOptions& opt) {
    auto r = elf2image(elf, "app.elf", opt);
    return r ? std::string("ok") : r.error().message();
  };
  o.flash_freq = "80m";
  EXPECT_EQ(msg(o),
            "Flash frequency '80m' is not supported by this chip type. Supported frequencies: 60m, 30m, "
            "20m, 15m");
  o.flash_freq.clear();
  o.flash_mmu_page_size = "8KB";
  EXPECT_EQ(msg(o), "8192 bytes is not a valid ESP32-C2 page size, select from 64KB, 32KB, 16KB.");
  o = {};
  o.chip = find_chip("esp32");
  o.flash_size = "512KB";
  EXPECT_THAT(msg(o), ::testing::StartsWith("Flash size '512KB' is not supported by this chip type."));
  o.flash_size = "1MB";
  o.pad_to_size = "4096";
  EXPECT_EQ(msg(o), "Unknown size 4096");
  o.pad_to_size = "4KB";
  auto r = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->image.size() % 4096, 0u);
  EXPECT_EQ(r->image.back(), 0xFF);
  o.pad_to_size.clear();
  o.flash_mmu_page_size = "32KB";
  r = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(r);
  EXPECT_THAT(
      r->console,
      ::testing::Contains("WARNING: Changing MMU page size is not supported on ESP32! Defaulting to 64KB."));
  o.flash_mmu_page_size.clear();
}

TEST(Elf2Image, BadElfsGiveOneClearError) {
  Bytes good = make_elf(esp32_sections());
  Elf2ImageOptions o;
  o.chip = find_chip("esp32");
  auto msg = [&](const Bytes& e) {
    auto r = elf2image(e, "x.elf", o);
    return r ? std::string("ok") : r.error().message();
  };
  EXPECT_EQ(msg(Bytes(51, 0)),
            "Failed to read a valid ELF header from x.elf: unpack requires a buffer of 52 bytes");
  Bytes b = good;
  b[1] = 'X';
  EXPECT_EQ(msg(b), "x.elf has invalid ELF magic header");
  EXPECT_EQ(msg(make_elf(esp32_sections(), 0x28)),
            "x.elf does not appear to be an Xtensa or an RISCV ELF file. e_machine=0028");
  b = good;
  store_le16(&b[48], 0);
  EXPECT_EQ(msg(b), "x.elf has 0 section headers");
  b = good;
  store_le32(&b[32], 0x7FFFFFF0);
  EXPECT_EQ(msg(b), "No section header found at offset 7ffffff0 in ELF file.");
  b = good;
  b.resize(b.size() - 4);
  EXPECT_THAT(msg(b), ::testing::StartsWith("Only read 0x"));
  b = good;
  store_le16(&b[44], 0);
  EXPECT_THAT(msg(b), ::testing::StartsWith("No segment header found at offset"));
  EXPECT_EQ(msg(make_elf({{".dram0.bss", 8, 3, 0x3FFB0030, Bytes(16, 0)}})),
            "x.elf has no loadable PROGBITS sections (with an address and a size)");
  // Every truncation and every byte flip of the header area: an error or an image, never a crash.
  for (size_t n = 0; n < good.size(); n += 7) {
    (void)elf2image(ByteView(good).first(n), "t.elf", o);
  }
  for (size_t i = 0; i < 52; ++i) {
    Bytes c = good;
    c[i] ^= 0xA5;
    (void)elf2image(c, "c.elf", o);
  }
}

// One segment header of a raw image: (load address, length) at file offset `at`.
std::pair<uint32_t, uint32_t> seg_at(const Bytes& img, size_t at) {
  return {load_le32(&img[at]), load_le32(&img[at + 4])};
}

// spec/esp-app-image.md §10.1 (checked by running esptool v4.8.1 elf2image --ram-only-header): RAM items
// first and counted in byte 1, checksum after them, then each flash item in reverse order behind a padding
// segment placed for a write at 0x1000, no SHA-256.
TEST(Elf2Image, RamOnlyHeaderLayoutOnEsp32) {
  Bytes elf = make_elf(esp32_sections());
  Elf2ImageOptions o;
  o.chip = find_chip("esp32");
  o.ram_only_header = true;
  auto r = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_THAT(r->console,
              ::testing::ElementsAre(
                  "Creating esp32 image...",
                  "Image has only RAM segments visible. ROM segments are hidden and SHA256 digest is not "
                  "appended.",
                  "Merged 2 ELF sections", "Successfully created esp32 image."));
  const Bytes& img = r->image;
  ASSERT_EQ(img.size(), 0x1F160u);
  EXPECT_EQ(img[0], 0xE9);
  EXPECT_EQ(img[1], 2);     // only the RAM segments
  EXPECT_EQ(img[0x17], 0);  // hash_appended = 0
  EXPECT_EQ(seg_at(img, 0x18), std::pair(0x3FFB0000u, 0x30u));
  EXPECT_EQ(seg_at(img, 0x50), std::pair(0x40080000u, 0x1400u));
  EXPECT_EQ(img[0x145F], 0xEF);  // 0xEF xor the RAM data (each byte value an even number of times)
  EXPECT_EQ(seg_at(img, 0x1460), std::pair(0u, 0xDBB0u));
  EXPECT_EQ(seg_at(img, 0xF018), std::pair(0x400D0020u, 0x200u));
  EXPECT_EQ(seg_at(img, 0xF220), std::pair(0u, 0xFDF0u));
  EXPECT_EQ(seg_at(img, 0x1F018), std::pair(0x3F400020u, 0x140u));
  // The ROM loader reads it as a 2-segment image with a valid checksum.
  auto parsed = parse_image(img);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->segments.size(), 2u);
  EXPECT_EQ(parsed->stored_checksum, parsed->calculated_checksum);

  // esptool clears append_digest in this mode, so a secure pad is refused as for --dont-append-digest.
  o.secure_pad_v2 = true;
  auto bad = elf2image(elf, "app.elf", o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            "secure_pad only applies if a SHA-256 digest is also appended to the image");
  // The ELF SHA-256 offset is checked against every segment written, here the IRAM one at 0x50.
  o.secure_pad_v2 = false;
  o.elf_sha256_offset = 0xb0;
  bad = elf2image(elf, "app.elf", o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(),
            "Contents of segment at SHA256 digest offset 0xb0 are not all zero. Refusing to overwrite.");
}

// esptool's own assertion for every flash item in this layout: (header offset + 8 + BOOTLOADER_FLASH_OFFSET)
// % page == load address % page; v4.8.1's offsets are 0 (ESP32-C3, ESP32-C5) and 0x2000 (ESP32-P4).
TEST(Elf2Image, RamOnlyHeaderFlashItemsLandOnTheirPageOffset) {
  Bytes desc(0x100, 0);
  store_le32(desc.data(), kAppDescMagic);
  struct Case {
    const char* chip;
    uint32_t drom, dram, iram, irom, offset;
  };
  for (const Case& c : {Case{"esp32c3", 0x3C000020, 0x3FC88000, 0x40380000, 0x42010020, 0},
                        Case{"esp32c5", 0x42800020, 0x40810000, 0x40800000, 0x42000020, 0},
                        Case{"esp32p4", 0x40000020, 0x4FF10000, 0x4FF00000, 0x40010020, 0x2000}}) {
    SCOPED_TRACE(c.chip);
    Bytes elf = make_elf({{".flash.appdesc", 1, 2, c.drom, desc},
                          {".dram0.data", 1, 3, c.dram, Bytes(0x30, 0x33)},
                          {".iram0.text", 1, 6, c.iram, Bytes(0x800, 0x55)},
                          {".flash.text", 1, 6, c.irom, Bytes(0x300, 0x66)}});
    Elf2ImageOptions o;
    o.chip = find_chip(c.chip);
    o.ram_only_header = true;
    auto r = elf2image(elf, "app.elf", o);
    ASSERT_TRUE(r) << r.error().message();
    const Bytes& img = r->image;
    EXPECT_EQ(img[1], 2);
    // Walk: 2 RAM segments, the checksum, then (padding, flash item) pairs; the later address comes first.
    size_t pos = 0x18;
    for (int i = 0; i < 2; ++i) pos += 8 + seg_at(img, pos).second;
    pos = (pos | 15) + 1;
    std::vector<uint32_t> flash_addrs;
    while (pos < img.size()) {
      ASSERT_EQ(seg_at(img, pos).first, 0u) << "padding at " << pos;
      pos += 8 + seg_at(img, pos).second;
      auto [addr, len] = seg_at(img, pos);
      EXPECT_EQ((pos + 8 + c.offset) % 0x10000, addr % 0x10000) << std::hex << addr;
      flash_addrs.push_back(addr);
      pos += 8 + len;
    }
    EXPECT_EQ(pos, img.size());
    EXPECT_THAT(flash_addrs, ::testing::UnorderedElementsAre(c.drom, c.irom));
  }
}

// esptool v4.8.1 elf2image reads --version only for ESP8266 images; for an ESP32-family chip the bytes do
// not change.
TEST(Elf2Image, VersionIsIgnoredForEsp32FamilyChips) {
  Bytes elf = make_elf(esp32_sections());
  Elf2ImageOptions o;
  o.chip = find_chip("esp32");
  auto base = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(base);
  for (int v : {1, 2, 3}) {
    o.version = v;
    auto r = elf2image(elf, "app.elf", o);
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(r->image, base->image) << "--version " << v;
    EXPECT_EQ(r->console, base->console);
  }
  o.version = 4;
  EXPECT_FALSE(elf2image(elf, "app.elf", o));
}

// DIO, 4MB-c1, 80m: header byte 3 = 0x6F.
Elf2ImageOptions esp8266_options(int version) {
  Elf2ImageOptions o;
  o.chip = &esp8266_chip();
  o.version = version;
  o.flash_mode = "dio";
  o.flash_size = "4MB-c1";
  o.flash_freq = "80m";
  return o;
}

// --chip esp8266 --version 3: esptool v4.8.1's ESP8266V3FirmwareImage.save (bin_image.py): the 8-byte
// common header only (no extended header), flash items above 0x40200000 then RAM items, each sorted by
// address and written whole, `.flash.rodata` without its first 8 bytes, the checksum, then the SHA-256.
TEST(Elf2Image, Esp8266Version3Layout) {
  Bytes rodata(0x30, 0x22);
  std::fill_n(rodata.begin(), 8, 0);  // the SDK's 8 empty bytes
  Bytes elf = make_elf({{".text", 1, 6, 0x40100000, Bytes(0x100, 0x44)},
                        {".data", 1, 3, 0x3FFE8000, Bytes(0x20, 0x33)},
                        {".flash.rodata", 1, 2, 0x40220010, rodata},
                        {".flash.text", 1, 6, 0x40210010, Bytes(0x40, 0x66)}},
                       0x5E, 0x40100004);
  Elf2ImageOptions o = esp8266_options(3);
  o.min_rev_full = 300;  // ESP32-only options change nothing here
  auto r = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_THAT(r->console,
              ::testing::ElementsAre("Creating esp8266 image...", "Successfully created esp8266 image."));
  const Bytes& img = r->image;
  ASSERT_EQ(img.size(), 0x1C0u + 32);
  EXPECT_EQ(Bytes(img.begin(), img.begin() + 8), (Bytes{0xE9, 4, 2, 0x6F, 0x04, 0x00, 0x10, 0x40}));
  EXPECT_EQ(seg_at(img, 0x08), std::pair(0x40210010u, 0x40u));
  EXPECT_EQ(seg_at(img, 0x50), std::pair(0x40220010u, 0x28u));
  EXPECT_EQ(img[0x58], 0x22);  // the 8 zero bytes are gone
  EXPECT_EQ(seg_at(img, 0x80), std::pair(0x3FFE8000u, 0x20u));
  EXPECT_EQ(seg_at(img, 0xA8), std::pair(0x40100000u, 0x100u));
  EXPECT_EQ(img[0x1BF], 0xEF);  // every data byte value appears an even number of times
  Sha256Digest d = sha256(ByteView(img).first(0x1C0));
  EXPECT_EQ(Bytes(img.begin() + 0x1C0, img.end()), Bytes(d.begin(), d.end()));

  // Same 64 KiB page for two flash items, the ESP8266 size table, and the other ESP8266 versions.
  Bytes same = make_elf(
      {{".flash.text", 1, 6, 0x40210010, Bytes(0x40, 0x66)}, {".flash.rodata", 1, 2, 0x40218000, rodata}});
  auto bad = elf2image(same, "app.elf", o);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(),
              ::testing::StartsWith("Segment loaded at 0x40218000 lands in same 64KB"));
  o.flash_size = "32MB";
  bad = elf2image(elf, "app.elf", o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(
      bad.error().message(),
      "Flash size '32MB' is not supported by this chip type. Supported sizes: 512KB, 256KB, 1MB, 2MB, 4MB, "
      "2MB-c1, 4MB-c1, 8MB, 16MB");
  o.flash_size = "1MB";
  o.version = 1;
  bad = elf2image(elf, "app.elf", o);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), ::testing::HasSubstr("--version 1 image (two files) is not made"));
  // Two items in the irom0 window: a v2 image has room for one.
  o.version = 2;
  bad = elf2image(elf, "app.elf", o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "Found 2 segments that could be irom0. Bad ELF file?");
}

// --chip esp8266 --version 2: ESP8266V2FirmwareImage.save: header 0xEA with the constant 4, the irom0 item
// at load address 0 padded to 16, a second 0xE9 header counting the other items, which follow in ELF order
// with the checksum, then esptool's ESP8266 CRC-32 (zlib's, then inverted if bit 31 is set, else plus 1).
TEST(Elf2Image, Esp8266Version2Layout) {
  Bytes elf = make_elf({{".text", 1, 6, 0x40100000, Bytes(0x100, 0x44)},
                        {".data", 1, 3, 0x3FFE8000, Bytes(0x20, 0x33)},
                        {".irom0.text", 1, 6, 0x40210010, Bytes(0x44, 0x66)}},
                       0x5E, 0x40100004);
  Elf2ImageOptions o = esp8266_options(2);
  auto r = elf2image(elf, "app.elf", o);
  ASSERT_TRUE(r) << r.error().message();
  const Bytes& img = r->image;
  EXPECT_EQ(r->irom_offset, 0x10010u);
  ASSERT_EQ(img.size(), 0x1A4u);
  EXPECT_EQ(Bytes(img.begin(), img.begin() + 8), (Bytes{0xEA, 4, 2, 0x6F, 0x04, 0x00, 0x10, 0x40}));
  EXPECT_EQ(seg_at(img, 0x08), std::pair(0u, 0x50u));
  EXPECT_EQ(Bytes(img.begin() + 0x60, img.begin() + 0x68), (Bytes{0xE9, 2, 2, 0x6F, 0x04, 0x00, 0x10, 0x40}));
  EXPECT_EQ(seg_at(img, 0x68), std::pair(0x40100000u, 0x100u));  // ELF order, not address order
  EXPECT_EQ(seg_at(img, 0x170), std::pair(0x3FFE8000u, 0x20u));
  EXPECT_EQ(img[0x19F], 0xEF);
  EXPECT_EQ(load_le32(&img[0x1A0]),
            0x42D0429Fu);  // computed with Python's zlib.crc32 and esp8266_crc32's rule
  // esptool's ESP8266 v2 reader (image info) takes it: the irom0 segment, the two others, a valid checksum.
  std::vector<std::string> warnings;
  auto parsed = parse_esp8266_image(img, "app.bin", warnings);
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->version, 2);
  EXPECT_EQ(parsed->segments.size(), 3u);
  EXPECT_EQ(parsed->stored_checksum, parsed->calculated_checksum);
  EXPECT_TRUE(warnings.empty());
}

}  // namespace
}  // namespace ota32
