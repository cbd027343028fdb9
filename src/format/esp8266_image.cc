#include "format/esp8266_image.h"

#include <fmt/format.h>

#include "format/app_image.h"

namespace ota32 {
namespace {

struct Reader {
  ByteView data;
  std::string_view file;
  size_t pos = 0;

  Error short_read(std::string_view what, size_t need) const {
    return Error(ErrorCode::corrupt, fmt::format("{}: {} at offset {:#x}: {} bytes left, need {}", file, what,
                                                 pos, data.size() - pos, need));
  }
};

struct CommonHeader {
  uint8_t magic, count, mode, size_freq;
  uint32_t entry;
};

Result<CommonHeader> read_common_header(Reader& r, uint8_t expected_magic, std::string_view what) {
  if (r.data.size() - r.pos < 8) return r.short_read(what, 8);
  const uint8_t* p = r.data.data() + r.pos;
  CommonHeader h{p[0], p[1], p[2], p[3], load_le32(p + 4)};
  if (h.magic != expected_magic) {
    return Error(ErrorCode::corrupt, fmt::format("{}: Invalid firmware image magic={:#x} (offset {:#x})",
                                                 r.file, h.magic, r.pos));
  }
  r.pos += 8;
  return h;
}

// esptool's load_segment: the header, the suspicious-segment warning (not for v2's irom0), the data.
Result<Esp8266Segment> read_segment(Reader& r, bool irom, std::vector<std::string>& warnings) {
  Esp8266Segment s;
  s.header_offset = static_cast<uint32_t>(r.pos);
  if (r.data.size() - r.pos < 8) return r.short_read("segment header", 8);
  s.load_addr = load_le32(&r.data[r.pos]);
  s.data_len = load_le32(&r.data[r.pos + 4]);
  r.pos += 8;
  if (!irom && (s.load_addr > 0x40200000 || s.load_addr < 0x3FFE0000 || s.data_len > 65536)) {
    warnings.push_back(fmt::format("WARNING: Suspicious segment {:#x}, length {}", s.load_addr, s.data_len));
  }
  if (r.data.size() - r.pos < s.data_len) {
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: End of file reading segment {:#x}, length {} (actual length {})", r.file,
                             s.load_addr, s.data_len, r.data.size() - r.pos));
  }
  s.shown_len = s.load_addr != 0 ? (s.data_len + 3) & ~3u : s.data_len;
  r.pos += s.data_len;
  return s;
}

}  // namespace

Result<Esp8266Image> parse_esp8266_image(ByteView data, std::string_view file_name,
                                         std::vector<std::string>& warnings) {
  Reader r{data, file_name};
  Esp8266Image img;
  if (data.empty()) return r.short_read("image header", 8);
  size_t count = 0;
  if (data[0] == kEsp8266V2Magic) {
    img.version = 2;
    OTA32_ASSIGN(CommonHeader first, read_common_header(r, kEsp8266V2Magic, "image header"));
    if (first.count != 4) {
      warnings.push_back(
          fmt::format("Warning: V2 header has unexpected \"segment\" count {} (usually 4)", first.count));
    }
    OTA32_ASSIGN(Esp8266Segment irom, read_segment(r, true, warnings));
    irom.load_addr = 0;  // saved with load address 0; esptool shows it so and leaves it out of the checksum
    irom.in_checksum = false;
    img.segments.push_back(irom);
    OTA32_ASSIGN(CommonHeader second, read_common_header(r, kImageMagic, "second image header"));
    if (first.mode != second.mode) {
      warnings.push_back(fmt::format(
          "WARNING: Flash mode value in first header ({:#04x}) disagrees with second ({:#04x}). Using second "
          "value.",
          first.mode, second.mode));
    }
    if (first.size_freq != second.size_freq) {
      warnings.push_back(fmt::format(
          "WARNING: Flash size/freq value in first header ({:#04x}) disagrees with second ({:#04x}). Using "
          "second value.",
          first.size_freq, second.size_freq));
    }
    if (first.entry != second.entry) {
      warnings.push_back(fmt::format(
          "WARNING: Entrypoint address in first header ({:#010x}) disagrees with second header ({:#010x}). "
          "Using second value.",
          first.entry, second.entry));
    }
    img.flash_mode = second.mode, img.flash_size_freq = second.size_freq, img.entry = second.entry;
    count = second.count;
  } else {
    OTA32_ASSIGN(CommonHeader h, read_common_header(r, kImageMagic, "image header"));
    img.flash_mode = h.mode, img.flash_size_freq = h.size_freq, img.entry = h.entry;
    count = h.count;
  }
  for (size_t i = 0; i < count; ++i) {
    OTA32_ASSIGN(Esp8266Segment s, read_segment(r, false, warnings));
    img.segments.push_back(s);
  }
  // The checksum is the last byte of the 16-byte block the segments end in.
  r.pos += 15 - r.pos % 16;
  if (r.pos >= data.size()) {
    return Error(ErrorCode::corrupt, fmt::format("{}: checksum byte at offset {:#x} is past the end of the "
                                                 "file ({} bytes)",
                                                 file_name, r.pos, data.size()));
  }
  img.checksum_offset = static_cast<uint32_t>(r.pos);
  img.stored_checksum = data[r.pos];
  uint8_t c = kChecksumSeed;
  for (const auto& s : img.segments) {
    if (!s.in_checksum) continue;
    const size_t from = s.header_offset + kSegmentHeaderSize;
    for (size_t i = 0; i < s.data_len; ++i) c ^= data[from + i];
  }
  img.calculated_checksum = c;
  if (img.segments.size() > kMaxSegments) {
    return Error(
        ErrorCode::corrupt,
        fmt::format("{}: Invalid segment count {} (max 16). Usually this indicates a linker script problem.",
                    file_name, img.segments.size()));
  }
  return img;
}

}  // namespace ota32
