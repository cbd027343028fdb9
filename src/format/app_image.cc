#include "format/app_image.h"

#include <fmt/format.h>

#include <cstring>

namespace ota32 {
namespace {

std::string field_string(ByteView b) {
  const char* p = reinterpret_cast<const char*>(b.data());
  return std::string(p, strnlen(p, b.size()));
}

Error corrupt(std::string_view file, std::string msg) {
  return Error(ErrorCode::corrupt, fmt::format("{}: {}", file, msg));
}

uint8_t xor_bytes(ByteView b) {
  // 8 bytes at a time, then folded: the checksum runs over every data byte of a 4 MiB image.
  uint64_t acc = 0;
  size_t i = 0;
  for (; i + 8 <= b.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    acc ^= w;
  }
  acc ^= acc >> 32;
  acc ^= acc >> 16;
  acc ^= acc >> 8;
  auto x = static_cast<uint8_t>(acc);
  for (; i < b.size(); ++i) x ^= b[i];
  return x;
}

}  // namespace

std::string_view flash_mode_name(uint8_t mode) {
  static constexpr std::string_view kNames[] = {"QIO", "QOUT", "DIO", "DOUT"};
  return mode < 4 ? kNames[mode] : std::string_view{};
}

Result<ImageHeader> parse_image_header(ByteView b) {
  if (b.size() < kImageHeaderSize) {
    return Error(ErrorCode::corrupt,
                 fmt::format("image header: truncated: need {} bytes, have {}", kImageHeaderSize, b.size()));
  }
  ImageHeader h;
  h.magic = b[0];
  if (h.magic != kImageMagic) {
    return Error(
        ErrorCode::corrupt,
        fmt::format("invalid magic byte {:#04x} at offset 0x0 (expected 0xe9; nothing flashed here?)",
                    h.magic));
  }
  h.segment_count = b[1];
  h.spi_mode = b[2];
  h.spi_speed_size = b[3];
  h.entry_addr = load_le32(&b[4]);
  h.wp_pin = b[8];
  h.spi_pin_drv = {b[9], b[10], b[11]};
  h.chip_id = load_le16(&b[12]);
  h.min_chip_rev = b[14];
  h.min_chip_rev_full = load_le16(&b[15]);
  h.max_chip_rev_full = load_le16(&b[17]);
  h.hash_appended = b[23];
  return h;
}

void write_image_header(const ImageHeader& h, uint8_t out[kImageHeaderSize]) {
  std::memset(out, 0, kImageHeaderSize);
  out[0] = h.magic;
  out[1] = h.segment_count;
  out[2] = h.spi_mode;
  out[3] = h.spi_speed_size;
  store_le32(out + 4, h.entry_addr);
  out[8] = h.wp_pin;
  out[9] = h.spi_pin_drv[0];
  out[10] = h.spi_pin_drv[1];
  out[11] = h.spi_pin_drv[2];
  store_le16(out + 12, h.chip_id);
  out[14] = h.min_chip_rev;
  store_le16(out + 15, h.min_chip_rev_full);
  store_le16(out + 17, h.max_chip_rev_full);
  out[23] = h.hash_appended;
}

Result<AppDescription> parse_app_desc(ByteView b) {
  if (b.size() < kAppDescSize) {
    return Error(ErrorCode::corrupt,
                 fmt::format("app descriptor: truncated: need {} bytes, have {}", kAppDescSize, b.size()));
  }
  AppDescription d;
  d.magic_word = load_le32(&b[0]);
  if (d.magic_word != kAppDescMagic) {
    return Error(ErrorCode::not_found,
                 fmt::format("app descriptor: magic word {:#010x} (expected 0xabcd5432)", d.magic_word));
  }
  d.secure_version = load_le32(&b[4]);
  d.version = field_string(b.subspan(0x10, 32));
  d.project_name = field_string(b.subspan(0x30, 32));
  d.time = field_string(b.subspan(0x50, 16));
  d.date = field_string(b.subspan(0x60, 16));
  d.idf_ver = field_string(b.subspan(0x70, 32));
  std::memcpy(d.app_elf_sha256.data(), &b[0x90], 32);
  d.min_efuse_blk_rev_full = load_le16(&b[0xB0]);
  d.max_efuse_blk_rev_full = load_le16(&b[0xB2]);
  d.mmu_page_size = b[0xB4];
  return d;
}

std::array<uint8_t, kAppDescSize> serialize_app_desc(const AppDescription& d) {
  std::array<uint8_t, kAppDescSize> out{};
  auto put = [&](size_t off, std::string_view s, size_t n) {
    std::memcpy(&out[off], s.data(), std::min(s.size(), n));
  };
  store_le32(&out[0], d.magic_word);
  store_le32(&out[4], d.secure_version);
  put(0x10, d.version, 32);
  put(0x30, d.project_name, 32);
  put(0x50, d.time, 16);
  put(0x60, d.date, 16);
  put(0x70, d.idf_ver, 32);
  std::memcpy(&out[0x90], d.app_elf_sha256.data(), 32);
  store_le16(&out[0xB0], d.min_efuse_blk_rev_full);
  store_le16(&out[0xB2], d.max_efuse_blk_rev_full);
  out[0xB4] = d.mmu_page_size;
  return out;
}

std::array<uint8_t, kBootloaderDescSize> serialize_bootloader_desc(const BootloaderDescription& d) {
  std::array<uint8_t, kBootloaderDescSize> out{};
  out[0] = d.magic_byte;
  out[3] = d.secure_version;
  store_le32(&out[4], d.version);
  std::memcpy(&out[8], d.idf_ver.data(), std::min<size_t>(d.idf_ver.size(), 32));
  std::memcpy(&out[40], d.date_time.data(), std::min<size_t>(d.date_time.size(), 24));
  return out;
}

Result<BootloaderDescription> parse_bootloader_desc(ByteView b) {
  if (b.size() < kBootloaderDescSize) {
    return Error(ErrorCode::corrupt, fmt::format("bootloader descriptor: truncated: need {} bytes, have {}",
                                                 kBootloaderDescSize, b.size()));
  }
  if (b[0] != kBootloaderDescMagic) {
    return Error(ErrorCode::not_found,
                 fmt::format("bootloader descriptor: magic byte {:#04x} (expected 0x50)", b[0]));
  }
  BootloaderDescription d;
  d.magic_byte = b[0];
  d.secure_version = b[3];
  d.version = load_le32(&b[4]);
  d.idf_ver = field_string(b.subspan(8, 32));
  d.date_time = field_string(b.subspan(40, 24));
  return d;
}

Result<AppImage> parse_image(ByteView data, std::string_view file) {
  if (data.empty()) return corrupt(file, "file is empty");
  if (data[0] != kImageMagic) {
    return corrupt(file, fmt::format("invalid magic byte {:#04x} at offset 0x0 (expected 0xe9)", data[0]));
  }
  if (data.size() < kImageHeaderSize) {
    return corrupt(file,
                   fmt::format("truncated image header: {} bytes, need {}", data.size(), kImageHeaderSize));
  }
  AppImage img;
  OTA32_ASSIGN(img.header, parse_image_header(data.first(kImageHeaderSize)));
  if (img.header.hash_appended > 1) {
    return corrupt(file, fmt::format("hash_appended byte at offset 0x17 is {:#04x} (expected 0 or 1)",
                                     img.header.hash_appended));
  }
  uint64_t pos = kImageHeaderSize;
  img.segments.reserve(img.header.segment_count);
  for (unsigned i = 0; i < img.header.segment_count; ++i) {
    if (data.size() - pos < kSegmentHeaderSize) {
      return corrupt(file,
                     fmt::format("segment {} header at offset {:#x}: past the end of the file ({} bytes; "
                                 "header says {} segments)",
                                 i, pos, data.size(), img.header.segment_count));
    }
    ImageSegment s;
    s.load_addr = load_le32(&data[pos]);
    s.data_len = load_le32(&data[pos + 4]);
    s.data_offset = static_cast<uint32_t>(pos + kSegmentHeaderSize);
    if (s.data_len > data.size() - s.data_offset) {
      return corrupt(file,
                     fmt::format("segment {} at offset {:#x} (load {:#010x}): length {:#x} runs past the end "
                                 "of the file ({} bytes left)",
                                 i, pos, s.load_addr, s.data_len, data.size() - s.data_offset));
    }
    pos = uint64_t{s.data_offset} + s.data_len;
    img.segments.push_back(s);
  }
  img.checksum_offset = static_cast<uint32_t>(pos + (15 - pos % 16));
  if (img.checksum_offset >= data.size()) {
    return corrupt(file, fmt::format("checksum byte at offset {:#x}: past the end of the file ({} bytes)",
                                     img.checksum_offset, data.size()));
  }
  img.stored_checksum = data[img.checksum_offset];
  img.calculated_checksum = image_checksum(img, data);
  img.image_size = img.checksum_offset + 1;
  if (img.header.hash_appended == 1) {
    img.image_size += 32;
    if (data.size() >= img.image_size) {
      Sha256Digest d;
      std::memcpy(d.data(), &data[img.checksum_offset + 1], 32);
      img.stored_sha256 = d;
    }
  }
  if (img.segments.size() > kMaxSegments) {
    return corrupt(file, fmt::format("invalid segment count {} (max {}) in the header at offset 0x1",
                                     img.segments.size(), kMaxSegments));
  }
  if (!img.segments.empty() && img.segments[0].data_len >= kAppDescSize) {
    ByteView seg0 = data.subspan(img.segments[0].data_offset, kAppDescSize);
    if (auto d = parse_app_desc(seg0)) {
      img.app_desc = std::move(*d);
    } else if (auto bd = parse_bootloader_desc(seg0.first(kBootloaderDescSize))) {
      img.bootloader_desc = std::move(*bd);
    }
  } else if (!img.segments.empty() && img.segments[0].data_len >= kBootloaderDescSize) {
    if (auto bd = parse_bootloader_desc(data.subspan(img.segments[0].data_offset, kBootloaderDescSize))) {
      img.bootloader_desc = std::move(*bd);
    }
  }
  return img;
}

uint8_t image_checksum(const AppImage& img, ByteView data) {
  uint8_t c = kChecksumSeed;
  for (const auto& s : img.segments) c ^= xor_bytes(data.subspan(s.data_offset, s.data_len));
  return c;
}

Sha256Digest image_sha256(const AppImage& img, ByteView data) {
  return sha256(data.first(size_t{img.checksum_offset} + 1));
}

Result<void> verify_image(const AppImage& img, ByteView data, const VerifyOptions& opt) {
  std::string_view file = opt.file_name;
  const ChipInfo* chip = opt.chip;
  if (chip == nullptr) {
    chip = find_chip_by_id(img.header.chip_id);
    if (chip == nullptr) {
      return Error(ErrorCode::unsupported,
                   fmt::format("{}: header field chip_id at offset 0xc: unknown chip id {}", file,
                               img.header.chip_id));
    }
  } else if (img.header.chip_id != chip->chip_id) {
    return corrupt(file, fmt::format("header field chip_id at offset 0xc: expected {} ({}), found {}",
                                     chip->chip_id, chip->display_name, img.header.chip_id));
  }
  if (img.segments.size() > kMaxSegments) {
    return corrupt(file, fmt::format("segment count {} exceeds max {}", img.segments.size(), kMaxSegments));
  }

  // The MMU page the bootloader maps with: the chip default, or the app descriptor's (configurable chips).
  uint32_t page = chip->mmu_page_size;
  if (chip->mmu_page_size_configurable && img.app_desc && img.app_desc->mmu_page_size != 0) {
    uint8_t log2 = img.app_desc->mmu_page_size;
    if (log2 < 13 || log2 > 16) {
      return corrupt(file,
                     fmt::format("app descriptor field mmu_page_size at offset 0xd4: {} is not a valid page "
                                 "size (expected 13..16)",
                                 log2));
    }
    page = 1u << log2;
  }

  bool any_mapped = false;
  for (size_t i = 0; i < img.segments.size(); ++i) {
    const ImageSegment& s = img.segments[i];
    const uint32_t hdr = s.header_offset();
    if (s.data_len % 4 != 0 || s.data_len >= kMaxSegmentLength) {
      return corrupt(
          file, fmt::format("segment {} at offset {:#x}: invalid length {:#x} (expected a multiple of 4, "
                            "below 16 MiB)",
                            i, hdr, s.data_len));
    }
    if (s.load_addr < 0x10000) continue;  // padding: never loaded (IDF skips load_addr < 0x10000000 too)
    if (segment_is_mapped(*chip, s.load_addr)) {
      any_mapped = true;
      const AddrRange& win = chip->irom_map.contains(s.load_addr) ? chip->irom_map : chip->drom_map;
      if (uint64_t{s.load_addr} + s.data_len > win.end) {
        return corrupt(file,
                       fmt::format("segment {} at offset {:#x}: load {:#010x} + length {:#x} runs past the "
                                   "flash-mapped window end {:#010x}",
                                   i, hdr, s.load_addr, s.data_len, win.end));
      }
      if (s.data_offset % page != s.load_addr % page) {
        return corrupt(file,
                       fmt::format("segment {} at offset {:#x}: load address {:#010x} doesn't match data "
                                   "offset {:#010x}: expected offset {:#x} within the {} KiB MMU page, found "
                                   "{:#x}",
                                   i, hdr, s.load_addr, s.data_offset, s.load_addr % page, page / 1024,
                                   s.data_offset % page));
      }
      continue;
    }
    bool inside = false;
    for (const auto& r : chip->memory_map) {
      if (r.name == "PADDING") continue;
      if (s.load_addr >= r.start && s.load_addr < r.end && uint64_t{s.load_addr} + s.data_len <= r.end) {
        inside = true;
        break;
      }
    }
    if (!inside) {
      return corrupt(
          file, fmt::format("segment {} at offset {:#x}: load address {:#010x}-{:#010x} is outside {}'s "
                            "memory map",
                            i, hdr, s.load_addr, uint64_t{s.load_addr} + s.data_len, chip->display_name));
    }
  }

  bool is_app = opt.kind == ImageKind::app || (opt.kind == ImageKind::automatic && any_mapped);
  if (is_app) {
    if (img.segments.empty()) return corrupt(file, "app image has no segments");
    const ImageSegment& s0 = img.segments[0];
    if (!chip->drom_map.contains(s0.load_addr)) {
      return corrupt(file, fmt::format("segment 0 at offset 0x18: load address {:#010x} is not in DROM "
                                       "({:#010x}-{:#010x}): the app descriptor must be there",
                                       s0.load_addr, chip->drom_map.start, chip->drom_map.end));
    }
    if (s0.data_len < kAppDescSize) {
      return corrupt(file,
                     fmt::format("segment 0 at offset 0x18: length {:#x} is too short for the {}-byte app "
                                 "descriptor",
                                 s0.data_len, kAppDescSize));
    }
    uint32_t magic = load_le32(&data[s0.data_offset]);
    if (magic != kAppDescMagic) {
      return corrupt(file,
                     fmt::format("app descriptor at offset {:#x}: magic word expected 0xabcd5432, found "
                                 "{:#010x}",
                                 s0.data_offset, magic));
    }
  }

  uint8_t calc = image_checksum(img, data);
  if (calc != img.stored_checksum) {
    return corrupt(file, fmt::format("checksum at offset {:#x}: expected {:#04x} (calculated), found {:#04x}",
                                     img.checksum_offset, calc, img.stored_checksum));
  }
  if (opt.check_hash && img.header.hash_appended == 1) {
    uint32_t at = img.checksum_offset + 1;
    if (!img.stored_sha256) {
      return corrupt(file, fmt::format("SHA-256 at offset {:#x}: truncated ({} of 32 bytes present)", at,
                                       data.size() > at ? data.size() - at : 0));
    }
    Sha256Digest calc_hash = image_sha256(img, data);
    if (calc_hash != *img.stored_sha256) {
      return corrupt(file, fmt::format("SHA-256 at offset {:#x}: expected {} (calculated), found {}", at,
                                       to_hex(calc_hash), to_hex(*img.stored_sha256)));
    }
  }
  return {};
}

}  // namespace ota32
