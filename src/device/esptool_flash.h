// esptool's write_flash (v4.8.1, with the flasher stub) against a Flash: the checks it makes before it
// touches the chip, the erase of whole sectors, the flash-parameter patch of the bootloader header, the
// transfer in 16 KiB blocks (zlib level 9 by default) and the MD5 verify, printing esptool's lines.
// spec/flash-semantics.md §4-5.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "flash/flash.h"
#include "format/chip.h"

namespace ota32 {

struct FlashFile {
  uint32_t addr = 0;
  std::string name;  // as given on the command line (used in messages)
  Bytes data;
};

struct WriteFlashOptions {
  // --flash_mode qio|qout|dio|dout|keep, --flash_freq 40m|...|keep, --flash_size 4MB|...|detect|keep.
  std::string flash_mode = "keep", flash_freq = "keep", flash_size = "keep";
  bool compress = true;        // the stub's default; false = -u
  bool force = false;          // skip the chip-id / chip-revision safety checks
  bool erase_all = false;      // --erase-all
  bool verify = true;          // MD5 check after each file
  uint32_t chip_revision = 0;  // major*100+minor of the target, for the min-revision check
  std::string after = "hard_reset";
};

using LineSink = std::function<void(const std::string&)>;

// What write_flash will do, decided before any flash operation (so bad input leaves the flash untouched).
struct FlashPlanItem {
  uint32_t addr = 0;
  std::string name;
  Bytes data;  // padded to 4 bytes with FF, header patched
  std::vector<std::string>
      pre_lines;  // "Flash params set to 0x0220", "SHA digest in image updated", warnings
};
struct FlashPlan {
  std::vector<std::string> header_lines;  // "Configuring flash size...", erase-range lines, warnings
  std::vector<FlashPlanItem> items;       // in command-line order, empty files dropped
};

// Checks everything: sector overlaps ("Detected overlap at address: 0x%x for file: %s"), the chip id and
// minimum revision of every file that parses as an image, the fit in flash, the flash parameters. Errors
// are invalid_argument / out_of_range with esptool's message text.
Result<FlashPlan> plan_write_flash(const ChipInfo& chip, uint32_t flash_size, std::vector<FlashFile> files,
                                   const WriteFlashOptions& opt);

// Runs a plan: erase + program through `flash` (all writes go through the Flash interface), then MD5.
// Every line esptool would print goes to `out`. A verify mismatch is ErrorCode::corrupt.
Result<void> run_write_flash(Flash& flash, const FlashPlan& plan, const WriteFlashOptions& opt,
                             const LineSink& out);

// esptool's flash-parameter patch of a bootloader image (§5). Returns the lines it prints.
Result<std::vector<std::string>> patch_flash_params(const ChipInfo& chip, uint32_t addr, Bytes& data,
                                                    const WriteFlashOptions& opt);

// The `Writing at 0x%08x... (%d %%)` progression: for each block, (address, percent). Compressed mode
// advances by what a streaming inflater yields per 16 KiB block of the zlib stream.
struct WriteProgress {
  uint32_t addr;
  int percent;
};
Bytes zlib_compress9(ByteView data);
std::vector<WriteProgress> write_progress(uint32_t addr, ByteView data, ByteView compressed, bool compress);

}  // namespace ota32
