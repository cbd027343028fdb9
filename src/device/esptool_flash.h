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
  uint32_t baud = 115200;  // -b: the modelled transfer time (and "effective kbit/s") follows it
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

// esptool's argument check (write_flash, merge_bin): pairs whose 4 KiB sector ranges overlap, compared in
// address order: "Detected overlap at address: 0x%x for file: %s".
Result<void> check_sector_overlaps(const std::vector<FlashFile>& files);

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

// The modelled time esptool measures for sending `sent` bytes to the stub at `baud` (UART 8N1, 10 bits a
// byte), fitted to the seed's four transfers at 460800 baud (SLIP framing, acks and flash writes add ~9 %,
// each file ~5 ms): its 815728-byte app in 12.2 s, "effective 535.7 kbit/s" (the seed: 535.5).
double esptool_transfer_seconds(uint64_t sent, uint32_t baud);
// Modelled NOR erase times (typical datasheet figures): a whole-chip erase 2.5 s per 4 MiB; a region
// erased in 64 KiB blocks (0.15 s) where aligned and 4 KiB sectors (45 ms) elsewhere.
double esptool_erase_seconds(uint32_t addr, uint64_t len, bool chip_erase);
// esptool's " in %.1f seconds (effective %.1f kbit/s)" tail for `bytes` moved in `t` seconds; the
// parenthesised part is left out when t rounds to zero time, as esptool does when it measured none.
std::string esptool_speed_tail(uint64_t bytes, double t, bool effective);

// What esptool v4.8.1 prints from its banner up to the command's own output, for a command that talks to
// the chip (write_flash, read_flash, erase_flash, erase_region): "esptool.py v4.8.1", "Serial port ...",
// "Connecting...", ["Detecting chip type... ESP32" without --chip], "Chip is ESP32-D0WDQ6 (revision
// v1.0)", "Features: ...", "Crystal is 40MHz", "MAC: ...", the stub upload and, at another baud rate than
// 115200, "Changing baud rate to N" / "Changed.".
struct EsptoolConnect {
  std::string port;          // printed after "Serial port"
  bool detect_chip = false;  // --chip auto
  uint32_t baud = 115200;
  uint32_t chip_revision = 0;  // major*100+minor
  std::string mac;
};
std::vector<std::string> esptool_connect_lines(const ChipInfo& chip, const EsptoolConnect& c);
// "ESP32-D0WDQ6 (revision v1.0)": esptool's get_chip_description() for the modelled package.
std::string esptool_chip_description(const ChipInfo& chip, uint32_t chip_revision);
inline constexpr std::string_view kEsptoolBanner = "esptool.py v4.8.1";
std::vector<WriteProgress> write_progress(uint32_t addr, ByteView data, ByteView compressed, bool compress);

}  // namespace ota32
