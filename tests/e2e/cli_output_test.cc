// Every output of the ota32 binary is checked: stdout on /dev/full or closed, a file
// under `ulimit -f`, a device as the output file. A failed write exits 1 with one line naming the output,
// and an output file is then absent (or unchanged), never truncated.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using S = ProcessOptions::Stdout;

constexpr const char* kCsv =
    "# Name, Type, SubType, Offset, Size, Flags\n"
    "nvs,data,nvs,0x9000,0x4000,\n"
    "otadata,data,ota,0xd000,0x2000,\n"
    "phy_init,data,phy,0xf000,0x1000,\n"
    "factory,app,factory,0x10000,1M,\n"
    "ota_0,app,ota_0,,1M,\n"
    "ota_1,app,ota_1,,1M,\n";

class CliOutput : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(write_file_atomic(tmp / "t.csv", std::string(kCsv)));
    auto r = run_ota32({"part", "csv2bin", "-q", (tmp / "t.csv").string(), (tmp / "t.bin").string()});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = run_ota32({"image", "make", "-o", (tmp / "app.bin").string(), "--chip", "esp32", "--project", "p",
                   "--version", "1", "--size", "96K"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_TRUE(write_file_atomic(tmp / "ota.bin", std::string(8192, '\xff')));
  }
  ProcessResult run(const std::vector<std::string>& args, S to, long long fsize = -1) {
    ProcessOptions o;
    o.stdout_to = to;
    o.stdout_file = tmp / "stdout.txt";
    o.file_size_limit = fsize;
    o.cwd = tmp.path();
    return run_ota32(args, o);
  }
  // Files in the directory besides the inputs: no temporary file may be left behind.
  std::vector<std::string> extra_files() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(tmp.path())) {
      auto n = e.path().filename().string();
      if (n != "t.csv" && n != "t.bin" && n != "app.bin" && n != "ota.bin" && n != "stdout.txt")
        names.push_back(n);
    }
    return names;
  }
  TempDir tmp;
};

// Commands that print to stdout: small outputs fail at the final flush, large ones in the middle.
const std::vector<std::vector<std::string>> kStdoutCommands = {
    {"part", "csv2bin", "-q", "t.csv", "-"},
    {"part", "bin2csv", "-q", "t.bin"},
    {"part", "info", "t.bin"},
    {"part", "info", "--json", "t.csv"},
    {"image", "info", "app.bin"},
    {"image", "info", "--json", "app.bin"},
    {"image", "verify", "app.bin"},
    {"image", "verify", "--json", "app.bin"},
    {"otadata", "read", "ota.bin", "--partitions", "t.csv"},
    {"otadata", "read", "ota.bin", "--partitions", "t.csv", "--json"},
    {"--help"},
    {"part", "--help"},
};

std::string joined(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& a : v) s += (s.empty() ? "" : " ") + a;
  return s;
}

TEST_F(CliOutput, StdoutOnDevFullExitsOneNamingStdout) {
  for (const auto& args : kStdoutCommands) {
    auto ok = run(args, S::pipe);
    ASSERT_EQ(ok.exit_code, 0) << joined(args) << ": " << ok.err;
    ASSERT_FALSE(ok.out.empty()) << joined(args);
    auto r = run(args, S::dev_full);
    EXPECT_EQ(r.exit_code, 1) << joined(args);
    EXPECT_EQ(r.err, "ota32: <stdout>: No space left on device\n") << joined(args);
  }
}

TEST_F(CliOutput, ClosedStdoutExitsOneNamingStdout) {
  for (const auto& args : kStdoutCommands) {
    auto r = run(args, S::closed);
    EXPECT_EQ(r.exit_code, 1) << joined(args);
    EXPECT_EQ(r.err, "ota32: <stdout>: Bad file descriptor\n") << joined(args);
  }
}

TEST_F(CliOutput, ClosedStdoutNeverBecomesTheOutputFile) {
  // With fd 1 closed, the output file's descriptor would be 1: the status lines (stderr) are fine, but any
  // stdout text would land in the file. The file holds exactly the table.
  auto r = run({"part", "csv2bin", "t.csv", "out.bin"}, S::closed);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto out = read_file(tmp / "out.bin");
  auto ref = read_file(tmp / "t.bin");
  ASSERT_TRUE(out && ref);
  EXPECT_EQ(*out, *ref);
}

