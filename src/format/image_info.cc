#include "format/image_info.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "format/app_image.h"
#include "format/esp8266_image.h"

namespace ota32 {
namespace {

std::string upper(std::string_view s) {
  std::string o(s);
  for (auto& c : o) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return o;
}

// Python's strict UTF-8 decoder: no overlongs, no surrogates, nothing above U+10FFFF.
bool valid_utf8(ByteView b) {
  size_t i = 0;
  while (i < b.size()) {
    uint8_t c = b[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t n;
    uint32_t cp, min;
    if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (b.size() - i <= n) return false;
    for (size_t k = 1; k <= n; ++k) {
      if ((b[i + k] & 0xC0) != 0x80) return false;
      cp = cp << 6 | (b[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

std::string rev(uint16_t v) { return fmt::format("v{}.{}", v / 100, v % 100); }

// What both readers (ESP32-family, ESP8266) hand to the report.
struct ReportSegment {
  uint32_t load_addr, shown_len, header_offset, data_offset, data_len;
};
struct ReportModel {
  int image_version = 1;
  uint32_t entry = 0;
  size_t segment_count = 0;  // the "Segments:" line
  uint8_t flash_mode = 0, flash_size_freq = 0;
  std::string_view flash_size;       // empty: invalid
  const ImageHeader* ext = nullptr;  // ESP32-family: the extended header block
  std::vector<ReportSegment> segments;
  uint8_t stored_checksum = 0, calculated_checksum = 0;
  std::optional<std::string> calc_hash;  // only with hash_appended = 1
  bool hash_valid = false;
};

// A 256- or 80-byte slice of a segment's data, zero-padded to a multiple of 4 as esptool holds it.
Bytes padded_data(ByteView data, const ReportSegment& s, size_t max) {
  Bytes out(std::min<size_t>(s.shown_len, max), 0);
  size_t real = std::min<size_t>(s.data_len, out.size());
  std::copy_n(data.begin() + s.data_offset, real, out.begin());
  return out;
}

void print_v1(std::string& o, const ReportModel& m, const ChipInfo& chip) {
  o += fmt::format("Image version: {}\n", m.image_version);
  o += m.entry ? fmt::format("Entry point: {:8x}\n", m.entry) : "Entry point not set\n";
  o += fmt::format("{} segments\n\n", m.segments.size());
  for (size_t i = 0; i < m.segments.size(); ++i) {
    const auto& s = m.segments[i];
    o += fmt::format("Segment {}: len {:#07x} load {:#010x} file_offs {:#010x} [{}]\n", i + 1, s.shown_len,
                     s.load_addr, s.header_offset, memory_type_names(chip, s.load_addr, ","));
  }
  if (m.stored_checksum == m.calculated_checksum) {
    o += fmt::format("Checksum: {:02x} (valid)\n", m.stored_checksum);
  } else {
    o += fmt::format("Checksum: {:02x} (invalid - calculated {:02x})\n", m.stored_checksum,
                     m.calculated_checksum);
  }
  if (m.calc_hash)
    o += fmt::format("Validation Hash: {} ({})\n", *m.calc_hash, m.hash_valid ? "valid" : "invalid");
}

// The --version 2 report; false (with r.error set) where esptool stops.
bool print_v2(ImageInfoReport& r, ByteView data, const ReportModel& m, const ChipInfo& chip,
              const std::string& title, const std::string& file_name) {
  std::string& o = r.text;
  auto heading = [&](const std::string& t) { o += fmt::format("\n{}\n{}\n", t, std::string(t.size(), '=')); };
  heading(title + " image header");
  o += fmt::format("Image version: {}\n", m.image_version);
  o += m.entry ? fmt::format("Entry point: {:>8}\n", fmt::format("{:#x}", m.entry)) : "Entry point not set\n";
  o += fmt::format("Segments: {}\n", m.segment_count);
  if (!m.flash_size.empty()) {
    o += fmt::format("Flash size: {}\n", m.flash_size);
  } else {
    o += fmt::format("WARNING: Invalid flash size ({:#x})\n", m.flash_size_freq & 0xF0);
  }
  if (auto n = flash_freq_name(chip, m.flash_size_freq & 0x0F); !n.empty()) {
    o += fmt::format("Flash freq: {}\n", n);
  } else {
    o += fmt::format("WARNING: Invalid flash frequency ({:#x})\n", m.flash_size_freq & 0x0F);
  }
  if (auto n = flash_mode_name(m.flash_mode); !n.empty()) {
    o += fmt::format("Flash mode: {}\n", n);
  } else {
    o += fmt::format("WARNING: Invalid flash mode ({})\n", m.flash_mode);
  }

  if (m.ext != nullptr) {
    const ImageHeader& h = *m.ext;
    heading(title + " extended image header");
    o += fmt::format("WP pin: {:#x}{}\n", h.wp_pin, h.wp_pin == 0xEE ? " (disabled)" : "");
    o += fmt::format(
        "Flash pins drive settings: clk_drv: {:#x}, q_drv: {:#x}, d_drv: {:#x}, cs0_drv: {:#x}, hd_drv: "
        "{:#x}, wp_drv: {:#x}\n",
        h.spi_pin_drv[0] & 15, h.spi_pin_drv[0] >> 4, h.spi_pin_drv[1] & 15, h.spi_pin_drv[1] >> 4,
        h.spi_pin_drv[2] & 15, h.spi_pin_drv[2] >> 4);
    const ChipInfo* by_id = find_chip_by_id(h.chip_id);
    o += fmt::format("Chip ID: {} ({})\n", h.chip_id, by_id ? by_id->display_name : "Unknown ID");
    o += fmt::format("Minimal chip revision: {}, (legacy min_rev = {})\n", rev(h.min_chip_rev_full),
                     h.min_chip_rev);
    o += fmt::format("Maximal chip revision: {}\n", rev(h.max_chip_rev_full));
  }

  heading("Segments information");
  o += "Segment   Length   Load addr   File offs  Memory types\n";
  o += "-------  -------  ----------  ----------  ------------\n";
  Bytes app_desc, boot_desc;
  for (size_t i = 0; i < m.segments.size(); ++i) {
    const auto& s = m.segments[i];
    o += fmt::format("{:>7}  {:#07x}  {:#010x}  {:#010x}  {}\n", i, s.shown_len, s.load_addr, s.header_offset,
                     memory_type_names(chip, s.load_addr, ", "));
    // esptool v4.8.1 keeps the last DROM segment's first 256 bytes, else the last DRAM one's first 80.
    if (has_memory_type(chip, s.load_addr, "DROM")) {
      app_desc = padded_data(data, s, kAppDescSize);
    } else if (has_memory_type(chip, s.load_addr, "DRAM") && s.shown_len >= kBootloaderDescSize) {
      boot_desc = padded_data(data, s, kBootloaderDescSize);
    }
  }

  heading(title + " image footer");
  if (m.stored_checksum == m.calculated_checksum) {
    o += fmt::format("Checksum: {:#x} (valid)\n", m.stored_checksum);
  } else {
    o += fmt::format("Checksum: {:#x} (invalid - calculated {:02x})\n", m.stored_checksum,
                     m.calculated_checksum);
  }
  if (m.calc_hash)
    o += fmt::format("Validation hash: {} ({})\n", *m.calc_hash, m.hash_valid ? "valid" : "invalid");

  auto stop = [&](std::string msg) {
    r.error = Error(ErrorCode::corrupt, fmt::format("{}: {}", file_name, msg));
    return false;
  };
  auto str_line = [&](std::string_view label, ByteView field, size_t off) -> bool {
    if (!valid_utf8(field))
      return stop(fmt::format("{} at image offset {:#x} is not valid UTF-8", label, off));
    o += fmt::format("{}: {}\n", label, as_chars(field));
    return true;
  };
  if (!app_desc.empty()) {
    if (app_desc.size() < kAppDescSize) {
      return stop(fmt::format("the DROM segment holding the app descriptor has only {} bytes, need {}",
                              app_desc.size(), kAppDescSize));
    }
    if (load_le32(app_desc.data()) != kAppDescMagic) return true;
    const ByteView d(app_desc);  // offsets in messages are within the descriptor
    heading("Application information");
    if (!str_line("Project name", d.subspan(0x30, 32), 0x30)) return false;
    if (!str_line("App version", d.subspan(0x10, 32), 0x10)) return false;
    if (!valid_utf8(d.subspan(0x60, 16)) || !valid_utf8(d.subspan(0x50, 16))) {
      return stop("app descriptor date/time is not valid UTF-8");
    }
    o += fmt::format("Compile time: {} {}\n", as_chars(d.subspan(0x60, 16)), as_chars(d.subspan(0x50, 16)));
    o += fmt::format("ELF file SHA256: {}\n", to_hex(d.subspan(0x90, 32)));
    if (!str_line("ESP-IDF", d.subspan(0x70, 32), 0x70)) return false;
    o += fmt::format("Secure version: {}\n", load_le32(&d[4]));
  } else if (!boot_desc.empty() && boot_desc[0] == kBootloaderDescMagic) {
    const ByteView d(boot_desc);
    heading("Bootloader information");
    o += fmt::format("Bootloader version: {}\n", load_le32(&d[4]));
    if (!str_line("ESP-IDF", d.subspan(8, 32), 8)) return false;
    if (!str_line("Compile time", d.subspan(40, 24), 40)) return false;
  }
  return true;
}

}  // namespace

ImageInfoReport image_info_report(ByteView data, const ImageInfoOptions& opt) {
  ImageInfoReport r;
  std::string& o = r.text;
  auto fail = [&](std::string msg) {
    r.error = Error(ErrorCode::corrupt, fmt::format("{}: {}", opt.file_name, msg));
    return r;
  };
  o += fmt::format("File size: {} (bytes)\n", data.size());
  if (data.empty()) return fail("file is empty");
  if (data[0] != kImageMagic && data[0] != kEsp8266V2Magic) {
    return fail(fmt::format("This is not a valid image (invalid magic number: {:#x})", data[0]));
  }
  const ChipInfo* chip = opt.chip;
  std::string title;
  if (chip == nullptr) {
    // esptool v4.8.1: the byte after the (up to) 16 bytes past the common header must be hash_appended 0/1,
    // and the low byte of chip_id a known chip; otherwise the image is an ESP8266 one. Also for magic 0xEA.
    if (data.size() <= 8) {
      return fail(fmt::format("truncated image header: {} bytes, need more than 8 to detect the chip type",
                              data.size()));
    }
    const uint8_t last = data[std::min<size_t>(data.size(), kImageHeaderSize) - 1];
    chip = last > 1 ? nullptr : find_chip_by_id(data.size() > 0x0C ? data[0x0C] : 0);
    if (chip == nullptr) chip = &esp8266_chip();
    title = upper(chip->display_name);
    o += fmt::format("Detected image type: {}\n", title);
  } else {
    title = upper(normalise_chip_name(opt.chip_arg.empty() ? chip->name : opt.chip_arg));
  }

  r.chip = chip;
  ReportModel m;
  std::optional<AppImage> esp32_image;  // m.ext points into it
  if (is_esp8266(*chip)) {
    std::vector<std::string> warnings;
    auto img = parse_esp8266_image(data, opt.file_name, warnings);
    for (const auto& w : warnings) o += w + "\n";
    if (!img) {
      r.error = img.error();
      return r;
    }
    m.image_version = img->version;
    m.entry = img->entry;
    m.segment_count = img->segments.size();
    m.flash_mode = img->flash_mode;
    m.flash_size_freq = img->flash_size_freq;
    m.flash_size = esp8266_flash_size_name(img->flash_size_freq & 0xF0);
    for (const auto& s : img->segments) {
      m.segments.push_back({s.load_addr, s.shown_len, s.header_offset,
                            s.header_offset + static_cast<uint32_t>(kSegmentHeaderSize), s.data_len});
    }
    m.stored_checksum = img->stored_checksum;
    m.calculated_checksum = img->calculated_checksum;
  } else {
    if (data[0] != kImageMagic) return fail(fmt::format("Invalid firmware image magic={:#x}", data[0]));
    if (data.size() >= kImageHeaderSize && load_le16(&data[0x0C]) != chip->chip_id) {
      o += fmt::format(
          "Unexpected chip id in image. Expected {} but value was {}. Is this image for a different "
          "chip model?\n",
          chip->chip_id, load_le16(&data[0x0C]));
    }
    auto parsed = parse_image(data, opt.file_name);
    if (!parsed) {
      r.error = parsed.error();
      return r;
    }
    const AppImage& img = esp32_image.emplace(std::move(*parsed));
    const ImageHeader& h = img.header;
    m.entry = h.entry_addr;
    m.segment_count = h.segment_count;
    m.flash_mode = h.spi_mode;
    m.flash_size_freq = h.spi_speed_size;
    m.flash_size = flash_size_name(h.spi_size());
    m.ext = &img.header;
    for (const auto& s : img.segments) {
      m.segments.push_back({s.load_addr, s.load_addr != 0 ? (s.data_len + 3) & ~3u : s.data_len,
                            s.header_offset(), s.data_offset, s.data_len});
    }
    m.stored_checksum = img.stored_checksum;
    m.calculated_checksum = img.calculated_checksum;
    if (h.hash_appended == 1) {
      const Sha256Digest calc = image_sha256(img, data);  // once: it is most of the work on a big image
      m.calc_hash = to_hex(calc);
      m.hash_valid = img.stored_sha256 && *img.stored_sha256 == calc;
    }
  }
  if (opt.version == 1) {
    print_v1(o, m, *chip);
  } else {
    print_v2(r, data, m, *chip, title, opt.file_name);
  }
  return r;
}

}  // namespace ota32
