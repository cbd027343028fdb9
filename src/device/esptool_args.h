// esptool.py's command line (v4.8.1) as the virtual device reads it: global options before the command
// (--chip, -p/--port, -b/--baud, --before, --after), the command word (write_flash, read_flash, erase_flash,
// erase_region, merge_bin, image_info) and its own options, and `@FILE` argument files (esptool's
// expand_file_arguments: every line split like a shell would, spliced in place). Also the flash
// arguments ESP-IDF leaves in a build directory (flasher_args.json), for `device flash --build`.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "device/esptool_flash.h"

namespace ota32 {

struct EsptoolArgs {
  // Global options (before the command word).
  std::string chip = "auto";
  std::optional<std::string> port;  // a serial port: noted and ignored by the virtual device
  uint32_t baud = 115200;           // esptool's ESP_ROM_BAUD; the modelled transfer time follows it
  std::string before = "default_reset";
  std::string after = "hard_reset";
  // The command and its arguments.
  std::string command;
  WriteFlashOptions write;  // write_flash / merge_bin: flash params; write_flash: -z/-u, -e, --force
  std::vector<std::pair<std::string, std::string>> pairs;  // ADDR FILE, as given
  std::vector<std::string> positionals;                    // read_flash / erase_region / image_info
  std::string output;                                      // merge_bin -o
  std::string format = "raw";                              // merge_bin -f
  uint32_t target_offset = 0;                              // merge_bin -t
  std::string fill_flash_size;                             // merge_bin --fill-flash-size
  bool no_progress = false;                                // read_flash -p
  bool force = false;                                      // erase_flash / erase_region --force
  int image_info_version = 2;                              // image_info --version
  // Set when an @FILE was expanded: the whole argument list afterwards (esptool echoes it).
  std::optional<std::vector<std::string>> expanded;
};

// write_flash, read_flash, erase_flash, erase_region, merge_bin, image_info.
bool is_esptool_command(std::string_view word);

// esptool's @FILE expansion. A file's relative paths stay relative to the working directory, as esptool
// leaves them; `device flash` also tries the argument file's own directory (see resolve_flash_file).
// Errors name the file: "@build/flash_args: cannot open: No such file or directory".
Result<std::vector<std::string>> expand_arg_files(const std::vector<std::string>& args, bool* expanded);

// Parses esptool's arguments (after expansion). `default_command` ("write_flash" for `device flash`) is used
// when no command word is given. Unknown options and commands are invalid_argument naming them.
Result<EsptoolArgs> parse_esptool_args(const std::vector<std::string>& args,
                                       std::string_view default_command = "");

// What `idf.py flash` passes to esptool, read from BUILD_DIR/flasher_args.json (ESP-IDF v5.5.5's keys:
// write_flash_args, flash_settings, flash_files, one entry per image with offset/file/encrypted, and
// extra_esptool_args: after, before, stub, chip).
struct BuildFlashFile {
  uint32_t addr = 0;
  std::string name;            // as in flasher_args.json, relative to the build directory
  std::filesystem::path path;  // build_dir / name
};
struct BuildFlashArgs {
  std::string chip;  // extra_esptool_args.chip ("esp32")
  std::string flash_mode, flash_freq, flash_size;
  std::string before, after;
  std::vector<BuildFlashFile> files;  // flash_files, in the file's order (what flash_args lists)
};
// Errors: not_found (no flasher_args.json: not a build directory), invalid_argument naming the file and the
// key, unsupported for images ESP-IDF marks "encrypted" (flash encryption is not modelled).
Result<BuildFlashArgs> read_flasher_args(const std::filesystem::path& build_dir);

// A file named in an argument file: as given (relative to the working directory, esptool's rule), else
// relative to the directory of the argument file it came from, where idf.py runs esptool.
std::filesystem::path resolve_flash_file(const std::string& name, const std::vector<std::string>& arg_files);

// The argument files (without '@') named in `args`.
std::vector<std::string> arg_file_names(const std::vector<std::string>& args);

}  // namespace ota32
