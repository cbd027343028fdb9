// The ESP-IDF developer's workflow through the built binary: `device flash --build` on an ESP-IDF v5.5.5
// build directory, the seed's esptool line unchanged, @FILE argument files, read_flash / erase_flash /
// erase_region / merge_bin / image_info, and `device set`.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "boot/test_images.h"
#include "core/file_io.h"
#include "device/idf_build_dir.h"
#include "e2e/run_process.h"
#include "format/image_make.h"
#include "test_support.h"

namespace ota32 {
namespace {

using testing::run_ota32;

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

struct Build {
  testing::TempDir tmp;
  std::filesystem::path build() const { return tmp / "build"; }
  std::string dev() const { return (tmp / "dev").string(); }

  explicit Build(testing::IdfBuildDir b = make_default(), const std::string& app_chip = "esp32") {
    MakeBootloaderOptions bo;
    bo.chip = find_chip(app_chip);
    MakeImageOptions ao;
    ao.chip = find_chip(app_chip);
    ao.project = "simple_ota";
    ao.version = "1";
    ao.size = 200 * 1024;
    EXPECT_TRUE(testing::write_idf_build_dir(build(), b, *make_bootloader_image(bo),
                                             testing::seed_partition_table(), Bytes(8192, 0xFF),
                                             *make_app_image(ao)));
  }
  static testing::IdfBuildDir make_default() {
    testing::IdfBuildDir b;
    b.flash_size = "4MB";  // the seed's table reaches 0x310000
    return b;
  }
  Bytes flash() const { return *read_file(tmp / "dev" / "flash.bin"); }
};

TEST(EsptoolCli, DeviceNewAndFlashFromTheBuildDirectoryBoot) {
  Build b;
  auto n = run_ota32({"device", "new", b.dev(), "--build", b.build().string(), "--mac", "10:52:1c:67:b1:10"});
  ASSERT_EQ(n.exit_code, 0) << n.err;
  EXPECT_TRUE(contains(n.out, "ESP32 (revision v1.0), 4M flash")) << n.out;
  auto f = run_ota32({"device", "flash", b.dev(), "--build", b.build().string()});
  ASSERT_EQ(f.exit_code, 0) << f.err;
  // What idf.py runs, then esptool v4.8.1's preamble at idf.py's 460800 baud.
  EXPECT_TRUE(
      contains(f.out,
               "esptool.py --chip esp32 -b 460800 --before=default_reset --after=hard_reset write_flash "
               "--flash_mode dio --flash_freq 40m --flash_size 4MB 0x1000 bootloader/bootloader.bin "
               "0x10000 simple_ota.bin 0x8000 partition_table/partition-table.bin 0xd000 "
               "ota_data_initial.bin\nesptool.py v4.8.1\n"))
      << f.out;
  EXPECT_TRUE(contains(f.out,
                       "Chip is ESP32-D0WDQ6 (revision v1.0)\nFeatures: WiFi, BT, Dual Core, 240MHz, VRef "
                       "calibration in efuse, Coding Scheme None\nCrystal is 40MHz\nMAC: 10:52:1c:67:b1:10\n"
                       "Uploading stub...\nRunning stub...\nStub running...\nChanging baud rate to 460800\n"
                       "Changed.\nConfiguring flash size...\n"))
      << f.out;
  EXPECT_TRUE(contains(f.out, "Flash params set to 0x0220\n")) << f.out;  // the synthetic bootloader is 2MB
  EXPECT_TRUE(contains(f.out, "(effective ")) << f.out;
  EXPECT_TRUE(contains(f.out, "\nLeaving...\nHard resetting via RTS pin...\n"));
  auto boot = run_ota32({"device", "boot", b.dev()});
  ASSERT_EQ(boot.exit_code, 0) << boot.out << boot.err;
  EXPECT_TRUE(contains(boot.out, "boot: Loaded app from partition at offset 0x10000\n")) << boot.out;
  EXPECT_TRUE(contains(boot.out, "SPI Flash Size : 4MB")) << boot.out;
}

TEST(EsptoolCli, TheSeedsEsptoolLineWorksUnchanged) {
  Build b;
  ASSERT_EQ(run_ota32({"device", "new", b.dev()}).exit_code, 0);
  const std::vector<std::string> seed = {"--chip",
                                         "esp32",
                                         "-p",
                                         "/dev/ttyUSB0",
                                         "-b",
                                         "460800",
                                         "--before=default_reset",
                                         "--after=hard_reset",
                                         "write_flash",
                                         "--flash_mode",
                                         "dio",
                                         "--flash_freq",
                                         "40m",
                                         "--flash_size",
                                         "4MB",
                                         "0x8000",
                                         "partition_table/partition-table.bin",
                                         "0xd000",
                                         "ota_data_initial.bin",
                                         "0x1000",
                                         "bootloader/bootloader.bin",
                                         "0x10000",
                                         "simple_ota.bin"};
  for (const char* how : {"flash", "esptool"}) {
    std::vector<std::string> args = {"device", how, "../dev"};
    args.insert(args.end(), seed.begin(), seed.end());
    auto r = run_ota32(args, {}, b.build());  // idf.py runs esptool in the build directory
    ASSERT_EQ(r.exit_code, 0) << how << ": " << r.err;
    EXPECT_TRUE(
        contains(r.out, "esptool.py v4.8.1\nSerial port /dev/ttyUSB0\nConnecting...\nChip is ESP32-D0WDQ6"))
        << r.out;
    EXPECT_TRUE(contains(r.err, "ota32: note: -p /dev/ttyUSB0: no serial port is opened")) << r.err;
    EXPECT_TRUE(contains(r.out,
                         "Compressed 3072 bytes to 138...\nWriting at 0x00008000... (100 %)\n"
                         "Wrote 3072 bytes (138 compressed) at 0x00008000 in 0.0 seconds (effective "))
        << r.out;
  }
  auto boot = run_ota32({"device", "boot", b.dev()});
  EXPECT_EQ(boot.exit_code, 0) << boot.out;
  auto wrong = run_ota32({"device", "flash", b.dev(), "--chip", "esp32c3", "0x10000", "x.bin"});
  EXPECT_EQ(wrong.exit_code, 1);
  auto wrong2 = run_ota32(
      {"device", "flash", b.dev(), "--chip", "esp32c3", "0x10000", (b.build() / "simple_ota.bin").string()});
  EXPECT_EQ(wrong2.exit_code, 1);
  EXPECT_TRUE(contains(wrong2.err, "ota32: This chip is ESP32 not ESP32-C3. Wrong --chip argument?"))
      << wrong2.err;
}

TEST(EsptoolCli, ArgumentFilesAsEsptoolReadsThem) {
  Build b;
  ASSERT_EQ(run_ota32({"device", "new", b.dev()}).exit_code, 0);
  // In the build directory, as idf.py does it.
  auto all =
      run_ota32({"device", "flash", "../dev", "-b", "460800", "write_flash", "@flash_args"}, {}, b.build());
  ASSERT_EQ(all.exit_code, 0) << all.err;
  EXPECT_TRUE(contains(all.out,
                       "esptool.py -b 460800 write_flash --flash_mode dio --flash_freq 40m --flash_size "
                       "4MB 0x1000 bootloader/bootloader.bin 0x10000 simple_ota.bin"))
      << all.out;
  // From the project directory: the names in the file are found beside it.
  auto app = run_ota32({"device", "flash", "dev", "@build/flash_app_args"}, {}, b.tmp.path());
  ASSERT_EQ(app.exit_code, 0) << app.err;
  EXPECT_TRUE(contains(app.out, "Writing at 0x00010000...")) << app.out;
  EXPECT_FALSE(contains(app.out, "0x00001000"));
  auto bl = run_ota32({"device", "esptool", "dev", "write_flash", "@build/flash_bootloader_args"}, {},
                      b.tmp.path());
  ASSERT_EQ(bl.exit_code, 0) << bl.err;
  EXPECT_TRUE(contains(bl.out, "Wrote ")) << bl.out;
  auto missing = run_ota32({"device", "flash", "dev", "@build/no_such_args"}, {}, b.tmp.path());
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_TRUE(contains(missing.err, "@build/no_such_args")) << missing.err;
  EXPECT_EQ(run_ota32({"device", "boot", "dev"}, {}, b.tmp.path()).exit_code, 0);
}

TEST(EsptoolCli, ReadEraseMergeAndImageInfo) {
  Build b;
  ASSERT_EQ(run_ota32({"device", "new", b.dev(), "--build", b.build().string()}).exit_code, 0);
  ASSERT_EQ(run_ota32({"device", "flash", b.dev(), "--build", b.build().string()}).exit_code, 0);
  const Bytes flashed = b.flash();

  auto rd = run_ota32({"device", "esptool", b.dev(), "read_flash", "0", "ALL", (b.tmp / "all.bin").string()});
  ASSERT_EQ(rd.exit_code, 0) << rd.err;
  EXPECT_TRUE(contains(rd.out, "Detecting chip type... ESP32\n")) << rd.out;
  EXPECT_TRUE(contains(rd.out, "4194304 (100 %)\nRead 4194304 bytes at 0x00000000 in ")) << rd.out;
  EXPECT_TRUE(contains(rd.out, " kbit/s)...\nHard resetting via RTS pin...\n")) << rd.out;
  EXPECT_EQ(*read_file(b.tmp / "all.bin"), flashed);

  // merge_bin of the same arguments, filled to the flash size, is the flash write_flash left.
  auto m = run_ota32({"device", "esptool", "--chip", "esp32", "merge_bin", "-o", "../merged.bin",
                      "--fill-flash-size", "4MB", "@flash_args"},
                     {}, b.build());
  ASSERT_EQ(m.exit_code, 0) << m.err;
  EXPECT_TRUE(contains(m.out,
                       "esptool.py v4.8.1\nFlash params set to 0x0220\nSHA digest in image updated\n"
                       "Wrote 0x400000 bytes to file ../merged.bin, ready to flash to offset 0x0\n"))
      << m.out;
  EXPECT_EQ(*read_file(b.tmp / "merged.bin"), flashed);
  auto nochip = run_ota32({"device", "esptool", "merge_bin", "-o", "m2.bin", "@flash_args"}, {}, b.build());
  EXPECT_EQ(nochip.exit_code, 1);
  EXPECT_TRUE(contains(nochip.err, "Please specify the chip argument")) << nochip.err;
  EXPECT_FALSE(std::filesystem::exists(b.build() / "m2.bin"));

  auto info = run_ota32({"device", "esptool", b.dev(), "image_info", "0x10000"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_TRUE(contains(info.out, "esptool.py v4.8.1\nFile size: 204800 (bytes)\n")) << info.out;
  // esptool prints the descriptor's fields with their NUL padding (testdata's image_info.txt shows it).
  EXPECT_TRUE(contains(info.out, "Project name: simple_ota" + std::string(22, '\0') + "\nApp version: 1"))
      << info.out;

  auto odd = run_ota32({"device", "esptool", b.dev(), "erase_region", "0xd001", "0x1000"});
  EXPECT_EQ(odd.exit_code, 1);
  EXPECT_TRUE(contains(odd.err, "ota32: Offset to erase from must be a multiple of 4096")) << odd.err;
  EXPECT_EQ(b.flash(), flashed);
  auto er = run_ota32({"device", "esptool", b.dev(), "erase_region", "0xd000", "0x2000"});
  ASSERT_EQ(er.exit_code, 0) << er.err;
  EXPECT_TRUE(
      contains(er.out, "Erasing region (may be slow depending on size)...\nErase completed successfully in "))
      << er.out;
  Bytes after = b.flash();
  EXPECT_EQ(Bytes(after.begin() + 0x8000, after.begin() + 0x9000),
            Bytes(flashed.begin() + 0x8000, flashed.begin() + 0x9000));
  auto ef = run_ota32({"device", "esptool", b.dev(), "--after", "no_reset", "erase_flash"});
  ASSERT_EQ(ef.exit_code, 0) << ef.err;
  EXPECT_TRUE(
      contains(ef.out, "Erasing flash (this may take a while)...\nChip erase completed successfully in "))
      << ef.out;
  EXPECT_TRUE(contains(ef.out, "Staying in bootloader.\n")) << ef.out;
  EXPECT_EQ(b.flash(), Bytes(4u << 20, 0xFF));
  auto past = run_ota32({"device", "esptool", b.dev(), "read_flash", "0x3ff000", "0x2000", "x.bin"});
  EXPECT_EQ(past.exit_code, 1);
  EXPECT_TRUE(contains(past.err, "do not fit in the 4M flash")) << past.err;
}

TEST(EsptoolCli, EncryptedOrForeignBuildsAreRefusedBeforeTheFlashIsTouched) {
  testing::IdfBuildDir enc = Build::make_default();
  enc.encrypted_app = true;
  Build b(enc);
  ASSERT_EQ(run_ota32({"device", "new", b.dev()}).exit_code, 0);
  auto r = run_ota32({"device", "flash", b.dev(), "--build", b.build().string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(contains(r.err, "flasher_args.json: app: \"encrypted\" : \"true\"")) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(b.flash(), Bytes(4u << 20, 0xFF));

  testing::IdfBuildDir c3 = Build::make_default();
  c3.chip = "esp32c3";
  c3.bootloader_offset = 0;
  Build other(c3, "esp32c3");
  ASSERT_EQ(run_ota32({"device", "new", other.dev()}).exit_code, 0);
  auto w = run_ota32({"device", "flash", other.dev(), "--build", other.build().string()});
  EXPECT_EQ(w.exit_code, 1);
  EXPECT_TRUE(contains(w.err, "This chip is ESP32 not ESP32-C3. Wrong --chip argument?")) << w.err;
  auto n = run_ota32({"device", "new", (other.tmp / "c3").string(), "--build", other.build().string()});
  ASSERT_EQ(n.exit_code, 0) << n.err;
  EXPECT_TRUE(contains(n.out, "ESP32-C3")) << n.out;
  auto mix =
      run_ota32({"device", "flash", other.dev(), "--build", other.build().string(), "0x10000", "a.bin"});
  EXPECT_EQ(mix.exit_code, 1);
  EXPECT_TRUE(contains(mix.err, "give no ADDR FILE pairs")) << mix.err;
}

TEST(DeviceSet, ChangesDeviceJsonWithChecks) {
  testing::TempDir tmp;
  const std::string dev = (tmp / "dev").string();
  ASSERT_EQ(run_ota32({"device", "new", dev}).exit_code, 0);
  std::filesystem::create_directories(tmp / "data");
  ASSERT_TRUE(
      write_file_atomic(tmp / "data" / "ca_cert.pem",
                        std::string("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")));
  auto r = run_ota32({"device", "set", "dev", "ota_url=https://127.0.0.1:8070/simple_ota.bin",
                      "ca_cert=data/ca_cert.pem", "self_test_fails=3,4", "rollback=true"},
                     {}, tmp.path());
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "dev/device.json: app.ota_url = \"https://127.0.0.1:8070/simple_ota.bin\"\n"
            "dev/device.json: app.ca_cert = \"../data/ca_cert.pem\"\n"
            "dev/device.json: app.self_test_fails = [\"3\",\"4\"]\n"
            "dev/device.json: bootloader.rollback = true\n");
  auto j = nlohmann::json::parse(*read_text_file(tmp / "dev" / "device.json"));
  EXPECT_EQ(j["app"]["ca_cert"], "../data/ca_cert.pem");
  EXPECT_EQ(j["bootloader"]["rollback"], true);
  const std::string before = *read_text_file(tmp / "dev" / "device.json");

  // Any bad setting: nothing written.
  for (const auto& [kv, msg] : std::vector<std::pair<std::string, std::string>>{
           {"colour=red", "'colour' is not a device setting (one of: ota_url, "},
           {"ota_url=ftp://x/y.bin", "ota_url: 'ftp://x/y.bin' is not a URL"},
           {"rollback=maybe", "rollback: 'maybe' is not true or false"},
           {"timeout_ms=0", "timeout_ms: '0' is not a number of milliseconds (1..600000)"},
           {"ca_cert=dev/device.json", "no PEM certificate in it"},
           {"ca_cert=nope.pem", "ca_cert"},
           {"noequals", "give key=value"}}) {
    auto bad =
        run_ota32({"device", "set", "dev", "update_server=https://127.0.0.1:8070", kv}, {}, tmp.path());
    EXPECT_EQ(bad.exit_code, 1) << kv;
    EXPECT_TRUE(contains(bad.err, msg)) << kv << ": " << bad.err;
    EXPECT_EQ(*read_text_file(tmp / "dev" / "device.json"), before) << kv;
  }
  auto clear =
      run_ota32({"device", "set", dev, "update_server=https://127.0.0.1:8070", "anti_rollback=true"});
  ASSERT_EQ(clear.exit_code, 0) << clear.err;
  auto off = run_ota32({"device", "set", dev, "rollback=false"});
  EXPECT_EQ(off.exit_code, 1);
  EXPECT_TRUE(contains(off.err, "anti_rollback is on")) << off.err;
  auto unset = run_ota32({"device", "set", dev, "update_server="});
  ASSERT_EQ(unset.exit_code, 0) << unset.err;
  EXPECT_TRUE(contains(unset.out, "app.update_server = (unset)")) << unset.out;
}

TEST(DeviceSet, DeviceOtaUsesTheCaCertOfDeviceJson) {
  testing::TempDir tmp;
  const std::string dev = (tmp / "dev").string();
  ASSERT_EQ(run_ota32({"device", "new", dev}).exit_code, 0);
  ASSERT_TRUE(write_file_atomic(tmp / "bl.bin", testing::seed_bootloader()));
  ASSERT_TRUE(write_file_atomic(tmp / "pt.bin", testing::seed_partition_table()));
  ASSERT_TRUE(write_file_atomic(tmp / "app.bin", testing::seed_factory_app()));
  ASSERT_EQ(run_ota32({"device", "flash", dev, "0x1000", (tmp / "bl.bin").string(), "0x8000",
                       (tmp / "pt.bin").string(), "0x10000", (tmp / "app.bin").string()})
                .exit_code,
            0);
  const std::string url = "https://127.0.0.1:1/simple_ota.bin";  // nothing listens: the CA is used first
  auto without = run_ota32({"device", "ota", dev, url, "--timeout", "500"});
  EXPECT_EQ(without.exit_code, 1);
  EXPECT_TRUE(contains(without.err, "no CA certificate given")) << without.err;
  ASSERT_TRUE(write_file_atomic(
      tmp / "ca.pem", std::string("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")));
  ASSERT_EQ(run_ota32({"device", "set", dev, "ca_cert=" + (tmp / "ca.pem").string()}).exit_code, 0);
  auto with = run_ota32({"device", "ota", dev, url, "--timeout", "500"});
  EXPECT_EQ(with.exit_code, 1);
  EXPECT_FALSE(contains(with.err, "no CA certificate given")) << with.err;
  std::filesystem::remove(tmp / "ca.pem");
  auto gone = run_ota32({"device", "ota", dev, url});
  EXPECT_EQ(gone.exit_code, 1);
  EXPECT_TRUE(contains(gone.err, "device.json app.ca_cert")) << gone.err;
}

}  // namespace
}  // namespace ota32
