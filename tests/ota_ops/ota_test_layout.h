// The seed's layout (seed_layout() in boot/test_images.h) and its otadata for the app-side tests (ota_ops,
// agent, device).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "boot/test_images.h"
#include "flash/flash.h"
#include "format/otadata.h"
#include "format/partition_table.h"
#include "ota_ops/esp_log.h"

namespace ota32::testing {

// otadata entry `sector` of seed_layout() (at 0xd000) written / read with plain flash operations, so that
// the code under test is not used to set up or check its own work.
inline bool put_seed_otadata(Flash& f, int sector, const OtaSelectEntry& e) {
  const uint32_t at = 0xd000 + static_cast<uint32_t>(sector) * 0x1000;
  return f.erase(at, 0x1000) && f.program(at, serialize_ota_select_entry(e));
}
inline OtaSelectEntry get_seed_otadata(Flash& f, int sector) {
  uint8_t b[32];
  if (!f.read(0xd000 + static_cast<uint32_t>(sector) * 0x1000, std::span<uint8_t>(b, 32))) return {};
  return parse_ota_select_entry(ByteView(b, 32));
}

// Keeps the log lines as "I tag: text".
class CollectLog final : public EspLog {
 public:
  void log(char level, std::string_view tag, std::string text) override {
    lines.push_back(std::string(1, level) + " " + std::string(tag) + ": " + text);
  }
  bool has(std::string_view s) const { return count(s) > 0; }
  size_t count(std::string_view s) const {
    return std::count_if(lines.begin(), lines.end(),
                         [&](const std::string& l) { return l.find(s) != std::string::npos; });
  }
  std::vector<std::string> lines;
};

}  // namespace ota32::testing
