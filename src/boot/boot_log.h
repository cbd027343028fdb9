// The ESP-IDF log line "<L> (<ms>) <tag>: <text>" with a virtual, deterministic millisecond clock: the
// time advances by what printing the line at 115200 baud and processing the data would take, never by
// wall time, so the same flash gives the same log (power-cut sweeps replay it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ota_ops/esp_log.h"

namespace ota32 {

struct LogLine {
  char level = 'I';  // E, W, I
  uint32_t ms = 0;
  std::string tag;
  std::string text;
};

// "I (123) boot: Loaded app from partition at offset 0x10000"
std::string format_log_line(const LogLine& l);

// An EspLog, so that the esp_ota_ops calls (ota_ops/) log into the boot's log and clock.
class BootLog : public EspLog {
 public:
  explicit BootLog(uint32_t start_ms = 0) : us_(uint64_t{start_ms} * 1000) {}

  void log(char level, std::string_view tag, std::string text) override;
  // Work that takes time without printing (reading and hashing flash).
  void spend_bytes(uint64_t bytes) override;
  void spend_ms(uint32_t ms) { us_ += uint64_t{ms} * 1000; }

  uint32_t now_ms() const { return static_cast<uint32_t>(us_ / 1000); }
  const std::vector<LogLine>& lines() const { return lines_; }
  std::vector<LogLine> take() { return std::move(lines_); }

 private:
  uint64_t us_;
  std::vector<LogLine> lines_;
};

}  // namespace ota32
