#include "core/numbers.h"

#include <fmt/format.h>

#include <cctype>
#include <limits>

namespace ota32 {

static std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

Result<uint64_t> parse_number(std::string_view text, std::string_view field) {
  std::string_view s = trim(text);
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::invalid_argument, fmt::format("{}: '{}' {}", field, text, why));
  };
  if (s.empty()) return bad("is empty");
  uint64_t mult = 1;
  if (s.size() > 1 && (s.back() == 'B' || s.back() == 'b') &&
      !(s.size() > 2 && (s[1] == 'x' || s[1] == 'X'))) {
    s.remove_suffix(1);
  }
  if (!s.empty() && (s.back() == 'K' || s.back() == 'k')) {
    mult = 1024;
    s.remove_suffix(1);
  } else if (!s.empty() && (s.back() == 'M' || s.back() == 'm')) {
    mult = 1024 * 1024;
    s.remove_suffix(1);
  }
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    base = 16;
    s.remove_prefix(2);
  }
  if (s.empty()) return bad("is not a number");
  uint64_t v = 0;
  for (char c : s) {
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (base == 16 && c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else if (base == 16 && c >= 'A' && c <= 'F')
      d = c - 'A' + 10;
    else
      return bad("is not a number");
    if (v > (std::numeric_limits<uint64_t>::max() - static_cast<uint64_t>(d)) / static_cast<uint64_t>(base)) {
      return bad("is too large");
    }
    v = v * static_cast<uint64_t>(base) + static_cast<uint64_t>(d);
  }
  if (v > std::numeric_limits<uint64_t>::max() / mult) return bad("is too large");
  return v * mult;
}

Result<uint32_t> parse_u32(std::string_view text, std::string_view field) {
  auto v = parse_number(text, field);
  if (!v) return v.error();
  if (*v > 0xFFFFFFFFull) {
    return Error(ErrorCode::invalid_argument, fmt::format("{}: '{}' does not fit in 32 bits", field, text));
  }
  return static_cast<uint32_t>(*v);
}

std::string format_hex(uint64_t v, int width) { return fmt::format("0x{:0{}x}", v, width); }

std::string format_size(uint64_t v) {
  if (v != 0 && v % (1024 * 1024) == 0) return fmt::format("{}M", v / (1024 * 1024));
  if (v != 0 && v % 1024 == 0) return fmt::format("{}K", v / 1024);
  return fmt::format("{}", v);
}

std::string format_size_human(uint64_t v) {
  if (v >= 1024ull * 1024 * 1024) return fmt::format("{:.1f} GiB", static_cast<double>(v) / (1 << 30));
  if (v >= 1024 * 1024) return fmt::format("{:.1f} MiB", static_cast<double>(v) / (1 << 20));
  if (v >= 1024) return fmt::format("{:.1f} KiB", static_cast<double>(v) / 1024);
  return fmt::format("{} B", v);
}

}  // namespace ota32
