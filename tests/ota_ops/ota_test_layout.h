// The seed's partition layout (simple_ota_example's partitions_two_ota.csv) for the app-side tests (ota_ops,
// agent, device).
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "flash/flash.h"
#include "format/otadata.h"
#include "format/partition_table.h"
#include "ota_ops/esp_log.h"

namespace ota32::testing {

inline PartitionTable seed_layout() {
  PartitionTable t;
  t.entries = {
      {"nvs", kPartitionTypeData, 0x02, 0x9000, 0x4000},
      {"otadata", kPartitionTypeData, kDataSubtypeOta, 0xd000, 0x2000},
      {"phy_init", kPartitionTypeData, 0x01, 0xf000, 0x1000},
      {"factory", kPartitionTypeApp, kAppSubtypeFactory, 0x10000, 0x100000},
      {"ota_0", kPartitionTypeApp, kAppSubtypeOta0, 0x110000, 0x100000},
      {"ota_1", kPartitionTypeApp, kAppSubtypeOta0 + 1, 0x210000, 0x100000},
  };
  return t;
}

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
