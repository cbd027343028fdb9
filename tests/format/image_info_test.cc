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
  hdr[0x0C] = 0x63;  // unknown chip
  r = image_info_report(hdr, {});
  ASSERT_TRUE(r.error);
  EXPECT_THAT(r.error->message(), ::testing::HasSubstr("unknown chip id 99"));
  hdr[0x0C] = 0;
  r = image_info_report(hdr, {});  // one segment announced, none there
  ASSERT_TRUE(r.error);
  EXPECT_THAT(r.text, ::testing::HasSubstr("Detected image type: ESP32\n"));
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
