// ota32 image info | verify | make | elf2image, run as a user runs them.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

using ::testing::HasSubstr;

TEST(ImageCli, MakeInfoVerify) {
  TempDir dir;
  auto img = (dir / "app.bin").string();
  auto r = run_ota32({"image", "make", "-o", img, "--chip", "esp32", "--project", "simple_ota", "--version",
                      "2.0", "--secure-version", "3", "--size", "0x40000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_ota32({"image", "verify", img});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("valid ESP32 image"));
  r = run_ota32({"image", "info", img});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Detected image type: ESP32\n"));
  EXPECT_THAT(r.out, HasSubstr("Secure version: 3\n"));
  r = run_ota32({"image", "info", "--json", img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["file_size"], 0x40000);
  EXPECT_EQ(j["app_desc"]["project_name"], "simple_ota");
  EXPECT_EQ(j["segments"][0]["data_offset"], 0x20);
  EXPECT_EQ(j["segments"][0]["mapped"], true);
  EXPECT_EQ(j["segments"][0]["load_addr"], "0x3f400020");
  EXPECT_EQ(j["checksum"]["valid"], true);
  EXPECT_EQ(j["sha256"]["valid"], true);

  // One flipped byte in segment 1: verify fails naming the checksum, info still reports (exit 0).
  auto data = *read_file(img);
  data[j["segments"][1]["data_offset"].get<size_t>()] ^= 1;
  ASSERT_TRUE(write_file_atomic(img, data));
  r = run_ota32({"image", "verify", img});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("ota32: " + img + ": checksum at offset"));
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1);
  r = run_ota32({"image", "info", img});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("(invalid - calculated"));
}

TEST(ImageCli, BadInputExitsOneWithOneLine) {
  TempDir dir;
  auto bad = (dir / "bad.bin").string();
  ASSERT_TRUE(write_file_atomic(bad, std::string("\xe9\x03\x02\x20", 4)));
  for (auto cmd : {"info", "verify"}) {
    auto r = run_ota32({"image", cmd, bad});
    EXPECT_EQ(r.exit_code, 1) << cmd;
    EXPECT_THAT(r.err, HasSubstr("bad.bin")) << cmd;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << cmd << ": " << r.err;
  }
  auto r = run_ota32({"image", "verify", (dir / "missing.bin").string()});
  EXPECT_EQ(r.exit_code, 1);
  r = run_ota32({"image", "make", "-o", (dir / "x.bin").string(), "--chip", "esp99", "--project", "p",
                 "--version", "v"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(dir / "x.bin"));
  r = run_ota32({"image", "info"});
  EXPECT_EQ(r.exit_code, 2);
}

TEST(ImageCli, Elf2ImageMatchesEsptool) {
  OTA32_REQUIRE_TESTDATA();
  TempDir dir;
  auto elf = (testdata_dir() / "elf" / "esp32-app-template.elf").string();
  auto out = (dir / "out.bin").string();
  auto r = run_ota32({"image", "elf2image", elf, "-o", out, "--chip", "esp32", "--flash_size", "4MB",
                      "--flash-mode", "qio", "--flash-freq", "80m"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "Creating esp32 image...\nMerged 1 ELF section\nSuccessfully created esp32 image.\n");
  EXPECT_EQ(*read_file(out), *read_file(testdata_dir() / "elf" / "esp32-app-template.4mb-qio-80m.bin"));
  r = run_ota32({"image", "elf2image", out, "-o", (dir / "x.bin").string(), "--chip", "esp32"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("has invalid ELF magic header"));
  EXPECT_FALSE(std::filesystem::exists(dir / "x.bin"));
}

TEST(ImageCli, Elf2ImageRamOnlyHeaderAndVersion) {
  OTA32_REQUIRE_TESTDATA();
  TempDir dir;
  auto elf = (testdata_dir() / "elf" / "esp32-app-template.elf").string();
  auto plain = (dir / "plain.bin").string(), v3 = (dir / "v3.bin").string(), ram = (dir / "ram.bin").string();
  ASSERT_EQ(run_ota32({"image", "elf2image", elf, "-o", plain, "--chip", "esp32"}).exit_code, 0);
  // --version / -e only matters for ESP8266 images (esptool v4.8.1): same bytes for an ESP32.
  auto r = run_ota32({"image", "elf2image", elf, "-o", v3, "--chip", "esp32", "-e", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*read_file(v3), *read_file(plain));
  r = run_ota32({"image", "elf2image", elf, "-o", v3, "--chip", "esp32", "--version", "4"});
  EXPECT_EQ(r.exit_code, 2);
  // --chip esp8266 makes esptool's ESP8266 v2 and v3 images, not v1.
  auto e8266 = (dir / "e8266.bin").string();
  r = run_ota32({"image", "elf2image", elf, "-o", e8266, "--chip", "esp8266"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("--chip esp8266: esptool's --version 1 image (two files) is not made"));
  EXPECT_FALSE(std::filesystem::exists(e8266));
  r = run_ota32({"image", "elf2image", elf, "-o", e8266, "--chip", "esp8266", "--version", "3"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Creating esp8266 image...\n"));
  EXPECT_EQ(read_file(e8266)->at(0), 0xE9);
  r = run_ota32({"image", "elf2image", elf, "-o", ram, "--chip", "esp32", "--ram-only-header"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Creating esp32 image...\nImage has only RAM segments visible. ROM segments "
                               "are hidden and SHA256 digest is not appended.\n"));
  auto img = *read_file(ram);
  EXPECT_EQ(img[0x17], 0);                     // no SHA-256
  EXPECT_LT(img[1], read_file(plain)->at(1));  // the header counts only the RAM segments
}

// An ESP8266 "v2" OTA image (magic 0xEA: irom0 segment, then a v1 image with one DRAM segment).
TEST(ImageCli, InfoDetectsEsp8266Images) {
  TempDir dir;
  Bytes v2 = {0xEA, 4, 2, 0x20, 0x04, 0x00, 0x10, 0x40, 0, 0, 0, 0, 32, 0, 0, 0, 1};
  v2.resize(48, 0);
  for (uint8_t b : {0xE9, 1, 2, 0x20, 0x04, 0x00, 0x10, 0x40, 0x00, 0x80, 0xFE, 0x3F, 8, 0, 0, 0})
    v2.push_back(b);
  for (uint8_t b = 0x10; b < 0x18; ++b) v2.push_back(b);
  v2.resize(79, 0);
  v2.push_back(0xEF);
  auto img = (dir / "esp8266.bin").string(), cut = (dir / "cut.bin").string();
  ASSERT_TRUE(write_file_atomic(img, v2));
  ASSERT_TRUE(write_file_atomic(cut, ByteView(v2).first(66)));
  auto r = run_ota32({"image", "info", img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("Detected image type: ESP8266\n\nESP8266 image header\n"));
  EXPECT_THAT(r.out, HasSubstr("Image version: 2\n"));
  EXPECT_THAT(r.out, HasSubstr("Checksum: 0xef (valid)\n"));
  r = run_ota32({"image", "info", "--chip", "esp8266", "--json", img});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["chip"], "esp8266");
  EXPECT_EQ(j["image_version"], 2);
  EXPECT_EQ(j["segments"].size(), 2u);
  EXPECT_EQ(j["segments"][0]["in_checksum"], false);
  r = run_ota32({"image", "info", cut});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "ota32: " + cut + ": End of file reading segment 0x3ffe8000, length 8 (actual length 2)\n");
}

}  // namespace
}  // namespace ota32::testing
