// esptool's command line, @FILE argument files, flasher_args.json, merge_bin and the connection preamble.
#include <gtest/gtest.h>

#include "boot/test_images.h"
#include "core/file_io.h"
#include "device/esptool_args.h"
#include "device/esptool_cmds.h"
#include "device/idf_build_dir.h"
#include "format/app_image.h"
#include "format/image_make.h"
#include "test_support.h"

namespace ota32 {
namespace {

const ChipInfo& esp32() { return *find_chip("esp32"); }

std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> w;
  size_t i = 0;
  while (i < s.size()) {
    size_t j = s.find(' ', i);
    if (j == std::string_view::npos) j = s.size();
    if (j > i) w.emplace_back(s.substr(i, j - i));
    i = j + 1;
  }
  return w;
}

TEST(EsptoolArgs, TheSeedsCommandLineParsesUnchanged) {
  // What idf.py ran in the seed, after `esptool.py`.
  auto a = parse_esptool_args(
      words("--chip esp32 -p /dev/ttyUSB0 -b 460800 --before=default_reset --after=hard_reset write_flash "
            "--flash_mode dio --flash_freq 40m --flash_size 4MB 0x8000 partition_table/partition-table.bin "
            "0xd000 ota_data_initial.bin 0x1000 bootloader/bootloader.bin 0x10000 simple_ota.bin"));
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->chip, "esp32");
  EXPECT_EQ(a->port, "/dev/ttyUSB0");
  EXPECT_EQ(a->baud, 460800u);
  EXPECT_EQ(a->write.baud, 460800u);
  EXPECT_EQ(a->before, "default_reset");
  EXPECT_EQ(a->after, "hard_reset");
  EXPECT_EQ(a->command, "write_flash");
  EXPECT_EQ(a->write.flash_mode, "dio");
  EXPECT_EQ(a->write.flash_freq, "40m");
  EXPECT_EQ(a->write.flash_size, "4MB");
  ASSERT_EQ(a->pairs.size(), 4u);
  EXPECT_EQ(a->pairs[0],
            std::make_pair(std::string("0x8000"), std::string("partition_table/partition-table.bin")));
  EXPECT_EQ(a->pairs[3], std::make_pair(std::string("0x10000"), std::string("simple_ota.bin")));
  EXPECT_FALSE(a->expanded);
}

TEST(EsptoolArgs, ShortFlashOptionsAndDefaultCommand) {
  auto a = parse_esptool_args(words("-fm qio -ff 80m -fs 8MB -u -e 0x1000 b.bin"), "write_flash");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->command, "write_flash");
  EXPECT_EQ(a->write.flash_mode, "qio");
  EXPECT_EQ(a->write.flash_freq, "80m");
  EXPECT_EQ(a->write.flash_size, "8MB");
  EXPECT_FALSE(a->write.compress);
  EXPECT_TRUE(a->write.erase_all);
  EXPECT_EQ(a->baud, 115200u);  // ESP_ROM_BAUD
}

TEST(EsptoolArgs, OtherCommandsAndTheirArguments) {
  auto r = parse_esptool_args(words("read_flash -p 0 ALL out.bin"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(r->no_progress);  // read_flash's own -p, not --port
  EXPECT_FALSE(r->port);
  EXPECT_EQ(r->positionals, (std::vector<std::string>{"0", "ALL", "out.bin"}));
  auto m = parse_esptool_args(
      words("--chip esp32 merge_bin -o m.bin -t 0x1000 --fill-flash-size 4MB 0x1000 b.bin"));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->output, "m.bin");
  EXPECT_EQ(m->target_offset, 0x1000u);
  EXPECT_EQ(m->fill_flash_size, "4MB");
  auto e = parse_esptool_args(words("erase_region 0x9000 0x4000"));
  ASSERT_TRUE(e);
  EXPECT_EQ(e->positionals.size(), 2u);
}

TEST(EsptoolArgs, BadInputIsNamed) {
  auto odd = parse_esptool_args(words("write_flash 0x1000 b.bin 0x8000"));
  ASSERT_FALSE(odd);
  EXPECT_EQ(odd.error().message(), "write_flash: '0x8000' has no file after it (give ADDR FILE pairs)");
  auto unknown = parse_esptool_args(words("write_flash --bogus 0x1000 b.bin"));
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error().message(), "write_flash: unrecognized argument '--bogus'");
  auto after = parse_esptool_args(words("--after=reboot write_flash 0x1000 b.bin"));
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().message(),
            "--after: 'reboot' is not one of hard_reset, soft_reset, no_reset, no_reset_stub");
  auto cmd = parse_esptool_args(words("flash_it"));
  ASSERT_FALSE(cmd);
  EXPECT_NE(cmd.error().message().find("'flash_it' is not an esptool command"), std::string::npos);
  auto region = parse_esptool_args(words("erase_region 0x9000"));
  ASSERT_FALSE(region);
  EXPECT_EQ(region.error().message(), "erase_region: expected ADDRESS SIZE (got 1 argument)");
  auto merge = parse_esptool_args(words("merge_bin 0x1000 b.bin"));
  ASSERT_FALSE(merge);
  EXPECT_EQ(merge.error().message(), "merge_bin: the following arguments are required: --output/-o");
}

