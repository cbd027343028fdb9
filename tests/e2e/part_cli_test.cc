// ota32 part: the real binary against gen_esp32part.py's outputs in the shared reference data.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

std::string slurp(const std::filesystem::path& p) {
  auto t = read_text_file(p);
  return t ? *t : std::string("(unreadable " + p.string() + ")");
}

size_t count_lines(const std::string& s) { return static_cast<size_t>(std::count(s.begin(), s.end(), '\n')); }

TEST(PartCli, Csv2binAndBin2csvMatchTheTool) {
  OTA32_REQUIRE_TESTDATA();
  TempDir tmp;
  auto dir = testdata_dir() / "partitions";
  for (const char* n : {"singleapp", "two_ota", "auto_offsets", "encrypted_flags", "hex_and_decimal"}) {
    std::string csv = (dir / (std::string(n) + ".csv")).string();
    std::string out = (tmp / (std::string(n) + ".bin")).string();
    auto r = run_ota32({"part", "csv2bin", "-q", csv, out});
    ASSERT_EQ(r.exit_code, 0) << n << ": " << r.err;
    EXPECT_EQ(r.err, "") << n;
    EXPECT_EQ(slurp(out), slurp(dir / (std::string(n) + ".bin"))) << n;

    auto back = run_ota32({"part", "bin2csv", "-q", out});  // no OUT: stdout
    ASSERT_EQ(back.exit_code, 0) << n << ": " << back.err;
    EXPECT_EQ(back.out, slurp(dir / (std::string(n) + ".bin2csv.csv"))) << n;
  }
}

TEST(PartCli, StatusLinesUnlessQuiet) {
  OTA32_REQUIRE_TESTDATA();
  TempDir tmp;
  auto r = run_ota32({"part", "csv2bin", (testdata_dir() / "partitions" / "two_ota.csv").string(),
                      (tmp / "o.bin").string()});
  ASSERT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.err, "Parsing CSV input...\nVerifying table...\n");
}

TEST(PartCli, InvalidTablesFailWithOneLineAndNoOutput) {
  OTA32_REQUIRE_TESTDATA();
  TempDir tmp;
  auto dir = testdata_dir() / "partitions";
  struct Case {
    const char* name;
    const char* expected;
  } cases[] = {
      {"invalid_app_offset_misaligned",
       "invalid_app_offset_misaligned.csv line 2, offset: Partition factory invalid: Offset 0x11000 is not "
       "aligned "
       "to 0x10000"},
      {"invalid_duplicate_names", "invalid_duplicate_names.csv line 3, name: Partition names must be unique"},
      {"invalid_overlap",
       "invalid_overlap.csv line 3, offset: Partitions overlap. Partition sets offset 0x100000. Previous "
       "partition "
       "ends 0x110000"},
  };
  for (const auto& c : cases) {
    auto out = tmp / (std::string(c.name) + ".bin");
    auto r =
        run_ota32({"part", "csv2bin", "-q", (dir / (std::string(c.name) + ".csv")).string(), out.string()});
    EXPECT_EQ(r.exit_code, 1) << c.name;
    EXPECT_FALSE(std::filesystem::exists(out)) << c.name;
    // The error is the last line; warnings (the tool prints them too) may come before it.
    std::string last = r.err.substr(r.err.rfind("ota32: "));
    EXPECT_EQ(count_lines(last), 1u) << r.err;
    EXPECT_THAT(last, StartsWith("ota32: ")) << c.name;
    EXPECT_THAT(last, HasSubstr(c.expected)) << c.name;
  }
}

