// CRC-32 as the ESP32 ROM computes it (esp_rom_crc32_le): reflected polynomial 0xEDB88320, the running
// value inverted on entry and exit (same convention as zlib's crc32(crc, buf, len)).
// otadata uses crc32_le(0xFFFFFFFF, &ota_seq, 4); Secure Boot v2 blocks use crc32_le(0, ...).
#pragma once

#include <cstdint>

#include "core/bytes.h"

namespace ota32 {

uint32_t crc32_le(uint32_t crc, ByteView data);

}  // namespace ota32
