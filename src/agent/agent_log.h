// Where the agent's ESP-IDF-style log lines go ("I (8168) esp_https_ota: Starting OTA..."): the virtual
// device forwards them to its boot log (same virtual clock); a library user may print or collect them.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ota32::agent {

class AgentLog {
 public:
  virtual ~AgentLog() = default;
  virtual void log(char level, std::string_view tag, std::string text) = 0;
  // Work that takes time on the chip without printing (flash writes, hashing): advances a virtual clock.
  virtual void spend_bytes(uint64_t bytes) { (void)bytes; }

  void info(std::string_view tag, std::string text) { log('I', tag, std::move(text)); }
  void warn(std::string_view tag, std::string text) { log('W', tag, std::move(text)); }
  void error(std::string_view tag, std::string text) { log('E', tag, std::move(text)); }
  void debug(std::string_view tag, std::string text) { log('D', tag, std::move(text)); }
};

// Discards everything (the default when the caller passes no log).
class NullLog final : public AgentLog {
 public:
  void log(char, std::string_view, std::string) override {}
};

}  // namespace ota32::agent