TEST(PartCli, ErrorInBinaryNamesTheEntry) {
  TempDir tmp;
  std::string bin(0xC00, '\xff');
  std::string row =
      std::string("\xaa\x50\x01\x02\x00\x90\x00\x00\x00\x40\x00\x00nvs", 15) + std::string(17, '\0');
  bin.replace(0, 32, row);
  bin.replace(32, 32, std::string("\xeb\xeb", 2) + std::string(30, '\x11'));
  ASSERT_TRUE(write_file_atomic(tmp / "bad.bin", std::string_view(bin)));
  auto r = run_ota32({"part", "bin2csv", "-q", (tmp / "bad.bin").string(), (tmp / "out.csv").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("bad.bin entry 1 at 0x20, md5: MD5 checksums don't match!"));
  EXPECT_EQ(count_lines(r.err), 1u);
  EXPECT_FALSE(std::filesystem::exists(tmp / "out.csv"));
}

TEST(PartCli, OptionsLikeTheTool) {
  TempDir tmp;
  ASSERT_TRUE(write_file_atomic(tmp / "t.csv", std::string_view("factory,app,factory,,0x31000\n")));
  auto in = (tmp / "t.csv").string();
  auto out = (tmp / "t.bin").string();
  auto v1 = run_ota32({"part", "csv2bin", "-q", "--secure", "v1", in, out});
  EXPECT_EQ(v1.exit_code, 1);
  EXPECT_THAT(v1.err, HasSubstr("Size 0x31000 is not aligned to 0x10000"));
  auto bare = run_ota32({"part", "csv2bin", "-q", in, out, "--secure"});
  EXPECT_EQ(bare.exit_code, 1) << "bare --secure means v1";
  EXPECT_EQ(run_ota32({"part", "csv2bin", "-q", "--secure", "v2", in, out}).exit_code, 0);
  auto no_md5 = run_ota32({"part", "csv2bin", "-q", "--disable-md5sum", "--offset", "0x9000", in, out});
  ASSERT_EQ(no_md5.exit_code, 0) << no_md5.err;
  std::string bin = slurp(out);
  ASSERT_EQ(bin.size(), 3072u);
  EXPECT_EQ(static_cast<uint8_t>(bin[32]), 0xFF);  // no MD5 row
  auto flash = run_ota32({"part", "csv2bin", "-q", "--flash-size", "1MB", "--secure", "v2", in, out});
  EXPECT_EQ(flash.exit_code, 0);
  ASSERT_TRUE(write_file_atomic(tmp / "big.csv", std::string_view("factory,app,factory,,2M\n")));
  auto big = run_ota32({"part", "csv2bin", "-q", "--flash-size", "2MB", (tmp / "big.csv").string(), out});
  EXPECT_EQ(big.exit_code, 1);
  EXPECT_THAT(big.err, HasSubstr("which does not fit in configured flash size 2MB"));
  auto extra = run_ota32({"part", "csv2bin", "-q", "--extra-partition-subtypes", "data,mine,40", "--",
                          (tmp / "t.csv").string(), out, "--secure", "v2"});
  EXPECT_EQ(extra.exit_code, 0) << extra.err;
}

TEST(PartCli, UsageErrorsExit2) {
  EXPECT_EQ(run_ota32({"part", "csv2bin", "--secure", "v3", "a.csv", "b.bin"}).exit_code, 2);
  EXPECT_EQ(run_ota32({"part", "csv2bin", "--flash-size", "3MB", "a.csv", "b.bin"}).exit_code, 2);
  auto r = run_ota32({"part", "csv2bin", "--primary-bootloader-offset", "0x8000", "a.csv", "b.bin"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err,
              HasSubstr("Unsupported configuration. Primary bootloader must be below partition table. Check "
                        "--primary-bootloader-offset=0x8000 and --offset=0x8000"));
  EXPECT_EQ(run_ota32({"part", "csv2bin", "only-one-arg.csv"}).exit_code, 2);
}

TEST(PartCli, MissingInputIsExit1) {
  TempDir tmp;
  auto r = run_ota32({"part", "csv2bin", (tmp / "nope.csv").string(), (tmp / "o.bin").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("nope.csv"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "o.bin"));
}

TEST(PartCli, HelpOnEveryCommand) {
  for (const char* c : {"csv2bin", "bin2csv", "info"}) {
    auto r = run_ota32({"part", c, "--help"});
    EXPECT_EQ(r.exit_code, 0) << c;
    EXPECT_THAT(r.out, HasSubstr("--offset")) << c;
  }
}

TEST(PartCli, InfoJson) {
  OTA32_REQUIRE_TESTDATA();
  for (const char* f : {"two_ota.csv", "two_ota.bin"}) {
    auto r = run_ota32({"part", "info", "--json", (testdata_dir() / "partitions" / f).string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["md5"], "bf25822c0fa6d8641bd930251e06b4c4");
    EXPECT_EQ(j["partitions"].size(), 6u);
    EXPECT_EQ(j["partitions"][4]["name"], "ota_0");
    EXPECT_EQ(j["partitions"][4]["offset"], 0x110000);
    EXPECT_EQ(j["otadata"], "otadata");
    EXPECT_EQ(j["ota_slots"].size(), 2u);
  }
}

TEST(PartCli, InfoText) {
  OTA32_REQUIRE_TESTDATA();
  auto r = run_ota32({"part", "info", (testdata_dir() / "partitions" / "two_ota.bin").string()});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr(" 1 otadata          OTA data         01 00 0000d000 00002000\n"));
  EXPECT_THAT(r.out, HasSubstr(" 5 ota_1            OTA app          00 11 00210000 00100000\n"));
}

}  // namespace
}  // namespace ota32::testing
