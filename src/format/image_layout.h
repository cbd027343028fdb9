// esptool v4.8.1's elf2image layout (spec/esp-app-image.md §8.4-8.6): loadable items in, image bytes out.
// Shared by `image elf2image` (items from an ELF) and `image make` (synthetic items).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "format/app_image.h"
#include "format/chip.h"

namespace ota32 {

// One ELF section (or PT_LOAD program header) to be placed in the image.
struct ImageItem {
  uint32_t addr = 0;
  Bytes data;
  uint32_t flags = 0;  // sh_flags (section mode) or p_flags (segment mode); bit 2 decides merging
  std::string name;    // ".flash.appdesc" and ".dram0.bootdesc" are moved to the front
};

struct LayoutOptions {
  uint8_t flash_mode = 0;        // header byte 2
  uint8_t flash_speed_size = 0;  // header byte 3
  uint32_t entry = 0;
  uint8_t min_rev = 0;
  uint16_t min_rev_full = 0, max_rev_full = 0xFFFF;
  bool append_digest = true;
  enum class SecurePad { none, v1, v2 } secure_pad = SecurePad::none;
  uint32_t pad_to_size = 0;          // 0: none
  uint32_t mmu_page_size = 0x10000;  // "A" (only C2/C5/C6/C61/H2 may change it)
  // esptool's --ram-only-header (§8.7): the header counts and the checksum covers only the RAM segments,
  // which come first, never split; each flash item follows behind a padding segment, in reverse order,
  // placed for a write at the chip's bootloader offset. The caller also clears append_digest.
  bool ram_only_header = false;
  // esptool's ESP8266V3FirmwareImage (elf2image --chip esp8266 --version 3, the ESP8266 RTOS SDK v3 layout):
  // the 8-byte common header only, the flash items (above 0x40200000; `.flash.rodata` loses its first 8
  // bytes) then the RAM items, each in address order and never split or padded, checksum, SHA-256 always.
  bool esp8266_v3 = false;
  // esptool's ESP8266V2FirmwareImage (--chip esp8266 --version 2, the non-OS SDK's OTA image): header 0xEA,
  // the one irom0 item (0x40200000..0x40300000) at load address 0 padded to 16, a second (0xE9) header and
  // the other items in ELF order with the checksum, then esptool's ESP8266 CRC-32. No SHA-256.
  bool esp8266_v2 = false;
  // With elf_sha256_offset != 0, elf_sha256 is written into the segment data at that file offset.
  uint32_t elf_sha256_offset = 0;
  Sha256Digest elf_sha256{};
  // Told how many items were merged, before the segment-count check (esptool prints "Merged N ELF sections").
  std::function<void(unsigned)> on_merged;
};

struct LayoutResult {
  Bytes image;
  uint32_t irom_offset =
      0;                // esp8266_v2: the irom0 item's address - 0x40200000 (esptool names the file by it)
  unsigned merged = 0;  // how many items were merged into their predecessor
};

// Pads every item to a multiple of 4, merges contiguous items, checks the count, and lays the image out.
// Errors carry esptool's fatal-error text.
Result<LayoutResult> layout_image(const ChipInfo& chip, std::vector<ImageItem> items,
                                  const LayoutOptions& opt);

}  // namespace ota32
