#include "format/py_text.h"

#include <fmt/format.h>

namespace ota32::py {
namespace {

constexpr __int128 kClamp = static_cast<__int128>(1) << 100;

// Decodes one code point of valid UTF-8 at s[i]; returns its length (1 for a stray byte).
size_t decode_at(std::string_view s, size_t i, uint32_t& cp) {
  auto b = [&](size_t k) { return static_cast<uint8_t>(s[k]); };
  uint8_t c = b(i);
  size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
  if (i + n > s.size()) n = 1;
  if (n == 1) {
    cp = c;
    return 1;
  }
  cp = c & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(i + k) & 0x3F);
  return n;
}

// Start of the code point that ends just before s[end].
size_t start_before(std::string_view s, size_t end) {
  size_t i = end - 1;
  while (i > 0 && end - i < 4 && (static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) --i;
  return i;
}

bool is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
         cp == 0x205F || cp == 0x3000;
}

bool is_line_break(uint32_t cp) {
  return cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) || cp == 0x85 ||
         cp == 0x2028 || cp == 0x2029;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

std::optional<std::string> decode_utf16(ByteView d, bool big_endian) {
  if (d.size() % 2 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < d.size(); i += 2) {
    auto unit = [&](size_t k) {
      return big_endian ? static_cast<uint32_t>(d[k] << 8 | d[k + 1])
                        : static_cast<uint32_t>(d[k + 1] << 8 | d[k]);
    };
    uint32_t u = unit(i);
    if (u >= 0xDC00 && u <= 0xDFFF) return std::nullopt;
    if (u >= 0xD800 && u <= 0xDBFF) {
      if (i + 4 > d.size()) return std::nullopt;
      uint32_t lo = unit(i + 2);
      if (lo < 0xDC00 || lo > 0xDFFF) return std::nullopt;
      u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
      i += 2;
    }
    append_utf8(out, u);
  }
  return out;
}

std::optional<std::string> decode_utf32be(ByteView d) {
  if (d.size() % 4 != 0) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < d.size(); i += 4) {
    uint32_t u = static_cast<uint32_t>(d[i]) << 24 | static_cast<uint32_t>(d[i + 1]) << 16 |
                 static_cast<uint32_t>(d[i + 2]) << 8 | d[i + 3];
    if (u > 0x10FFFF || (u >= 0xD800 && u <= 0xDFFF)) return std::nullopt;
    append_utf8(out, u);
  }
  return out;
}

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

int digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'z') return c - 'a' + 10;
  if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
  return 99;
}

// Digits of `base` with Python's underscore rule (single '_' between digits; `lead_underscore` allows one
// right after a base prefix). Sets all_zero for the decimal leading-zero rule.
std::optional<__int128> parse_digits(std::string_view s, int base, bool lead_underscore, bool* all_zero) {
  if (lead_underscore && !s.empty() && s.front() == '_') s.remove_prefix(1);
  if (s.empty() || s.front() == '_' || s.back() == '_') return std::nullopt;
  __int128 v = 0;
  bool zero = true;
  char prev = 0;
  for (char c : s) {
    if (c == '_') {
      if (prev == '_') return std::nullopt;
    } else {
      int d = digit_value(c);
      if (d >= base) return std::nullopt;
      if (d != 0) zero = false;
      v = v * base + d;
      if (v > kClamp) v = kClamp;
    }
    prev = c;
  }
  if (all_zero) *all_zero = zero;
  return v;
}

