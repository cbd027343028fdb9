// `esptool.py --chip C elf2image` v4.8.1 for ESP32-family chips (spec/esp-app-image.md §8): same bytes,
// same fatal-error texts, same console lines (without the banner).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "format/chip.h"

namespace ota32 {

struct Elf2ImageOptions {
  const ChipInfo* chip = nullptr;
  std::string flash_mode = "qio";  // qio, qout, dio, dout
  std::string flash_freq;          // empty: code 0
  std::string flash_size = "1MB";
  uint8_t min_rev = 0;
  uint16_t min_rev_full = 0, max_rev_full = 0xFFFF;
  bool append_digest = true;
  uint32_t elf_sha256_offset = 0;  // 0: none (IDF passes 0xb0 for apps)
  bool secure_pad = false, secure_pad_v2 = false;
  std::string pad_to_size;          // "4KB", "1MB"; empty: none
  std::string flash_mmu_page_size;  // "64KB", "32KB", "16KB", "8KB"; empty: default
  bool use_segments = false;        // program headers instead of sections
  // --ram-only-header (§8.7): only the RAM segments in the header count and checksum, the flash segments
  // after them; no SHA-256 is appended whatever append_digest says (esptool v4.8.1 clears it).
  bool ram_only_header = false;
  // --version 1|2|3 picks esptool's ESP8266 image format (v3 = the ESP8266 RTOS SDK v3 layout); esptool
  // v4.8.1 ignores it for every ESP32-family chip, and so do we. With chip = esp8266_chip() 3 is made
  // or 2 (esptool's ESP8266V3FirmwareImage / ESP8266V2FirmwareImage; v1's two files are not made); the
  // ESP32-only options are then ignored as esptool ignores them.
  int version = 1;
};

struct Elf2ImageResult {
  Bytes image;
  uint32_t irom_offset =
      0;  // ESP8266 --version 2: esptool's default output is <elf stem>-0x<offset & ~0xfff>.bin
  std::vector<std::string> console;  // esptool's stdout lines after the banner
};

// Errors are invalid_argument carrying esptool's fatal-error message; the lines printed before the error
// are in `console_so_far` when given.
Result<Elf2ImageResult> elf2image(ByteView elf, std::string_view elf_path, const Elf2ImageOptions& opt,
                                  std::vector<std::string>* console_so_far = nullptr);

}  // namespace ota32