TEST(EsptoolArgs, ArgumentFilesAreSplitLikeAShell) {
  testing::TempDir tmp;
  auto f = tmp / "flash_args";
  ASSERT_TRUE(write_file_atomic(f, std::string("--flash_mode dio --flash_freq 40m --flash_size 2MB\n"
                                               "0x1000 bootloader/bootloader.bin\n0x10000 'my app.bin'\n"
                                               "0x8000 \"part \\\"x\\\".bin\"")));
  bool expanded = false;
  auto w = expand_arg_files({"--chip", "esp32", "write_flash", "@" + f.string()}, &expanded);
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_TRUE(expanded);
  EXPECT_EQ(*w,
            (std::vector<std::string>{"--chip", "esp32", "write_flash", "--flash_mode", "dio", "--flash_freq",
                                      "40m", "--flash_size", "2MB", "0x1000", "bootloader/bootloader.bin",
                                      "0x10000", "my app.bin", "0x8000", "part \"x\".bin"}));
  auto a = parse_esptool_args({"write_flash", "@" + f.string()});
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->expanded);
  EXPECT_EQ(a->pairs.size(), 3u);
  auto missing = expand_arg_files({"@" + (tmp / "nope").string()}, nullptr);
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("@" + (tmp / "nope").string()), std::string::npos);
  ASSERT_TRUE(write_file_atomic(tmp / "bad", std::string("0x1000 'open")));
  auto bad = expand_arg_files({"@" + (tmp / "bad").string()}, nullptr);
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("line 1: No closing quotation"), std::string::npos);
}

Bytes bootloader() {
  MakeBootloaderOptions o;
  o.chip = &esp32();
  return *make_bootloader_image(o);
}

TEST(FlasherArgs, ReadsTheV555BuildDirectory) {
  testing::TempDir tmp;
  ASSERT_TRUE(testing::write_idf_build_dir(tmp / "build", {}, bootloader(), testing::seed_partition_table(),
                                           Bytes(8192, 0xFF), testing::seed_factory_app()));
  auto b = read_flasher_args(tmp / "build");
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_EQ(b->chip, "esp32");
  EXPECT_EQ(b->flash_mode, "dio");
  EXPECT_EQ(b->flash_freq, "40m");
  EXPECT_EQ(b->flash_size, "2MB");
  EXPECT_EQ(b->after, "hard_reset");
  EXPECT_EQ(b->before, "default_reset");
  ASSERT_EQ(b->files.size(), 4u);
  // flash_files' order, as flash_args lists them.
  EXPECT_EQ(b->files[0].addr, 0x1000u);
  EXPECT_EQ(b->files[0].name, "bootloader/bootloader.bin");
  EXPECT_EQ(b->files[1].addr, 0x10000u);
  EXPECT_EQ(b->files[1].name, "simple_ota.bin");
  EXPECT_EQ(b->files[2].addr, 0x8000u);
  EXPECT_EQ(b->files[3].name, "ota_data_initial.bin");
  EXPECT_EQ(b->files[3].path, tmp / "build" / "ota_data_initial.bin");
}

TEST(FlasherArgs, EncryptedImagesAndMissingFilesAreRefused) {
  testing::TempDir tmp;
  testing::IdfBuildDir enc;
  enc.encrypted_app = true;
  ASSERT_TRUE(testing::write_idf_build_dir(tmp / "build", enc, bootloader(), testing::seed_partition_table(),
                                           Bytes(8192, 0xFF), testing::seed_factory_app()));
  auto b = read_flasher_args(tmp / "build");
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code(), ErrorCode::unsupported);
  EXPECT_NE(b.error().message().find("flasher_args.json: app: \"encrypted\" : \"true\""), std::string::npos)
      << b.error().message();
  auto none = read_flasher_args(tmp / "nothing");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code(), ErrorCode::not_found);
  EXPECT_NE(none.error().message().find("is not an ESP-IDF build directory"), std::string::npos);
  ASSERT_TRUE(write_file_atomic(tmp / "build" / "flasher_args.json", std::string("{\"flash_settings\": 3}")));
  auto broken = read_flasher_args(tmp / "build");
  ASSERT_FALSE(broken);
  EXPECT_NE(broken.error().message().find("flasher_args.json: flash_settings: missing or not an object"),
            std::string::npos);
}

