// An ESP-IDF v5.5.5 build directory as `idf.py build` leaves it for `idf.py flash`, made from synthetic
// images: bootloader/bootloader.bin, partition_table/partition-table.bin, ota_data_initial.bin, the app
// <project>.bin, and the flash argument files with ESP-IDF's exact text (components/esptool_py:
// flasher_args.json.in, and esptool_py_flash_target()'s "<options>\n<offset> <file>..." for flash_args,
// flash_app_args, flash_bootloader_args; no newline at the end, as file(GENERATE CONTENT) writes them).
#pragma once

#include <fmt/format.h>

#include <filesystem>
#include <string>
#include <vector>

#include "core/file_io.h"

namespace ota32::testing {

struct IdfBuildDir {
  std::string chip = "esp32";
  std::string project = "simple_ota";
  std::string flash_mode = "dio", flash_freq = "40m", flash_size = "2MB";
  uint32_t bootloader_offset = 0x1000;
  std::string after = "hard_reset", before = "default_reset";
  bool encrypted_app = false;  // CONFIG_SECURE_FLASH_ENCRYPTION_MODE_DEVELOPMENT marks the app encrypted
};

// Writes the build directory; false (with a test failure from the caller's checks) if a write failed.
inline bool write_idf_build_dir(const std::filesystem::path& dir, const IdfBuildDir& b,
                                const Bytes& bootloader, const Bytes& partition_table, const Bytes& otadata,
                                const Bytes& app) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(dir / "bootloader", ec);
  fs::create_directories(dir / "partition_table", ec);
  const std::string app_bin = b.project + ".bin";
  struct Entry {
    std::string name, offset, file;
    bool encrypted;
  };
  const std::string bl_off = fmt::format("{:#x}", b.bootloader_offset);
  // The order ESP-IDF adds them: bootloader, app, partition table, otadata.
  const std::vector<Entry> entries = {
      {"bootloader", bl_off, "bootloader/bootloader.bin", false},
      {"app", "0x10000", app_bin, b.encrypted_app},
      {"partition-table", "0x8000", "partition_table/partition-table.bin", false},
      {"otadata", "0xd000", "ota_data_initial.bin", false}};
  std::string files, items, flash_args;
  const std::string options = fmt::format("--flash_mode {} --flash_freq {} --flash_size {}", b.flash_mode,
                                          b.flash_freq, b.flash_size);
  flash_args = options;
  for (const auto& e : entries) {
    files += fmt::format("{}\"{}\" : \"{}\"", files.empty() ? "" : ",\n        ", e.offset, e.file);
    items +=
        fmt::format("{}\"{}\" : {{ \"offset\" : \"{}\", \"file\" : \"{}\", \"encrypted\" : \"{}\" }}",
                    items.empty() ? "" : ",\n    ", e.name, e.offset, e.file, e.encrypted ? "true" : "false");
    flash_args += fmt::format("\n{} {}", e.offset, e.file);
  }
  const std::string json = fmt::format(
      "{{\n"
      "    \"write_flash_args\" : [ \"--flash_mode\", \"{0}\",\n"
      "                           \"--flash_size\", \"{1}\",\n"
      "                           \"--flash_freq\", \"{2}\" ],\n"
      "    \"flash_settings\" : {{\n"
      "        \"flash_mode\": \"{0}\",\n"
      "        \"flash_size\": \"{1}\",\n"
      "        \"flash_freq\": \"{2}\"\n"
      "    }},\n"
      "    \"flash_files\" : {{\n"
      "        {3}\n"
      "    }},\n"
      "    {4},\n"
      "    \"extra_esptool_args\" : {{\n"
      "        \"after\"  : \"{5}\",\n"
      "        \"before\" : \"{6}\",\n"
      "        \"stub\"   : true,\n"
      "        \"chip\"   : \"{7}\"\n"
      "    }}\n"
      "}}\n",
      b.flash_mode, b.flash_size, b.flash_freq, files, items, b.after, b.before, b.chip);
  return write_file_atomic(dir / "bootloader" / "bootloader.bin", bootloader) &&
         write_file_atomic(dir / "partition_table" / "partition-table.bin", partition_table) &&
         write_file_atomic(dir / "ota_data_initial.bin", otadata) && write_file_atomic(dir / app_bin, app) &&
         write_file_atomic(dir / "flasher_args.json", json) &&
         write_file_atomic(dir / "flash_args", flash_args) &&
         write_file_atomic(dir / "flash_app_args", fmt::format("{}\n0x10000 {}", options, app_bin)) &&
         write_file_atomic(dir / "flash_bootloader_args",
                           fmt::format("{}\n{} bootloader/bootloader.bin", options, bl_off));
}

}  // namespace ota32::testing
