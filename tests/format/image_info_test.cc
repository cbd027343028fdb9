#include "format/image_info.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/file_io.h"
#include "format/app_image.h"
#include "format/image_make.h"
#include "test_support.h"

namespace ota32 {
namespace {

TEST(ImageInfo, MatchesEsptoolOnRealImages) {
  OTA32_REQUIRE_TESTDATA();
  for (auto [file, chip] :
       {std::pair{"esp_idf_blink_esp32s2", "esp32s2"}, std::pair{"bootloader_esp32", "esp32"},
        std::pair{"bootloader_esp32c3", "esp32c3"}}) {
    auto dir = testing::testdata_dir() / "images";
    auto data = read_file(dir / (std::string(file) + ".bin"));
    auto want = read_text_file(dir / (std::string(file) + ".image_info.txt"));
    ASSERT_TRUE(data && want) << file;
    ImageInfoOptions o;
    o.chip = find_chip(chip);
    o.chip_arg = chip;
    auto r = image_info_report(*data, o);
    EXPECT_FALSE(r.error) << r.error->message();
    EXPECT_EQ(r.text, *want) << file;
  }
}

TEST(ImageInfo, AutoDetectsAndPrintsTheAppBlock) {
  MakeImageOptions m;
  m.chip = find_chip("esp32c3");
  m.project = "demo";
  m.version = "1.0.0";
  m.size = 0x30000;
  auto img = make_app_image(m);
  ASSERT_TRUE(img);
  auto r = image_info_report(*img, {});
  ASSERT_FALSE(r.error) << r.error->message();
  EXPECT_THAT(r.text, ::testing::StartsWith("File size: 196608 (bytes)\nDetected image type: ESP32-C3\n\n"
                                            "ESP32-C3 image header\n=====================\n"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("      0  0x"));
  EXPECT_THAT(r.text, ::testing::HasSubstr(std::string("Project name: demo") + std::string(28, '\0') + "\n"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("Checksum: 0x"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("(valid)\n\nApplication information\n"));
  ImageInfoOptions v1;
  v1.version = 1;
  r = image_info_report(*img, v1);
  EXPECT_THAT(r.text, ::testing::HasSubstr("Image version: 1\nEntry point: 40380404\n"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("Segment 1: len 0x"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("[DROM]\n"));
}

TEST(ImageInfo, ReportsBadChecksumAndHashWithoutFailing) {
  MakeImageOptions m;
  m.chip = find_chip("esp32");
  m.project = "p";
  m.version = "v";
  m.size = 0x20000;
  auto img = make_app_image(m);
  ASSERT_TRUE(img);
  (*img)[0x200] ^= 0xFF;
  auto r = image_info_report(*img, {});
  EXPECT_FALSE(r.error);
  EXPECT_THAT(r.text,
              ::testing::ContainsRegex("Checksum: 0x[0-9a-f]+ \\(invalid - calculated [0-9a-f]{2}\\)"));
  EXPECT_THAT(r.text, ::testing::HasSubstr(" (invalid)\n"));
}

TEST(ImageInfo, FatalErrorsKeepWhatWasPrinted) {
  Bytes b = {0x3A, 0x00};
  auto r = image_info_report(b, {});
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.text, "File size: 2 (bytes)\n");
  EXPECT_THAT(r.error->message(), ::testing::HasSubstr("invalid magic number: 0x3a"));
  r = image_info_report({}, {});
  ASSERT_TRUE(r.error);
  Bytes hdr(24, 0);
  hdr[0] = 0xE9;
  hdr[1] = 1;
  hdr[0x0C] = 0x63;  // unknown chip: esptool then reads it as an ESP8266 image
  r = image_info_report(hdr, {});
  ASSERT_TRUE(r.error);
  EXPECT_THAT(r.text, ::testing::HasSubstr("Detected image type: ESP8266\n"));
  hdr[0x0C] = 0;
  r = image_info_report(hdr, {});  // one segment announced, none there
  ASSERT_TRUE(r.error);
  EXPECT_THAT(r.text, ::testing::HasSubstr("Detected image type: ESP32\n"));
}

// ESP8266 images, hand-built from esptool v4.8.1's readers (bin_image.py ESP8266ROMFirmwareImage and
// ESP8266V2FirmwareImage, image_info's v1/v2 reports; spec/esp-app-image.md §9.6).
Bytes esp8266_v1() {
  ByteWriter w;
  w.u8(0xE9), w.u8(2), w.u8(2), w.u8(0x20), w.u32(0x40100004);  // DIO, 1MB, 40m
  w.u32(0x3FFE8000), w.u32(16), w.fill(16, 0x11);               // DRAM
  w.u32(0x40100000), w.u32(6);                                  // IRAM, 6 bytes (shown as 8)
  for (uint8_t b : {1, 2, 3, 4, 5, 6}) w.u8(b);
  w.u8(0);     // pad to offset 47
  w.u8(0xE8);  // 0xEF ^ 1^2^3^4^5^6
  return Bytes(w.view().begin(), w.view().end());
}

Bytes esp8266_v2() {
  ByteWriter w;
  w.u8(0xEA), w.u8(4), w.u8(2), w.u8(0x20), w.u32(0x40100004);
  w.u32(0), w.u32(32), w.u8(1), w.fill(31, 0);  // irom0, not in the checksum
  w.u8(0xE9), w.u8(1), w.u8(2), w.u8(0x20), w.u32(0x40100004);
  w.u32(0x3FFE8000), w.u32(8);
  for (uint8_t b = 0x10; b < 0x18; ++b) w.u8(b);
  w.fill(7, 0);
  w.u8(0xEF);
  return Bytes(w.view().begin(), w.view().end());
}

TEST(ImageInfo, Esp8266V1ImageBothReports) {
  Bytes img = esp8266_v1();
  ASSERT_EQ(img.size(), 48u);
  ImageInfoOptions v1;
  v1.version = 1;
  auto r = image_info_report(img, v1);
  ASSERT_FALSE(r.error) << r.error->message();
  EXPECT_EQ(r.text,
            "File size: 48 (bytes)\n"
            "Detected image type: ESP8266\n"
            "Image version: 1\n"
            "Entry point: 40100004\n"
            "2 segments\n"
            "\n"
            "Segment 1: len 0x00010 load 0x3ffe8000 file_offs 0x00000008 [DRAM]\n"
            "Segment 2: len 0x00008 load 0x40100000 file_offs 0x00000020 [IRAM]\n"
            "Checksum: e8 (valid)\n");
  r = image_info_report(img, {});
  ASSERT_FALSE(r.error) << r.error->message();
  EXPECT_EQ(r.text,
            "File size: 48 (bytes)\n"
            "Detected image type: ESP8266\n"
            "\n"
            "ESP8266 image header\n"
            "====================\n"
            "Image version: 1\n"
            "Entry point: 0x40100004\n"
            "Segments: 2\n"
            "Flash size: 1MB\n"
            "Flash freq: 40m\n"
            "Flash mode: DIO\n"
            "\n"
            "Segments information\n"
            "====================\n"
            "Segment   Length   Load addr   File offs  Memory types\n"
            "-------  -------  ----------  ----------  ------------\n"
            "      0  0x00010  0x3ffe8000  0x00000008  DRAM\n"
            "      1  0x00008  0x40100000  0x00000020  IRAM\n"
            "\n"
            "ESP8266 image footer\n"
            "====================\n"
            "Checksum: 0xe8 (valid)\n");
  // The ESP8266 size table, an explicit --chip esp8266 (no detection line), a suspicious segment.
  img[3] = 0x60;
  store_le32(&img[8], 0x40201010);
  ImageInfoOptions explicit_chip;
  explicit_chip.chip = &esp8266_chip();
  explicit_chip.chip_arg = "esp8266";
  r = image_info_report(img, explicit_chip);
  ASSERT_FALSE(r.error) << r.error->message();
  EXPECT_THAT(r.text, ::testing::StartsWith("File size: 48 (bytes)\nWARNING: Suspicious segment 0x40201010, "
                                            "length 16\n\nESP8266 image header\n"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("Flash size: 4MB-c1\n"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("      0  0x00010  0x40201010  0x00000008  IROM\n"));
}

TEST(ImageInfo, Esp8266V2Image) {
  Bytes img = esp8266_v2();
  ASSERT_EQ(img.size(), 80u);
  ImageInfoOptions v1;
  v1.version = 1;
  auto r = image_info_report(img, v1);
  ASSERT_FALSE(r.error) << r.error->message();
  EXPECT_EQ(r.text,
            "File size: 80 (bytes)\n"
            "Detected image type: ESP8266\n"
            "Image version: 2\n"
            "Entry point: 40100004\n"
            "2 segments\n"
            "\n"
            "Segment 1: len 0x00020 load 0x00000000 file_offs 0x00000008 []\n"
            "Segment 2: len 0x00008 load 0x3ffe8000 file_offs 0x00000038 [DRAM]\n"
            "Checksum: ef (valid)\n");
  // Header disagreements are warnings; the second header wins.
  img[1] = 3, img[2] = 0, img[3] = 0x2F, store_le32(&img[4], 0x40100008);
  r = image_info_report(img, {});
  ASSERT_FALSE(r.error) << r.error->message();
  EXPECT_THAT(r.text,
              ::testing::StartsWith(
                  "File size: 80 (bytes)\n"
                  "Detected image type: ESP8266\n"
                  "Warning: V2 header has unexpected \"segment\" count 3 (usually 4)\n"
                  "WARNING: Flash mode value in first header (0x00) disagrees with second (0x02). Using "
                  "second value.\n"
                  "WARNING: Flash size/freq value in first header (0x2f) disagrees with second (0x20). "
                  "Using second value.\n"
                  "WARNING: Entrypoint address in first header (0x40100008) disagrees with second "
                  "header (0x40100004). Using second value.\n"
                  "\nESP8266 image header\n====================\nImage version: 2\n"));
  EXPECT_THAT(r.text, ::testing::HasSubstr("Flash mode: DIO\n"));
  // The ESP32-family reader refuses the 0xEA magic.
  ImageInfoOptions esp32;
  esp32.chip = find_chip("esp32");
  r = image_info_report(esp8266_v2(), esp32);
  ASSERT_TRUE(r.error);
  EXPECT_EQ(r.error->message(), "image: Invalid firmware image magic=0xea");
}

TEST(ImageInfo, DamagedEsp8266ImagesGiveOneClearError) {
  auto err = [](Bytes b) {
    ImageInfoOptions o;
    o.chip = &esp8266_chip();
    auto r = image_info_report(b, o);
    EXPECT_THAT(r.text, ::testing::StartsWith("File size: "));
    return r.error ? r.error->message() : std::string("no error");
  };
  Bytes v2 = esp8266_v2();
  EXPECT_EQ(err(Bytes(v2.begin(), v2.begin() + 66)),
            "image: End of file reading segment 0x3ffe8000, length 8 (actual length 2)");
  EXPECT_EQ(err(Bytes(v2.begin(), v2.begin() + 60)),
            "image: segment header at offset 0x38: 4 bytes left, need 8");
  EXPECT_EQ(err(Bytes(v2.begin(), v2.begin() + 72)),
            "image: checksum byte at offset 0x4f is past the end of the file (72 bytes)");
  Bytes bad = v2;
  bad[48] = 0xE8;
  EXPECT_EQ(err(bad), "image: Invalid firmware image magic=0xe8 (offset 0x30)");
  Bytes v1 = esp8266_v1();
  v1[1] = 17;  // more segments than the file holds
  EXPECT_EQ(err(v1), "image: segment header at offset 0x2e: 2 bytes left, need 8");
  // 17 empty segments: esptool's count check comes after the checksum.
  ByteWriter w;
  w.u8(0xE9), w.u8(17), w.u8(0), w.u8(0x20), w.u32(0x40100000);
  for (int i = 0; i < 17; ++i) w.u32(0x3FFE8000), w.u32(0);
  w.fill(15 - (w.view().size() % 16), 0), w.u8(0xEF);
  EXPECT_EQ(err(Bytes(w.view().begin(), w.view().end())),
            "image: Invalid segment count 17 (max 16). Usually this indicates a linker script problem.");
  // Every prefix of both images: a report or one error, never a read past the end (ASan build).
  for (const Bytes& whole : {esp8266_v1(), esp8266_v2()}) {
    for (size_t n = 1; n < whole.size(); ++n) {
      auto r = image_info_report(ByteView(whole).first(n), {});
      EXPECT_TRUE(r.error) << "prefix of " << n << " bytes";
    }
  }
}

}  // namespace
}  // namespace ota32

namespace ota32 {
namespace {

// Random byte flips, truncations and length rewrites of a made image: info, parse and verify return an
// answer (report or error), never crash (bounded; ASan build checks the reads).
TEST(ImageInfo, SurvivesMutations) {
  MakeImageOptions m;
  m.chip = find_chip("esp32c3");
  m.project = "fuzz";
  m.version = "1";
  m.size = 0x20000;
  const Bytes good = *make_app_image(m);
  uint64_t state = 12345;
  auto next = [&] {
    state ^= state << 13, state ^= state >> 7, state ^= state << 17;
    return state;
  };
  for (int i = 0; i < 300; ++i) {
    Bytes b = good;
    switch (next() % 3) {
      case 0:
        for (int k = 0; k < 4; ++k) b[next() % 0x200] ^= static_cast<uint8_t>(next());
        break;
      case 1:
        b.resize(next() % b.size());
        break;
      case 2:
        store_le32(&b[0x1C + 8 * (next() % 4)], static_cast<uint32_t>(next()));
        break;
    }
    auto r = image_info_report(b, {});
    EXPECT_FALSE(r.text.empty());
    if (auto p = parse_image(b, "m.bin")) (void)verify_image(*p, b, {});
  }
}

}  // namespace
}  // namespace ota32
