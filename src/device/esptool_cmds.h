// esptool.py's commands (v4.8.1) on the virtual ESP32: write_flash, read_flash, erase_flash, erase_region,
// merge_bin (raw output, byte for byte) and image_info (of a file, or of an image at a flash offset of the
// device). Every line esptool prints goes to `out`; notes about what the virtual device ignores (the
// serial port) go to `note`.
#pragma once

#include <string>
#include <vector>

#include "core/result.h"
#include "device/esptool_args.h"
#include "device/esptool_flash.h"

namespace ota32 {

class VirtualDevice;

struct EsptoolContext {
  VirtualDevice* device = nullptr;     // nullptr: only merge_bin and image_info FILE can run
  std::string device_name;             // printed after "Serial port" when no --port is given
  std::vector<std::string> arg_files;  // the @FILEs the arguments came from (file names resolve beside them)
  LineSink out, note;
};

// Errors: what esptool reports as "A fatal error occurred: ..." (invalid_argument / out_of_range /
// unsupported), with nothing written to the flash or to an output file.
Result<void> run_esptool(const EsptoolArgs& args, const EsptoolContext& ctx);

// merge_bin's raw output (esptool v4.8.1 cmds.merge_bin, --format raw): the files sorted by address, the gaps
// and --fill-flash-size's tail filled with FF, each file written as it is (no 4-byte padding) after the
// bootloader flash-parameter patch. `lines` receives what it prints before "Wrote ...".
Result<Bytes> merge_bin_raw(const ChipInfo& chip, std::vector<FlashFile> files, const WriteFlashOptions& opt,
                            uint32_t target_offset, std::string_view fill_flash_size,
                            std::vector<std::string>& lines);

}  // namespace ota32
