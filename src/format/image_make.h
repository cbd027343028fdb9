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

}  // namespace ota32
