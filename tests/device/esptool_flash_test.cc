#include <gtest/gtest.h>

#include "core/file_io.h"
#include "core/hash.h"
#include "device/esptool_flash.h"
#include "flash/fault_flash.h"
#include "flash/nor_flash.h"
#include "format/app_image.h"
#include "test_support.h"

namespace ota32 {
namespace {

const ChipInfo& esp32() { return *find_chip("esp32"); }

struct Run {
  Result<void> result;
  std::vector<std::string> lines;
};

Run write(NorFlash& f, std::vector<FlashFile> files, WriteFlashOptions opt = {},
          const ChipInfo* chip = nullptr) {
  Run run{Result<void>(), {}};
  auto plan = plan_write_flash(chip ? *chip : esp32(), f.size(), std::move(files), opt);
  if (!plan) {
    run.result = plan.error();
    return run;
  }
  run.result = run_write_flash(f, *plan, opt, [&](const std::string& l) { run.lines.push_back(l); });
  return run;
}

bool has(const Run& r, const std::string& l) {
  return std::find(r.lines.begin(), r.lines.end(), l) != r.lines.end();
}

Bytes at(NorFlash& f, uint32_t addr, size_t n) {
  return Bytes(f.contents().begin() + addr, f.contents().begin() + addr + n);
}

TEST(Zlib, SeedCompressedSizes) {
  // The seed: "Compressed 8192 bytes to 31..." for ota_data_initial.bin.
  EXPECT_EQ(zlib_compress9(Bytes(8192, 0xFF)).size(), 31u);
}

TEST(Zlib, SeedPartitionTableCompressesTo138) {
  OTA32_REQUIRE_TESTDATA();
  auto t = read_file(testing::testdata_dir() / "partitions" / "two_ota.bin");
  ASSERT_TRUE(t);
  EXPECT_EQ(zlib_compress9(*t).size(), 138u);
}

TEST(WriteProgress, CompressedAddressesFollowTheInflater) {
  OTA32_REQUIRE_TESTDATA();
  auto app = read_file(testing::testdata_dir() / "elf" / "esp32-app-template.bin");
  ASSERT_TRUE(app);
  Bytes data = *app;
  data.resize((data.size() + 3) / 4 * 4, 0xFF);
  Bytes z = zlib_compress9(data);
  EXPECT_EQ(data.size(), 601808u);
  EXPECT_EQ(z.size(), 363207u);
  auto p = write_progress(0x10000, data, z, true);
  ASSERT_EQ(p.size(), 23u);
  EXPECT_EQ(p[0].addr, 0x10000u);
  EXPECT_EQ(p[0].percent, 4);
  EXPECT_EQ(p[1].addr, 0x1d7abu);
  EXPECT_EQ(p[1].percent, 8);
  EXPECT_EQ(p[2].addr, 0x2a6bdu);
  EXPECT_EQ(p[2].percent, 13);
  EXPECT_EQ(p[22].addr, 0xa1ef5u);
  EXPECT_EQ(p[22].percent, 100);
}

TEST(WriteProgress, UncompressedStepsBy16K) {
  Bytes data(0x4000 * 32 - 100, 0xAB);
  auto p = write_progress(0x10000, data, {}, false);
  ASSERT_EQ(p.size(), 32u);
  EXPECT_EQ(p[1].addr, 0x14000u);
  EXPECT_EQ(p[0].percent, 3);
  EXPECT_EQ(p[7].percent, 25);
  EXPECT_EQ(p[31].percent, 100);
}

TEST(WriteFlash, SeedCommandLinePrintsEsptoolLines) {
  MemFlash f(4u << 20);
  Bytes table(3072, 0xFF);
  table[0] = 0xAA;
  table[1] = 0x50;
  WriteFlashOptions opt;
  opt.flash_mode = "dio";
  opt.flash_freq = "40m";
  opt.flash_size = "4MB";
  opt.baud = 460800;  // the seed's -b 460800
  auto r = write(f,
                 {{0x8000, "partition_table/partition-table.bin", table},
                  {0xd000, "ota_data_initial.bin", Bytes(8192, 0xFF)}},
                 opt);
  ASSERT_TRUE(r.result) << r.result.error().message();
  std::vector<std::string> want = {
      "Configuring flash size...",
      "Flash will be erased from 0x00008000 to 0x00008fff...",
      "Flash will be erased from 0x0000d000 to 0x0000efff...",
  };
  EXPECT_EQ(std::vector<std::string>(r.lines.begin(), r.lines.begin() + 3), want);
  EXPECT_TRUE(has(r, "Compressed 8192 bytes to 31..."));
  EXPECT_TRUE(has(r, "Writing at 0x0000d000... (100 %)"));
  // The seed: "in 0.0 seconds (effective 14189.4 kbit/s)"; the modelled time gives the same form.
  EXPECT_TRUE(
      has(r, "Wrote 8192 bytes (31 compressed) at 0x0000d000 in 0.0 seconds (effective 11430.8 kbit/s)..."));
  EXPECT_TRUE(has(r, "Hash of data verified."));
  EXPECT_EQ(r.lines.back(), "Hard resetting via RTS pin...");
  EXPECT_EQ(at(f, 0x8000, 2), (Bytes{0xAA, 0x50}));
}

TEST(WriteFlash, ErasesWholeSectorsAroundUnalignedAddress) {
  MemFlash f(0x20000);
  ASSERT_TRUE(f.program(0xF000, Bytes(0x1000, 0x00)));
  auto r = write(f, {{0xFC00, "one_kb.bin", Bytes(1024, 0x11)}});
  ASSERT_TRUE(r.result);
  EXPECT_TRUE(
      has(r,
          "WARNING: Flash address 0x0000fc00 is not aligned to a 0x1000 byte flash sector. 0xc00 bytes "
          "before this address will be erased."));
  EXPECT_TRUE(has(r, "Flash will be erased from 0x0000f000 to 0x0000ffff..."));
  EXPECT_EQ(at(f, 0xF000, 0xC00), Bytes(0xC00, 0xFF));  // the bytes before it in the sector became FF
  EXPECT_EQ(at(f, 0xFC00, 1024), Bytes(1024, 0x11));
}

TEST(WriteFlash, OverlappingSectorsAreRefusedBeforeAnythingIsWritten) {
  MemFlash f(0x20000);
  auto r = write(f, {{0xd00, "a.bin", Bytes(1024, 0)}, {0x1d00, "b.bin", Bytes(1024, 0)}});
  ASSERT_FALSE(r.result);
  EXPECT_EQ(r.result.error().message(), "Detected overlap at address: 0x1d00 for file: b.bin");
  EXPECT_TRUE(r.lines.empty());
  EXPECT_EQ(at(f, 0, 0x3000), Bytes(0x3000, 0xFF));
  auto same = write(f, {{0x0, "a.bin", Bytes(10, 0)}, {0x0, "b.bin", Bytes(10, 0)}});
  EXPECT_EQ(same.result.error().message(), "Detected overlap at address: 0x0 for file: b.bin");
  EXPECT_TRUE(write(f, {{0x0, "a.bin", Bytes(1024, 0)}, {0x2000, "b.bin", Bytes(1024, 0)}}).result);
}

TEST(WriteFlash, FileThatDoesNotFitIsFatalWithDecimalNumbers) {
  MemFlash f(4u << 20);
  auto r = write(f, {{0x3FFFF0, "big.bin", Bytes(32, 0)}});
  ASSERT_FALSE(r.result);
  EXPECT_EQ(r.result.error().message(),
            "File big.bin (length 32) at offset 4194288 will not fit in 4194304 bytes of flash. Change the "
            "--flash_size argument, or flashing address.");
  WriteFlashOptions opt;
  opt.flash_size = "1MB";
  auto smaller = write(f, {{0x100000, "x.bin", Bytes(4, 0)}}, opt);
  ASSERT_FALSE(smaller.result);
  EXPECT_NE(smaller.result.error().message().find("will not fit in 1048576 bytes"), std::string::npos);
}

TEST(WriteFlash, EmptyFileIsSkippedWithAWarning) {
  MemFlash f(0x20000);
  auto r = write(f, {{0x10000, "zero.bin", {}}});
  ASSERT_TRUE(r.result);
  EXPECT_TRUE(has(r, "Flash will be erased from 0x00010000 to 0x0000ffff..."));
  EXPECT_TRUE(has(r, "WARNING: File zero.bin is empty"));
}

TEST(WriteFlash, PadsToFourBytesWithFF) {
  MemFlash f(0x20000);
  auto r = write(f, {{0x1000, "odd.bin", Bytes{1, 2, 3, 4, 5}}});
  ASSERT_TRUE(r.result);
  EXPECT_TRUE(has(r, "Compressed 8 bytes to 16..."));
  EXPECT_EQ(at(f, 0x1000, 8), (Bytes{1, 2, 3, 4, 5, 0xFF, 0xFF, 0xFF}));
}

TEST(WriteFlash, PatchesTheEsp32BootloaderHeader) {
  OTA32_REQUIRE_TESTDATA();
  auto bl = read_file(testing::testdata_dir() / "images" / "bootloader_esp32.bin");
  ASSERT_TRUE(bl);
  MemFlash f(4u << 20);
  WriteFlashOptions opt;
  opt.flash_mode = "dio";
  opt.flash_freq = "40m";
  opt.flash_size = "4MB";
  auto r = write(f, {{0x1000, "bootloader/bootloader.bin", *bl}}, opt);
  ASSERT_TRUE(r.result) << r.result.error().message();
  EXPECT_EQ(at(f, 0x1002, 2), (Bytes{0x02, 0x20}));
  if ((*bl)[2] != 0x02 || (*bl)[3] != 0x20) {
    EXPECT_TRUE(has(r, "Flash params set to 0x0220"));
  }
  EXPECT_FALSE(has(r, "SHA digest in image updated"));  // hash_appended = 0 in this one
  // Not at the bootloader offset: never patched.
  MemFlash g(4u << 20);
  auto app = write(g, {{0x10000, "b.bin", *bl}}, opt);
  EXPECT_EQ(at(g, 0x10000, bl->size()), *bl);
}

TEST(WriteFlash, C3BootloaderGetsItsDigestRecomputed) {
  OTA32_REQUIRE_TESTDATA();
  auto bl = read_file(testing::testdata_dir() / "images" / "bootloader_esp32c3.bin");
  ASSERT_TRUE(bl);
  MemFlash f(4u << 20);
  WriteFlashOptions opt;
  opt.flash_mode = "dio";
  opt.flash_freq = "80m";
  opt.flash_size = "4MB";
  opt.chip_revision = 4;
  auto r = write(f, {{0x0, "bootloader.bin", *bl}}, opt, find_chip("esp32c3"));
  ASSERT_TRUE(r.result) << r.result.error().message();
  EXPECT_TRUE(has(r, "SHA digest in image updated"));
  Bytes written = at(f, 0, bl->size());
  auto img = parse_image(written);
  ASSERT_TRUE(img);
  VerifyOptions vo;
  vo.chip = find_chip("esp32c3");
  EXPECT_TRUE(verify_image(*img, written, vo)) << "the patched image must still verify";
}

TEST(WriteFlash, NotABootloaderImageAtTheOffsetIsLeftAlone) {
  MemFlash f(0x20000);
  WriteFlashOptions opt;
  opt.flash_mode = "dio";
  auto r = write(f, {{0x1000, "junk.bin", Bytes(64, 0x12)}}, opt);
  ASSERT_TRUE(r.result);
  EXPECT_TRUE(has(r,
                  "Warning: Image file at 0x1000 doesn't look like an image file, so not changing any flash "
                  "settings."));
}

TEST(WriteFlash, ImageForAnotherChipIsRefusedUnlessForced) {
  OTA32_REQUIRE_TESTDATA();
  auto s2 = read_file(testing::testdata_dir() / "images" / "esp_idf_blink_esp32s2.bin");
  ASSERT_TRUE(s2);
  MemFlash f(4u << 20);
  auto r = write(f, {{0x10000, "blink.bin", *s2}});
  ASSERT_FALSE(r.result);
  EXPECT_NE(r.result.error().message().find("blink.bin is not an ESP32 image"), std::string::npos);
  EXPECT_NE(r.result.error().message().find("Use --force to flash anyway."), std::string::npos);
  WriteFlashOptions opt;
  opt.force = true;
  EXPECT_TRUE(write(f, {{0x10000, "blink.bin", *s2}}, opt).result);
}

TEST(WriteFlash, UnsupportedFrequencyIsFatal) {
  MemFlash f(0x20000);
  WriteFlashOptions opt;
  opt.flash_freq = "33m";
  auto r = write(f, {{0x1000, "a.bin", Bytes(4, 0)}}, opt);
  ASSERT_FALSE(r.result);
  EXPECT_EQ(
      r.result.error().message(),
      "Flash frequency '33m' is not supported by this chip type. Supported frequencies: 80m, 40m, 26m, 20m");
}

TEST(WriteFlash, AfterPicksEsptoolsLastLine) {
  const std::pair<const char*, const char*> cases[] = {{"hard_reset", "Hard resetting via RTS pin..."},
                                                       {"soft_reset", "Soft resetting..."},
                                                       {"no_reset", "Staying in bootloader."},
                                                       {"no_reset_stub", "Staying in flasher stub."}};
  for (const auto& [after, line] : cases) {
    MemFlash f(0x20000);
    WriteFlashOptions opt;
    opt.after = after;
    auto r = write(f, {{0x1000, "a.bin", Bytes(4, 0)}}, opt);
    ASSERT_TRUE(r.result) << after;
    EXPECT_EQ(r.lines.back(), line) << after;
  }
}

TEST(WriteFlash, UnknownAfterIsRefusedBeforeTheFlashIsTouched) {
  MemFlash f(0x20000);
  WriteFlashOptions opt;
  opt.after = "bogus";
  auto r = write(f, {{0x1000, "a.bin", Bytes(4, 0)}}, opt);
  ASSERT_FALSE(r.result);
  EXPECT_EQ(r.result.error().message(),
            "--after: 'bogus' is not one of hard_reset, soft_reset, no_reset, no_reset_stub");
  Bytes got(4);
  ASSERT_TRUE(f.read(0x1000, got));
  EXPECT_EQ(got, Bytes(4, 0xFF));
}

TEST(WriteFlash, VerifyCatchesAFlashThatLies) {
  // A power cut in the middle: the write fails with power_lost, not with a silent success.
  MemFlash f(0x40000);
  FaultFlash ff(f, 3);
  ff.cut_power_at(1);
  WriteFlashOptions opt;
  auto plan = plan_write_flash(esp32(), f.size(), {{0x10000, "a.bin", Bytes(0x8000, 0x12)}}, opt);
  ASSERT_TRUE(plan);
  auto r = run_write_flash(ff, *plan, opt, [](const std::string&) {});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::power_lost);
}

TEST(WriteFlash, UsesTheStubsEraseUnits) {
  MemFlash f(0x40000);
  FaultFlash ff(f);
  WriteFlashOptions opt;
  auto plan = plan_write_flash(esp32(), f.size(), {{0xF000, "a.bin", Bytes(0x12000, 0x12)}}, opt);
  ASSERT_TRUE(plan);
  ASSERT_TRUE(run_write_flash(ff, *plan, opt, [](const std::string&) {}));
  std::vector<std::string> erases;
  for (const auto& op : ff.log()) {
    if (op.kind == FlashOp::Kind::erase) erases.push_back(to_string(op));
  }
  // 0xF000: one sector; 0x10000: a 64 KiB block (16 sectors remain); then sectors up to 0x21000.
  ASSERT_GE(erases.size(), 3u);
  EXPECT_EQ(erases[0], "erase 0x0000f000 +0x1000");
  EXPECT_EQ(erases[1], "erase 0x00010000 +0x10000");
  EXPECT_EQ(erases.back(), "erase 0x00020000 +0x1000");
  EXPECT_EQ(at(f, 0xF000, 0x12000), Bytes(0x12000, 0x12));
}

}  // namespace
}  // namespace ota32
