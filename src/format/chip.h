// The ESP32-family chip table: ids, flash offsets, MMU page size, the flash-mapped windows elf2image and the
// bootloader use, and esptool's memory-map names (esptool/targets/<chip>.py, esp_app_format.h).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace ota32 {

// [start, end), end exclusive.
struct AddrRange {
  uint32_t start = 0, end = 0;
  bool contains(uint32_t a) const { return a >= start && a < end; }
};

// One row of esptool's MEMORY_MAP: image_info's "Memory types" column.
struct MemRegion {
  uint32_t start, end;
  std::string_view name;
};

// A flash frequency name and its header code (low nibble of byte 3), in esptool's table order.
struct FlashFreq {
  std::string_view name;
  uint8_t code;
};

struct ChipInfo {
  std::string_view name;          // normalised esptool --chip value: "esp32c3"
  std::string_view display_name;  // esptool CHIP_NAME: "ESP32-C3"
  uint16_t chip_id;
  bool released;                    // false for pre-release (beta) chips: known to image_info only
  uint32_t bootloader_offset;       // flash offset of the 2nd-stage bootloader (IDF)
  uint32_t mmu_page_size;           // default flash MMU page (64 KiB everywhere)
  bool mmu_page_size_configurable;  // C2, C5, C6, C61, H2 (SOC_MMU_PAGE_SIZE_CONFIGURABLE)
  AddrRange irom_map, drom_map;     // flash-mapped windows (elf2image IROM/DROM_MAP_START..END)
  std::span<const MemRegion> memory_map;
  std::span<const FlashFreq> flash_freqs;
  // Where `image make` puts its synthetic RAM segments (inside the chip's DRAM / IRAM).
  uint32_t dram_base, iram_base;
};

// By normalised name ("esp32", "esp32c3"; "ESP32-C3" is normalised first). nullptr if unknown.
const ChipInfo* find_chip(std::string_view name);
// By the image header's chip_id (beta chips included). nullptr if unknown.
const ChipInfo* find_chip_by_id(uint16_t chip_id);
// All chips, released ones first.
std::span<const ChipInfo> all_chips();
// "ESP32-C3" -> "esp32c3" (lower-case, '-', '(' and ')' removed), as esptool does for --chip.
std::string normalise_chip_name(std::string_view name);
// "esp32, esp32s2, ..." (released chips), for error messages.
std::string supported_chip_names();

// The ESP8266 as esptool's image_info knows it (memory map, flash frequencies): not an ESP32-family chip, so
// not in the table above (find_chip does not return it); image info uses it for ESP8266 images only.
const ChipInfo& esp8266_chip();
bool is_esp8266(const ChipInfo& chip);
// ESP8266 flash size name for `byte3 & 0xF0` ("4MB-c1"), or empty if invalid.
std::string_view esp8266_flash_size_name(uint8_t size_bits);

// True if load_addr lies in the chip's IROM or DROM flash-mapped window ("map" in the boot log).
bool segment_is_mapped(const ChipInfo& chip, uint32_t load_addr);
// esptool's memory-map names containing addr, in table order, joined by `sep`.
std::string memory_type_names(const ChipInfo& chip, uint32_t addr, std::string_view sep);
bool has_memory_type(const ChipInfo& chip, uint32_t addr, std::string_view name);

// Flash frequency name for a code (first match in table order), or empty if the chip has none.
std::string_view flash_freq_name(const ChipInfo& chip, uint8_t code);
// Flash size name for the high nibble of byte 3 ("4MB"), or empty if invalid.
std::string_view flash_size_name(uint8_t size_bits);
// The ESP32 family's flash sizes in header order (1MB .. 128MB), and the header code (byte 3's high nibble,
// shifted into place) of one, if it is one.
std::span<const std::string_view> flash_size_names();
std::optional<uint8_t> flash_size_code(std::string_view name);
// "1MB, 2MB, ..., 128MB", as esptool and gen_esp32part list the choices.
std::string flash_size_list();
// The largest flash (128MB): no image, dump or file to flash can be larger.
inline constexpr uint64_t kLargestFlashSize = 128ull << 20;
inline constexpr std::string_view kLargestFlashWhat = "an image for the largest flash (128MB)";

}  // namespace ota32
