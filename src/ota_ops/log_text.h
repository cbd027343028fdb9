// Log texts the bootloader and the app print the same way, one copy each: chip revisions, the segment
// line of esp_image_format.c and which ESP-IDF versions print its old form. spec/otadata-and-boot.md §6.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace ota32 {

// "v1.0" for 100: major = rev / 100, minor = rev % 100 (the chip-revision lines and checks).
std::string rev_text(uint32_t rev);

// (major, minor) of "v4.3-dev-1561-g357a27760" / "v5.5.5"; nullopt when it does not start like that.
std::optional<std::pair<int, int>> idf_major_minor(std::string_view idf_ver);

// Whether ESP-IDF `idf_ver` prints the old segment line: every version before v4.3 (v4.2, v4.1, v4.0,
// v3.x) and the v4.3-dev builds (the seed); v4.3-beta1 and later print the new one. An unparsable
// version gets the new one.
bool old_segment_log_format(std::string_view idf_ver);

// "segment 0: paddr=00010020 vaddr=3f400020 size=1e510h (124176) map" (v4.3-beta1 and later) or the old
// "segment 0: paddr=0x00010020 vaddr=0x3f400020 size=0x1e510 (124176) map". `kind` is the last word:
// "map", "load" (bootloader only) or empty (a RAM segment on the app side; the line keeps its space).
std::string segment_log_text(int index, uint32_t paddr, uint32_t vaddr, uint32_t size, std::string_view kind,
                             bool old_format);

}  // namespace ota32
