// The seed's device for end-to-end tests of the real binaries: the seed's partition table (factory + two
// 1M OTA slots), a real ESP32 bootloader from the shared testdata, blank otadata and a factory app, flashed
// with `ota32 device flash` like `idf.py flash`; and the two questions tests ask of it.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "e2e/run_process.h"

namespace ota32::testing {

extern const char* const kSeedPartitionsCsv;

// Runs ota32 with `args` and fails the test (fatally) unless it exits 0; the result in *out when given.
void run_ota32_ok(const std::vector<std::string>& args, ProcessResult* out = nullptr);

// `ota32 device new DEV --chip esp32 <new_args>`, then flashes the bootloader, the seed's table and blank
// otadata (made once in `dir`: partitions.csv, partition-table.bin, ota_data_initial.bin) and `factory_app`
// at 0x10000. Needs the shared testdata (check OTA32_REQUIRE_TESTDATA first).
void flash_seed_device(const std::filesystem::path& dir, const std::filesystem::path& dev,
                       const std::filesystem::path& factory_app, const std::vector<std::string>& new_args);

// `ota32 device run DEV --max-boots 6`, expecting `expect_exit`; its stdout.
std::string run_device(const std::filesystem::path& dev, int expect_exit = 0);

// What `ota32 device boot DEV --json` starts: "<partition> <version>" ("?" for what it does not say).
std::string booted_app(const std::filesystem::path& dev);

}  // namespace ota32::testing
