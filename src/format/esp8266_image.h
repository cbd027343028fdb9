// ESP8266 images as esptool v4.8.1's image_info reads them (spec/esp-app-image.md §9.6): the ROM-loaded "v1"
// image (magic 0xE9, segments right after the 8-byte header) and the "v2" OTA image (magic 0xEA: the irom0
// segment first, then a v1 image). ota32 only reads them, for `image info`.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace ota32 {

constexpr uint8_t kEsp8266V2Magic = 0xEA;

struct Esp8266Segment {
  uint32_t load_addr = 0;      // as shown (v2's irom0 segment: 0)
  uint32_t data_len = 0;       // bytes in the file
  uint32_t shown_len = 0;      // esptool pads the data of a segment with a load address to 4 in memory
  uint32_t header_offset = 0;  // file offset of its 8-byte header
  bool in_checksum = true;     // v2's irom0 segment is not
};

struct Esp8266Image {
  int version = 1;  // 1: magic 0xE9, 2: magic 0xEA
  uint8_t flash_mode = 0, flash_size_freq = 0;
  uint32_t entry = 0;  // v2: from the second header, as esptool uses it
  std::vector<Esp8266Segment> segments;
  uint8_t stored_checksum = 0, calculated_checksum = 0;
  uint32_t checksum_offset = 0;
};

// esptool's warning lines while reading ("WARNING: Suspicious segment ...", the v2 header disagreements) go
// to `warnings` in order, also when the read then fails. Errors (corrupt) carry esptool's fatal-error text
// where it has one, otherwise name the file and the offset.
Result<Esp8266Image> parse_esp8266_image(ByteView data, std::string_view file_name,
                                         std::vector<std::string>& warnings);

}  // namespace ota32
