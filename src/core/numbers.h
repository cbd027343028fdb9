// Number and size parsing / printing in ESP-IDF's conventions: "0x8000", "4096", "16K", "1M", "4MB".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace ota32 {

// Accepts decimal, 0x/0X hex, and an optional K/M suffix (x1024, x1024*1024), with an optional trailing
// "B" ("4MB"); surrounding spaces ignored. Errors name `field` ("--offset: 'abc' is not a number").
Result<uint64_t> parse_number(std::string_view text, std::string_view field = "value");
// parse_number, then checks it fits in 32 bits.
Result<uint32_t> parse_u32(std::string_view text, std::string_view field = "value");

// "0x%0*x" with the given minimum number of hex digits ("0x00010000" for width 8).
std::string format_hex(uint64_t v, int width = 0);
// The shortest exact form of a size: "1M", "64K", or decimal bytes when not a multiple of 1K.
std::string format_size(uint64_t v);
// A human size for messages: "1.0 MiB", "24.4 KiB", "100 B".
std::string format_size_human(uint64_t v);

}  // namespace ota32
