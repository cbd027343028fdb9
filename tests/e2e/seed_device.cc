#include "e2e/seed_device.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/bytes.h"
#include "core/file_io.h"
#include "test_support.h"

namespace ota32::testing {

namespace fs = std::filesystem;

const char* const kSeedPartitionsCsv =
    "# Name,   Type, SubType, Offset,   Size, Flags\n"
    "nvs,      data, nvs,     0x9000,  0x4000,\n"
    "otadata,  data, ota,     0xd000,  0x2000,\n"
    "phy_init, data, phy,     0xf000,  0x1000,\n"
    "factory,  app,  factory, 0x10000, 1M,\n"
    "ota_0,    app,  ota_0,   ,        1M,\n"
    "ota_1,    app,  ota_1,   ,        1M,\n";

void run_ota32_ok(const std::vector<std::string>& args, ProcessResult* out) {
  auto r = run_ota32(args);
  ASSERT_EQ(r.exit_code, 0) << args[0] << " " << args[1] << ": " << r.err << r.out;
  if (out) *out = r;
}

void flash_seed_device(const fs::path& dir, const fs::path& dev, const fs::path& factory_app,
                       const std::vector<std::string>& new_args) {
  auto pt = dir / "partition-table.bin";
  if (!fs::exists(pt)) {
    ASSERT_TRUE(write_file_atomic(dir / "partitions.csv", std::string_view(kSeedPartitionsCsv)));
    ASSERT_NO_FATAL_FAILURE(
        run_ota32_ok({"part", "csv2bin", (dir / "partitions.csv").string(), pt.string()}));
    ASSERT_TRUE(write_file_atomic(dir / "ota_data_initial.bin", Bytes(0x2000, 0xFF)));
  }
  std::vector<std::string> create = {"device", "new", dev.string(), "--chip", "esp32"};
  create.insert(create.end(), new_args.begin(), new_args.end());
  ASSERT_NO_FATAL_FAILURE(run_ota32_ok(create));
  run_ota32_ok({"device", "flash", dev.string(), "0x1000",
                (testdata_dir() / "images" / "bootloader_esp32.bin").string(), "0x8000", pt.string(),
                "0xd000", (dir / "ota_data_initial.bin").string(), "0x10000", factory_app.string()});
}

std::string run_device(const fs::path& dev, int expect_exit) {
  auto r = run_ota32({"device", "run", dev.string(), "--max-boots", "6"});
  EXPECT_EQ(r.exit_code, expect_exit) << r.err;
  return r.out;
}

std::string booted_app(const fs::path& dev) {
  auto r = run_ota32({"device", "boot", dev.string(), "--json"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out, nullptr, false);
  if (j.is_discarded()) return "?";
  return j.value("partition", std::string("?")) + " " + j.value("version", std::string("?"));
}

}  // namespace ota32::testing
