#include "format/image_info.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "format/app_image.h"

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

// A 256- or 80-byte slice of a segment's data, zero-padded to a multiple of 4 as esptool holds it.
Bytes padded_data(ByteView data, const ImageSegment& s, size_t max) {
  size_t len = s.data_len;
  if (s.load_addr != 0) len = (len + 3) & ~size_t{3};
  Bytes out(std::min(len, max), 0);
  size_t real = std::min<size_t>(s.data_len, out.size());
  std::copy_n(data.begin() + s.data_offset, real, out.begin());
  return out;
}

uint32_t shown_len(const ImageSegment& s) { return s.load_addr != 0 ? (s.data_len + 3) & ~3u : s.data_len; }

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
  if (data[0] != 0xE9) {
    if (data[0] == 0xEA) return fail("ESP8266 \"v2\" images (magic 0xea) are not supported");
    return fail(fmt::format("This is not a valid image (invalid magic number: {:#x})", data[0]));
  }
  const ChipInfo* chip = opt.chip;
  std::string title;
  if (chip == nullptr) {
    if (data.size() < kImageHeaderSize) {
      return fail(fmt::format("truncated image header: {} bytes, need {}", data.size(), kImageHeaderSize));
    }
    if (data[0x17] > 1) {
      return fail(
          fmt::format("hash_appended byte at offset 0x17 is {:#04x}: not an ESP32-family image (ESP8266 "
                      "images are not supported)",
                      data[0x17]));
    }
    chip = find_chip_by_id(data[0x0C]);  // esptool looks at the low byte only
    if (chip == nullptr) {
      return fail(
          fmt::format("unknown chip id {} at offset 0xc: not an ESP32-family image (ESP8266 images are not "
                      "supported)",
                      load_le16(&data[0x0C])));
    }
    title = upper(chip->display_name);
    o += fmt::format("Detected image type: {}\n", title);
  } else {
    title = upper(normalise_chip_name(opt.chip_arg.empty() ? chip->name : opt.chip_arg));
  }
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
  const AppImage& img = *parsed;
  const ImageHeader& h = img.header;
  const Sha256Digest calc_digest = image_sha256(img, data);  // once: it is most of the work on a big image
  const bool hash_valid = img.stored_sha256 && *img.stored_sha256 == calc_digest;
  const std::string calc_hash = to_hex(calc_digest);

  if (opt.version == 1) {
    o += "Image version: 1\n";
    o += h.entry_addr ? fmt::format("Entry point: {:8x}\n", h.entry_addr) : "Entry point not set\n";
    o += fmt::format("{} segments\n\n", img.segments.size());
    for (size_t i = 0; i < img.segments.size(); ++i) {
      const auto& s = img.segments[i];
      o += fmt::format("Segment {}: len {:#07x} load {:#010x} file_offs {:#010x} [{}]\n", i + 1, shown_len(s),
                       s.load_addr, s.header_offset(), memory_type_names(*chip, s.load_addr, ","));
    }
    if (img.stored_checksum == img.calculated_checksum) {
      o += fmt::format("Checksum: {:02x} (valid)\n", img.stored_checksum);
    } else {
      o += fmt::format("Checksum: {:02x} (invalid - calculated {:02x})\n", img.stored_checksum,
                       img.calculated_checksum);
    }
    if (h.hash_appended == 1) {
      o += fmt::format("Validation Hash: {} ({})\n", calc_hash, hash_valid ? "valid" : "invalid");
    }
    return r;
  }

  auto heading = [&](const std::string& t) { o += fmt::format("\n{}\n{}\n", t, std::string(t.size(), '=')); };
  heading(title + " image header");
  o += "Image version: 1\n";
  o += h.entry_addr ? fmt::format("Entry point: {:>8}\n", fmt::format("{:#x}", h.entry_addr))
                    : "Entry point not set\n";
  o += fmt::format("Segments: {}\n", h.segment_count);
  if (auto n = flash_size_name(h.spi_size()); !n.empty()) {
    o += fmt::format("Flash size: {}\n", n);
  } else {
    o += fmt::format("WARNING: Invalid flash size ({:#x})\n", h.spi_size());
  }
  if (auto n = flash_freq_name(*chip, h.spi_speed()); !n.empty()) {
    o += fmt::format("Flash freq: {}\n", n);
  } else {
    o += fmt::format("WARNING: Invalid flash frequency ({:#x})\n", h.spi_speed());
  }
  if (auto n = flash_mode_name(h.spi_mode); !n.empty()) {
    o += fmt::format("Flash mode: {}\n", n);
  } else {
    o += fmt::format("WARNING: Invalid flash mode ({})\n", h.spi_mode);
  }

  heading(title + " extended image header");
  o += fmt::format("WP pin: {:#x}{}\n", h.wp_pin, h.wp_pin == 0xEE ? " (disabled)" : "");
  o += fmt::format(
      "Flash pins drive settings: clk_drv: {:#x}, q_drv: {:#x}, d_drv: {:#x}, cs0_drv: {:#x}, hd_drv: {:#x}, "
      "wp_drv: {:#x}\n",
      h.spi_pin_drv[0] & 15, h.spi_pin_drv[0] >> 4, h.spi_pin_drv[1] & 15, h.spi_pin_drv[1] >> 4,
      h.spi_pin_drv[2] & 15, h.spi_pin_drv[2] >> 4);
  const ChipInfo* by_id = find_chip_by_id(h.chip_id);
  o += fmt::format("Chip ID: {} ({})\n", h.chip_id, by_id ? by_id->display_name : "Unknown ID");
  o += fmt::format("Minimal chip revision: {}, (legacy min_rev = {})\n", rev(h.min_chip_rev_full),
                   h.min_chip_rev);
  o += fmt::format("Maximal chip revision: {}\n", rev(h.max_chip_rev_full));

  heading("Segments information");
  o += "Segment   Length   Load addr   File offs  Memory types\n";
  o += "-------  -------  ----------  ----------  ------------\n";
  Bytes app_desc, boot_desc;
  for (size_t i = 0; i < img.segments.size(); ++i) {
    const auto& s = img.segments[i];
    o += fmt::format("{:>7}  {:#07x}  {:#010x}  {:#010x}  {}\n", i, shown_len(s), s.load_addr,
                     s.header_offset(), memory_type_names(*chip, s.load_addr, ", "));
    // esptool v4.8.1 keeps the last DROM segment's first 256 bytes, else the last DRAM one's first 80.
    if (has_memory_type(*chip, s.load_addr, "DROM")) {
      app_desc = padded_data(data, s, kAppDescSize);
    } else if (has_memory_type(*chip, s.load_addr, "DRAM") && shown_len(s) >= kBootloaderDescSize) {
      boot_desc = padded_data(data, s, kBootloaderDescSize);
    }
  }

  heading(title + " image footer");
  if (img.stored_checksum == img.calculated_checksum) {
    o += fmt::format("Checksum: {:#x} (valid)\n", img.stored_checksum);
  } else {
    o += fmt::format("Checksum: {:#x} (invalid - calculated {:02x})\n", img.stored_checksum,
                     img.calculated_checksum);
  }
  if (h.hash_appended == 1) {
    o += fmt::format("Validation hash: {} ({})\n", calc_hash, hash_valid ? "valid" : "invalid");
  }

  auto str_line = [&](std::string_view label, ByteView field, size_t off) -> bool {
    if (!valid_utf8(field)) {
      r.error = Error(ErrorCode::corrupt, fmt::format("{}: {} at image offset {:#x} is not valid UTF-8",
                                                      opt.file_name, label, off));
      return false;
    }
    o += fmt::format("{}: {}\n", label, as_chars(field));
    return true;
  };
  if (!app_desc.empty()) {
    if (app_desc.size() < kAppDescSize) {
      return fail(fmt::format("the DROM segment holding the app descriptor has only {} bytes, need {}",
                              app_desc.size(), kAppDescSize));
    }
    if (load_le32(app_desc.data()) != kAppDescMagic) return r;
    const ByteView d(app_desc);
    const size_t base = 0;  // offsets in messages are within the descriptor
    heading("Application information");
    if (!str_line("Project name", d.subspan(0x30, 32), base + 0x30)) return r;
    if (!str_line("App version", d.subspan(0x10, 32), base + 0x10)) return r;
    if (!valid_utf8(d.subspan(0x60, 16)) || !valid_utf8(d.subspan(0x50, 16))) {
      return fail("app descriptor date/time is not valid UTF-8");
    }
    o += fmt::format("Compile time: {} {}\n", as_chars(d.subspan(0x60, 16)), as_chars(d.subspan(0x50, 16)));
    o += fmt::format("ELF file SHA256: {}\n", to_hex(d.subspan(0x90, 32)));
    if (!str_line("ESP-IDF", d.subspan(0x70, 32), base + 0x70)) return r;
    o += fmt::format("Secure version: {}\n", load_le32(&d[4]));
  } else if (!boot_desc.empty() && boot_desc[0] == kBootloaderDescMagic) {
    const ByteView d(boot_desc);
    heading("Bootloader information");
    o += fmt::format("Bootloader version: {}\n", load_le32(&d[4]));
    if (!str_line("ESP-IDF", d.subspan(8, 32), 8)) return r;
    if (!str_line("Compile time", d.subspan(40, 24), 40)) return r;
  }
  return r;
}

}  // namespace ota32
