// Where ESP-IDF-style log lines go ("I (8168) esp_ota_ops: ..."): the bootloader's BootLog, the agent's
// sinks, a test's collector. Below boot and agent, so that the esp_ota_ops calls both sides make log the
// same way.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ota32 {

class EspLog {
 public:
  virtual ~EspLog() = default;
  virtual void log(char level, std::string_view tag, std::string text) = 0;
  // Work that takes time on the chip without printing (flash writes, hashing): advances a virtual clock.
  virtual void spend_bytes(uint64_t bytes) { (void)bytes; }

  void info(std::string_view tag, std::string text) { log('I', tag, std::move(text)); }
  void warn(std::string_view tag, std::string text) { log('W', tag, std::move(text)); }
  void error(std::string_view tag, std::string text) { log('E', tag, std::move(text)); }
  void debug(std::string_view tag, std::string text) { log('D', tag, std::move(text)); }
};

// Discards everything (the default when the caller passes no log).
class NullEspLog final : public EspLog {
 public:
  void log(char, std::string_view, std::string) override {}
};

}  // namespace ota32
