// The seed's partition layout (simple_ota_example's partitions_two_ota.csv) for agent tests.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

#include "agent/agent_log.h"
#include "format/partition_table.h"

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

// Keeps the agent's log lines as "I tag: text".
class CollectLog final : public agent::AgentLog {
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
