// Every reader of the ota32 binary refuses what cannot be the thing it reads before reading it: a sparse 3 GB
// "partition table" or /dev/zero as an image fail at once with one line naming the file and the limit.
// Non-regular inputs (a pipe) still work below the limit.
#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;

// A sparse file of `size` bytes (no disk blocks), starting with `head`.
void make_sparse(const fs::path& p, uint64_t size, const std::string& head = {}) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, head.data(), head.size()), static_cast<ssize_t>(head.size()));
  ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
  ::close(fd);
}

constexpr const char* kCsv = "nvs,data,nvs,0x9000,0x4000,\nfactory,app,factory,0x10000,1M,\n";

TEST(CliInput, OversizedRegularFilesAreRefusedBeforeReading) {
  TempDir tmp;
  const std::string big = (tmp / "big.bin").string();
  make_sparse(big, 3ull << 30, "\xaa\x50");
  const std::string table_err = "ota32: " + big +
                                ": 3221225472 bytes: larger than a partition table (CSV or binary) can be "
                                "(1048576 bytes at most)\n";
  const std::string image_err =
      "ota32: " + big +
      ": 3221225472 bytes: larger than an image for the largest flash (128MB) can be "
      "(134217728 bytes at most)\n";
  const std::string key_err = "ota32: " + big +
                              ": 3221225472 bytes: larger than a key or key digest file can be "
                              "(1048576 bytes at most)\n";
  ASSERT_TRUE(write_file_atomic(tmp / "t.csv", std::string(kCsv)));
  ASSERT_TRUE(write_file_atomic(tmp / "ota.bin", std::string(8192, '\xff')));
  struct Case {
    std::vector<std::string> args;
    std::string err;
  } cases[] = {
      {{"part", "info", big}, table_err},
      {{"part", "bin2csv", big}, table_err},
      {{"part", "csv2bin", big, (tmp / "out.bin").string()}, table_err},
      {{"otadata", "read", (tmp / "ota.bin").string(), "--partitions", big}, table_err},
      {{"otadata", "read", big, "--partitions", (tmp / "t.csv").string(), "--flash-image"}, image_err},
      {{"otadata", "switch", big, "--slot", "0", "--partitions", (tmp / "t.csv").string()}, image_err},
      {{"image", "info", big}, image_err},
      {{"image", "info", "--json", big}, image_err},
      {{"image", "verify", big}, image_err},
      {{"image", "elf2image", big, "--chip", "esp32", "-o", (tmp / "out.bin").string()},
       "ota32: " + big +
           ": 3221225472 bytes: larger than an ELF file ota32 converts can be (536870912 bytes at most)\n"},
      {{"sign", "info", big}, image_err},
      {{"sign", "digest", big, "-o", (tmp / "out.bin").string()}, key_err},
      {{"sign", "verify", "--key", big, (tmp / "ota.bin").string()}, key_err},
      {{"sign", "sign", "--key", big, (tmp / "ota.bin").string(), "-o", (tmp / "out.bin").string()}, key_err},
  };
  for (const auto& c : cases) {
    auto r = run_ota32(c.args);
    EXPECT_EQ(r.exit_code, 1) << c.args[0] << " " << c.args[1];
    EXPECT_EQ(r.err, c.err) << c.args[0] << " " << c.args[1];
    EXPECT_EQ(r.out, "") << c.args[0] << " " << c.args[1];
  }
  EXPECT_FALSE(fs::exists(tmp / "out.bin"));
}

TEST(CliInput, FileToFlashLargerThanTheLargestFlash) {
  TempDir tmp;
  auto n = run_ota32({"device", "new", (tmp / "dev").string()});
  ASSERT_EQ(n.exit_code, 0) << n.err;
  auto before = read_file(tmp / "dev" / "flash.bin");
  const std::string big = (tmp / "big.bin").string();
  make_sparse(big, (128ull << 20) + 1, "\xe9");
  auto r = run_ota32({"device", "flash", (tmp / "dev").string(), "0x10000", big});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: " + big +
                       ": 134217729 bytes: larger than an image for the largest flash (128MB) can be "
                       "(134217728 bytes at most)\n");
  EXPECT_EQ(read_file(tmp / "dev" / "flash.bin").value(), before.value());
  r = run_ota32({"device", "powercut-sweep", (tmp / "dev").string(), "--image", big});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: " + big +
                       ": 134217729 bytes: larger than an image for the largest flash (128MB) can be "
                       "(134217728 bytes at most)\n");
  auto efuse = read_file(tmp / "dev" / "efuse.json");
  make_sparse(big, (1ull << 20) + 1);
  r = run_ota32({"device", "efuse", (tmp / "dev").string(), "burn-key-digest", big});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "ota32: " + big +
                ": 1048577 bytes: larger than a key or key digest file can be (1048576 bytes at most)\n");
  EXPECT_EQ(read_file(tmp / "dev" / "efuse.json").value(), efuse.value());
  EXPECT_EQ(read_file(tmp / "dev" / "flash.bin").value(), before.value());
}

TEST(CliInput, BinaryTableLongerThanItsFlashArea) {
  TempDir tmp;
  auto bin = tmp / "t.bin";
  ASSERT_TRUE(write_file_atomic(tmp / "t.csv", std::string(kCsv)));
  ASSERT_EQ(run_ota32({"part", "csv2bin", "-q", (tmp / "t.csv").string(), bin.string()}).exit_code, 0);
  auto table = read_file(bin).value();
  ASSERT_EQ(table.size(), 3072u);
  // A whole 4 KiB sector: gen_esp32part would read up to the end-of-table row; ota32 refuses it.
  Bytes sector = table;
  sector.resize(4096, 0xff);
  ASSERT_TRUE(write_file_atomic(tmp / "sector.bin", sector));
  auto r = run_ota32({"part", "info", (tmp / "sector.bin").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: " + (tmp / "sector.bin").string() +
                       ": 4096 bytes: larger than a binary partition table can be (3072 bytes at most)\n");
  r = run_ota32({"part", "info", bin.string()});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(CliInput, EndlessDeviceIsCutAtTheLimit) {
  auto r = run_ota32({"part", "info", "/dev/zero"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err,
            "ota32: /dev/zero: more than 1048576 bytes: larger than a partition table (CSV or binary) can be "
            "(1048576 bytes at most)\n");
  r = run_ota32({"image", "verify", "/dev/zero"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(
      r.err,
      "ota32: /dev/zero: more than 134217728 bytes: larger than an image for the largest flash (128MB) can "
      "be (134217728 bytes at most)\n");
}

TEST(CliInput, PipesBelowTheLimitStillWork) {
  auto r = run_ota32({"part", "csv2bin", "-q", "/dev/stdin", "-"}, kCsv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.size(), 3072u);
  r = run_ota32({"part", "info", "/dev/stdin"}, std::string(kCsv) + std::string(2u << 20, '#'));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(
      r.err,
      "ota32: /dev/stdin: more than 1048576 bytes: larger than a partition table (CSV or binary) can be "
      "(1048576 bytes at most)\n");
}

}  // namespace
}  // namespace ota32::testing
