// The ESP-IDF log line "<L> (<ms>) <tag>: <text>" with a virtual, deterministic millisecond clock: the
// time advances by what printing the line at 115200 baud and processing the data would take, never by
// wall time, so the same flash gives the same log (power-cut sweeps replay it).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ota32 {

struct LogLine {
  char level = 'I';  // E, W, I
  uint32_t ms = 0;
  std::string tag;
  std::string text;
};

// "I (123) boot: Loaded app from partition at offset 0x10000"
std::string format_log_line(const LogLine& l);

class BootLog {
 public:
  explicit BootLog(uint32_t start_ms = 0) : us_(uint64_t{start_ms} * 1000) {}

  void log(char level, std::string tag, std::string text);
  void info(std::string tag, std::string text) { log('I', std::move(tag), std::move(text)); }
  void warn(std::string tag, std::string text) { log('W', std::move(tag), std::move(text)); }
  void error(std::string tag, std::string text) { log('E', std::move(tag), std::move(text)); }
  // Work that takes time without printing (reading and hashing flash).
  void spend_bytes(uint64_t bytes);
  void spend_ms(uint32_t ms) { us_ += uint64_t{ms} * 1000; }

  uint32_t now_ms() const { return static_cast<uint32_t>(us_ / 1000); }
  const std::vector<LogLine>& lines() const { return lines_; }
  std::vector<LogLine> take() { return std::move(lines_); }

 private:
  uint64_t us_;
  std::vector<LogLine> lines_;
};

}  // namespace ota32