TEST(MergeBin, RawOutputIsSortedFilledWithFFAndNotPadded) {
  // Two files out of order, one 5 bytes long (no 4-byte padding in merge_bin), a gap and a fill.
  std::vector<FlashFile> files = {{0x3000, "b.bin", Bytes{1, 2, 3, 4, 5}},
                                  {0x1000, "a.bin", Bytes(10, 0xAA)}};
  WriteFlashOptions o;
  std::vector<std::string> lines;
  auto m = merge_bin_raw(esp32(), files, o, 0x1000, "", lines);
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->size(), 0x2000u + 5);
  EXPECT_EQ((*m)[0], 0xAA);
  EXPECT_EQ((*m)[9], 0xAA);
  EXPECT_EQ((*m)[10], 0xFF);
  EXPECT_EQ((*m)[0x1FFF], 0xFF);
  EXPECT_EQ((*m)[0x2000], 1);
  EXPECT_EQ((*m)[0x2004], 5);
  auto filled = merge_bin_raw(esp32(), files, o, 0, "64K", lines);
  ASSERT_TRUE(filled);
  EXPECT_EQ(filled->size(), 0x10000u);
  EXPECT_EQ((*filled)[0xFFFF], 0xFF);
  EXPECT_TRUE(lines.empty());
  auto before = merge_bin_raw(esp32(), files, o, 0x2000, "", lines);
  ASSERT_FALSE(before);
  EXPECT_EQ(before.error().message(),
            "Output file target offset is 0x2000. Input file offset 0x1000 is before this.");
  std::vector<FlashFile> overlap = {{0x1000, "a.bin", Bytes(10, 0)}, {0x1800, "b.bin", Bytes(10, 0)}};
  auto ov = merge_bin_raw(esp32(), overlap, o, 0, "", lines);
  ASSERT_FALSE(ov);
  EXPECT_EQ(ov.error().message(), "Detected overlap at address: 0x1800 for file: b.bin");
}

TEST(MergeBin, PatchesTheBootloaderLikeWriteFlash) {
  Bytes bl = bootloader();
  std::vector<FlashFile> files = {{0x1000, "bootloader.bin", bl}};
  WriteFlashOptions o;
  o.flash_mode = "qio";
  o.flash_freq = "80m";
  o.flash_size = "4MB";
  std::vector<std::string> lines;
  auto m = merge_bin_raw(esp32(), files, o, 0, "", lines);
  ASSERT_TRUE(m);
  EXPECT_EQ((*m)[0x1000 + 2], 0x00);  // qio
  EXPECT_EQ((*m)[0x1000 + 3], 0x2F);  // 4MB | 80m
  EXPECT_EQ(lines, (std::vector<std::string>{"Flash params set to 0x002f", "SHA digest in image updated"}));
  o.flash_size = "detect";
  EXPECT_FALSE(merge_bin_raw(esp32(), files, o, 0, "", lines));
}

TEST(EsptoolPreamble, Esp32LinesAsEsptool481PrintsThem) {
  EsptoolConnect c;
  c.port = "/dev/ttyUSB0";
  c.baud = 460800;
  c.chip_revision = 100;
  c.mac = "10:52:1c:67:b1:10";
  EXPECT_EQ(esptool_connect_lines(esp32(), c),
            (std::vector<std::string>{
                "esptool.py v4.8.1", "Serial port /dev/ttyUSB0", "Connecting...",
                "Chip is ESP32-D0WDQ6 (revision v1.0)",
                "Features: WiFi, BT, Dual Core, 240MHz, VRef calibration in efuse, Coding "
                "Scheme None",
                "Crystal is 40MHz", "MAC: 10:52:1c:67:b1:10", "Uploading stub...", "Running stub...",
                "Stub running...", "Changing baud rate to 460800", "Changed."}));
  c.baud = 115200;
  c.detect_chip = true;
  auto l = esptool_connect_lines(esp32(), c);
  EXPECT_EQ(l[3], "Detecting chip type... Unsupported detection protocol, switching and trying again...");
  EXPECT_EQ(l[4], "Connecting...");
  EXPECT_EQ(l[5], "Detecting chip type... ESP32");
  EXPECT_EQ(l.back(), "Stub running...");  // no baud change at 115200
  EXPECT_EQ(esptool_chip_description(esp32(), 300), "ESP32-D0WD-V3 (revision v3.0)");
  auto c3 = esptool_connect_lines(*find_chip("esp32c3"), c);
  EXPECT_EQ(c3[3], "Detecting chip type... ESP32-C3");
}

TEST(EsptoolPreamble, ModelledSpeedsAreNearTheSeeds) {
  // The seed at 460800 baud: 138 compressed bytes "effective 2801.9 kbit/s", 15395 -> 552.6, 514732 -> 535.5.
  auto kbit = [](uint64_t unc, uint64_t sent) {
    return unc * 8 / esptool_transfer_seconds(sent, 460800) / 1000;
  };
  EXPECT_NEAR(kbit(3072, 138), 2801.9, 300);
  EXPECT_NEAR(kbit(25024, 15395), 552.6, 15);
  EXPECT_NEAR(kbit(815728, 514732), 535.5, 2);
  EXPECT_EQ(esptool_speed_tail(815728, esptool_transfer_seconds(514732, 460800), true),
            " in 12.2 seconds (effective 535.7 kbit/s)");
  EXPECT_EQ(esptool_speed_tail(100, 0.0, true), " in 0.0 seconds");
}

}  // namespace
}  // namespace ota32
