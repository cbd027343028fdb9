#include "ota_ops/log_text.h"

#include <fmt/format.h>

#include <cstdio>

namespace ota32 {

std::string rev_text(uint32_t rev) { return fmt::format("v{}.{}", rev / 100, rev % 100); }

std::optional<std::pair<int, int>> idf_major_minor(std::string_view v) {
  int major = 0, minor = 0;
  if (std::sscanf(std::string(v).c_str(), "v%d.%d", &major, &minor) != 2) return std::nullopt;
  return std::make_pair(major, minor);
}

bool old_segment_log_format(std::string_view idf_ver) {
  auto mm = idf_major_minor(idf_ver);
  if (!mm) return false;
  if (*mm < std::make_pair(4, 3)) return true;
  return *mm == std::make_pair(4, 3) && idf_ver.find("-dev") != std::string_view::npos;
}

std::string segment_log_text(int index, uint32_t paddr, uint32_t vaddr, uint32_t size, std::string_view kind,
                             bool old_format) {
  if (old_format) {
    return fmt::format("segment {}: paddr={:#010x} vaddr={:#010x} size={:#07x} ({:6}) {}", index, paddr,
                       vaddr, size, size, kind);
  }
  return fmt::format("segment {}: paddr={:08x} vaddr={:08x} size={:05x}h ({:6}) {}", index, paddr, vaddr,
                     size, size, kind);
}

}  // namespace ota32