std::optional<__int128> parse_signed(std::string_view text, int fixed_base) {
  std::string_view s = strip(text);
  bool neg = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    neg = s.front() == '-';
    s.remove_prefix(1);
  }
  int base = fixed_base == 0 ? 10 : fixed_base;
  bool prefixed = false;
  if (s.size() >= 2 && s[0] == '0') {
    char p = static_cast<char>(s[1] | 0x20);
    int pb = p == 'x' ? 16 : p == 'o' ? 8 : p == 'b' ? 2 : 0;
    if (pb != 0 && (fixed_base == 0 || fixed_base == pb)) {
      base = pb;
      prefixed = true;
      s.remove_prefix(2);
    }
  }
  bool all_zero = false;
  auto v = parse_digits(s, base, prefixed, &all_zero);
  if (!v) return std::nullopt;
  // int('016', 0) is an error (ambiguous octal); int('00', 0) is 0.
  if (fixed_base == 0 && !prefixed && s.front() == '0' && !all_zero) return std::nullopt;
  return neg ? -*v : *v;
}

}  // namespace

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<uint8_t>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t min;
    if (c >= 0xC2 && c <= 0xDF)
      n = 2, min = 0x80;
    else if ((c >> 4) == 0xE)
      n = 3, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
      n = 4, min = 0x10000;
    else
      return false;
    if (i + n > s.size()) return false;
    uint32_t cp = c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      auto b = static_cast<uint8_t>(s[i + k]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::optional<std::string> decode_text(ByteView d) {
  auto starts = [&](std::initializer_list<uint8_t> bom) {
    return d.size() >= bom.size() && std::equal(bom.begin(), bom.end(), d.begin());
  };
  if (starts({0xEF, 0xBB, 0xBF})) {
    std::string s(as_chars(d.subspan(3)));
    if (!is_valid_utf8(s)) return std::nullopt;
    return s;
  }
  if (starts({0xFF, 0xFE})) return decode_utf16(d.subspan(2), false);
  if (starts({0xFE, 0xFF})) return decode_utf16(d.subspan(2), true);
  if (starts({0x00, 0x00, 0xFE, 0xFF})) return decode_utf32be(d.subspan(4));
  std::string s(as_chars(d));
  if (!is_valid_utf8(s)) return std::nullopt;
  return s;
}

std::string_view strip(std::string_view s) {
  while (!s.empty()) {
    uint32_t cp;
    size_t n = decode_at(s, 0, cp);
    if (!is_space(cp)) break;
    s.remove_prefix(n);
  }
  while (!s.empty()) {
    size_t i = start_before(s, s.size());
    uint32_t cp;
    decode_at(s, i, cp);
    if (!is_space(cp)) break;
    s.remove_suffix(s.size() - i);
  }
  return s;
}

std::vector<std::string_view> splitlines(std::string_view s) {
  std::vector<std::string_view> lines;
  size_t start = 0, i = 0;
  while (i < s.size()) {
    uint32_t cp;
    size_t n = decode_at(s, i, cp);
    if (is_line_break(cp)) {
      lines.push_back(s.substr(start, i - start));
      i += n;
      if (cp == '\r' && i < s.size() && s[i] == '\n') ++i;
      start = i;
    } else {
      i += n;
    }
  }
  if (start < s.size()) lines.push_back(s.substr(start));
  return lines;
}

std::string expandvars(std::string_view s,
                       const std::function<std::optional<std::string>(const std::string&)>& env) {
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    size_t p = s.find('$', i);
    if (p == std::string_view::npos) break;
    size_t j = p + 1;
    std::string name;
    if (j < s.size() && is_word(s[j])) {
      while (j < s.size() && is_word(s[j])) ++j;
      name = std::string(s.substr(p + 1, j - p - 1));
    } else if (j < s.size() && s[j] == '{' && s.find('}', j) != std::string_view::npos) {
      size_t close = s.find('}', j);
      name = std::string(s.substr(j + 1, close - j - 1));
      j = close + 1;
    } else {
      out.append(s.substr(i, p + 1 - i));
      i = p + 1;
      continue;
    }
    std::optional<std::string> value = env ? env(name) : std::nullopt;
    out.append(s.substr(i, p - i));
    if (value)
      out.append(*value);
    else
      out.append(s.substr(p, j - p));
    i = j;
  }
  if (i < s.size()) out.append(s.substr(i));
  return out;
}

std::optional<__int128> parse_int0(std::string_view s) { return parse_signed(s, 0); }
std::optional<__int128> parse_int16(std::string_view s) { return parse_signed(s, 16); }

std::string hex(__int128 v) {
  if (v < 0) return "0x-" + hex(-v).substr(2);
  std::string digits;
  do {
    digits.insert(digits.begin(), "0123456789abcdef"[static_cast<int>(v % 16)]);
    v /= 16;
  } while (v != 0);
  return "0x" + digits;
}

std::string bytes_repr(ByteView b) {
  bool has_single = false, has_double = false;
  for (uint8_t c : b) {
    has_single |= c == '\'';
    has_double |= c == '"';
  }
  char quote = has_single && !has_double ? '"' : '\'';
  std::string out = "b";
  out += quote;
  for (uint8_t c : b) {
    if (c == '\\' || c == static_cast<uint8_t>(quote)) {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c >= 0x7F) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  out += quote;
  return out;
}

}  // namespace ota32::py