TEST_F(CliOutput, StdoutOverTheFileSizeLimit) {
  auto r = run({"image", "info", "app.bin"}, S::file, 200);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: <stdout>: File too large\n");
}

TEST_F(CliOutput, OutputFileOverTheFileSizeLimitIsNotLeftBehind) {
  struct Case {
    std::vector<std::string> args;
    std::string file;
  } cases[] = {
      {{"part", "csv2bin", "-q", "t.csv", "out.bin"}, "out.bin"},
      {{"image", "make", "-o", "big.bin", "--chip", "esp32", "--project", "p", "--version", "1"}, "big.bin"},
      {{"otadata", "write", "o.bin", "--empty"}, "o.bin"},
      {{"device", "new", "dev"}, "dev/flash.bin"},
  };
  for (const auto& c : cases) {
    auto r = run(c.args, S::pipe, 1024);
    EXPECT_EQ(r.exit_code, 1) << joined(c.args);
    EXPECT_EQ(r.err, "ota32: " + c.file + ": write failed: File too large\n") << joined(c.args);
    EXPECT_FALSE(fs::exists(tmp / c.file)) << joined(c.args);
    fs::remove_all(tmp / "dev");
  }
  EXPECT_THAT(extra_files(), ::testing::IsEmpty());
}

TEST_F(CliOutput, FailedRewriteKeepsTheOldFile) {
  auto before = read_file(tmp / "ota.bin");
  auto r = run({"otadata", "switch", "ota.bin", "--slot", "0", "--partitions", "t.csv"}, S::pipe, 4096);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: ota.bin: write failed: File too large\n");
  EXPECT_EQ(read_file(tmp / "ota.bin").value(), before.value());
  EXPECT_THAT(extra_files(), ::testing::IsEmpty());
}

// Build artifacts are renamed into place without fsync (Durability::artifact): the same guarantees for a
// reader. A rewrite gives the complete new table; a rewrite that fails keeps the old file whole.
TEST_F(CliOutput, ArtifactRewriteIsCompleteOrKeepsTheOldFile) {
  ASSERT_TRUE(write_file_atomic(tmp / "out.bin", std::string(5000, 'o')));
  auto r = run({"part", "csv2bin", "-q", "t.csv", "out.bin"}, S::pipe);
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(tmp / "out.bin").value(), read_file(tmp / "t.bin").value());
  ASSERT_TRUE(write_file_atomic(tmp / "out.bin", std::string(5000, 'o')));
  r = run({"part", "csv2bin", "-q", "t.csv", "out.bin"}, S::pipe, 1024);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: out.bin: write failed: File too large\n");
  EXPECT_EQ(read_file(tmp / "out.bin").value(), Bytes(5000, 'o'));
  fs::remove(tmp / "out.bin");
  EXPECT_THAT(extra_files(), ::testing::IsEmpty());
}

TEST_F(CliOutput, DeviceAsOutputFileIsWrittenNotReplaced) {
  // `csv2bin t.csv /dev/full`: the device is written to (and the write fails), never renamed over.
  auto r = run({"part", "csv2bin", "-q", "t.csv", "/dev/full"}, S::pipe);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: /dev/full: write failed: No space left on device\n");
  EXPECT_TRUE(fs::is_character_file("/dev/full"));
  r = run({"part", "csv2bin", "-q", "t.csv", "/dev/null"}, S::pipe);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(fs::is_character_file("/dev/null"));
  r = run({"part", "csv2bin", "-q", "t.csv", "/dev/stdout"}, S::pipe);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.size(), 3072u);
}

TEST_F(CliOutput, DirectoryAsOutputFile) {
  fs::create_directory(tmp / "d");
  auto r = run({"part", "csv2bin", "-q", "t.csv", "d"}, S::pipe);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err, "ota32: d: is a directory, not a file\n");
}

}  // namespace
}  // namespace ota32::testing
