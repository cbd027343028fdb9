// Small emulations of the Python behaviours gen_esp32part.py's output and messages depend on: str.strip(),
// str.splitlines(), int(x, 0), os.path.expandvars, '0x%x' of a negative number, bytes repr. Internal to
// src/format.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"

namespace ota32::py {

// Strict UTF-8 check (no overlongs, surrogates or code points past U+10FFFF), like bytes.decode().
bool is_valid_utf8(std::string_view s);
// The file's text as UTF-8, honouring the BOMs the tool honours (UTF-8, UTF-16 LE/BE, UTF-32 BE).
// nullopt when the bytes do not decode.
std::optional<std::string> decode_text(ByteView data);

// str.strip() / str.isspace() over UTF-8 text (ASCII whitespace, \x1c-\x1f, U+0085, U+00A0, U+2000...).
std::string_view strip(std::string_view s);
// str.splitlines() over UTF-8 text.
std::vector<std::string_view> splitlines(std::string_view s);
// os.path.expandvars (POSIX): $NAME and ${NAME}, unset variables left verbatim.
std::string expandvars(std::string_view s,
                       const std::function<std::optional<std::string>(const std::string&)>& env);

// int(s, 0) as Python parses it, clamped to +-2^100 (callers range-check). nullopt = ValueError.
std::optional<__int128> parse_int0(std::string_view s);
// int(s, 16).
std::optional<__int128> parse_int16(std::string_view s);

// '0x%x' % v ("0x-1000" for negative values, as Python prints it).
std::string hex(__int128 v);
// repr() of a bytes object: b'\xabP'.
std::string bytes_repr(ByteView b);

}  // namespace ota32::py
