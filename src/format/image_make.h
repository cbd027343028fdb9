// Synthetic, deterministic app images: firmware of any chip, size and version without a toolchain, laid
// out by the same code as elf2image (DROM with the app descriptor first, DRAM, IROM, IRAM).
#pragma once

#include <cstdint>
#include <string>

#include "core/bytes.h"
#include "core/result.h"
#include "format/chip.h"

namespace ota32 {

struct MakeImageOptions {
  const ChipInfo* chip = nullptr;
  std::string project, version;
  uint32_t secure_version = 0;
  // Exact file size wanted (rounded up to a multiple of 16); 0: the seed app's segment sizes (~860 KiB).
  uint32_t size = 0;
  uint64_t seed = 0;  // content of the segments; same options -> same bytes
  std::string idf_ver = "v5.5.5";
  std::string date = "Jan  1 2025", time = "00:00:00";
  uint8_t flash_mode = 2;           // DIO
  uint8_t flash_speed_size = 0x20;  // 4MB, code 0 (40m on most chips)
  uint16_t min_rev_full = 0, max_rev_full = 0xFFFF;
  uint16_t min_efuse_blk_rev_full = 0, max_efuse_blk_rev_full = 0;
};

// Errors: invalid_argument (no chip, strings too long for their fields, size below the chip's minimum).
Result<Bytes> make_app_image(const MakeImageOptions& opt);

// A synthetic 2nd-stage bootloader image (what `idf.py build` leaves in build/bootloader/bootloader.bin), for
// a virtual device when no ESP-IDF build is at hand: RAM segments only, esp_bootloader_desc_t first (IDF >=
// v5.2), so the boot log shows "ESP-IDF <idf_ver> 2nd stage bootloader". ESP32: the load map of the seed's
// bootloader (0x3fff0030, 0x40078000, 0x40080400, entry 0x40080678); other chips: their DRAM base, and IRAM
// 64 KiB above its base.
// Its code is filler: it boots the virtual device, not a chip.
struct MakeBootloaderOptions {
  const ChipInfo* chip = nullptr;
  std::string idf_ver = "v5.5.5";
  std::string date_time = "Jan  1 2025 00:00:00";
  uint32_t version = 1;        // CONFIG_BOOTLOADER_PROJECT_VER
  uint8_t secure_version = 0;  // bootloader anti-rollback (IDF >= v5.5)
  uint64_t seed = 0;
  uint8_t flash_mode = 2;           // DIO
  uint8_t flash_speed_size = 0x10;  // 2MB, 40m: ESP-IDF's defaults
};
// Errors: invalid_argument (no chip, strings too long), unsupported (a chip without a memory map).
Result<Bytes> make_bootloader_image(const MakeBootloaderOptions& opt);

}  // namespace ota32
