#include "boot/boot_log.h"

#include <fmt/format.h>

namespace ota32 {

std::string format_log_line(const LogLine& l) {
  return fmt::format("{} ({}) {}: {}", l.level, l.ms, l.tag, l.text);
}

void BootLog::log(char level, std::string_view tag, std::string text) {
  LogLine l{level, now_ms(), std::string(tag), std::move(text)};
  // UART at 115200 baud, 10 bits a character: 86.8 us per character, plus the newline.
  us_ += (format_log_line(l).size() + 2) * 868 / 10;
  lines_.push_back(std::move(l));
}

// The bootloader reads and hashes flash at about 2.5 MB/s (the seed: 124176 bytes in ~50 ms).
void BootLog::spend_bytes(uint64_t bytes) { us_ += bytes * 2 / 5; }

}  // namespace ota32
