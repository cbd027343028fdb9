#include "format/image_layout.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "core/crc32.h"
#include "format/esp8266_image.h"

namespace ota32 {
namespace {

constexpr uint32_t kEsp32MapWorkaroundTail = 0x24;

struct Writer {
  Bytes out;
  unsigned segments = 0;
  const LayoutOptions* opt;

  Result<void> segment(uint32_t addr, Bytes data) {
    const uint64_t p = out.size();
    const uint64_t off = opt->elf_sha256_offset;
    if (off != 0 && off >= p && off < p + data.size()) {
      uint64_t patch = off - p;
      if (patch < kSegmentHeaderSize || patch + 32 > data.size()) {
        return Error(
            ErrorCode::invalid_argument,
            fmt::format("Cannot place SHA256 digest on segment boundary(elf_sha256_offset={}, file_pos={}, "
                        "segment_size={})",
                        off, p, data.size()));
      }
      patch -= kSegmentHeaderSize;
      if (std::any_of(data.begin() + static_cast<ptrdiff_t>(patch),
                      data.begin() + static_cast<ptrdiff_t>(patch + 32), [](uint8_t b) { return b != 0; })) {
        return Error(
            ErrorCode::invalid_argument,
            fmt::format("Contents of segment at SHA256 digest offset {:#x} are not all zero. Refusing to "
                        "overwrite.",
                        off));
      }
      std::memcpy(data.data() + patch, opt->elf_sha256.data(), 32);
    }
    uint8_t hdr[8];
    store_le32(hdr, addr);
    store_le32(hdr + 4, static_cast<uint32_t>(data.size()));
    out.insert(out.end(), hdr, hdr + 8);
    out.insert(out.end(), data.begin(), data.end());
    ++segments;
    return {};
  }
};

// esptool v4.8.1's BOOTLOADER_FLASH_OFFSET, which --ram-only-header subtracts from each flash padding: ESP32
// and ESP32-S2 0x1000, ESP32-P4 0x2000, every other chip 0 (v4.8.1's ESP32-C5 still inherits 0 from the C6).
uint32_t esptool_bootloader_offset(const ChipInfo& chip) {
  switch (chip.chip_id) {
    case 0x0000:
    case 0x0002:
      return 0x1000;
    case 0x0012:
      return 0x2000;
    default:
      return 0;
  }
}

// The §8.5 step 4 padding in front of a flash item at `addr` when the file is `pos` bytes long.
int64_t flash_alignment_padding(uint32_t addr, size_t pos, uint32_t A) {
  int64_t align_past = int64_t{addr % A} - int64_t{kSegmentHeaderSize};
  int64_t pad = int64_t{A} - int64_t(pos % A) + align_past;
  if (pad == 0 || pad == int64_t{A}) return 0;
  pad -= int64_t{kSegmentHeaderSize};
  if (pad < 0) pad += A;
  return pad;
}

uint8_t segment_checksum(ByteView image, size_t from, size_t to) {
  uint8_t checksum = kChecksumSeed;
  for (size_t pos = from; pos < to;) {
    uint32_t len = load_le32(&image[pos + 4]);
    for (size_t i = 0; i < len; ++i) checksum ^= image[pos + 8 + i];
    pos += 8 + len;
  }
  return checksum;
}

void append_checksum(Bytes& out, uint8_t checksum) {
  out.resize(out.size() + (15 - out.size() % 16), 0);
  out.push_back(checksum);
}

// ESP32 only: old bootloaders did not map a last page holding < 0x24 bytes of a flash segment, so esptool
// extends the segment written at file position `pos` (always with the 64 KiB page).
void esp32_map_workaround(const ChipInfo& chip, size_t pos, Bytes& data) {
  if (chip.chip_id != 0) return;
  uint32_t rem = static_cast<uint32_t>((pos + kSegmentHeaderSize + data.size()) % 0x10000);
  if (rem < kEsp32MapWorkaroundTail) data.resize(data.size() + (kEsp32MapWorkaroundTail - rem), 0);
}

Error same_page_error(uint32_t later, uint32_t earlier) {
  return Error(ErrorCode::invalid_argument,
               fmt::format("Segment loaded at {:#010x} lands in same 64KB flash mapping as segment loaded at "
                           "{:#010x}. Can't generate binary. Suggest changing linker script or ELF to merge "
                           "sections.",
                           later, earlier));
}

// ESP8266V3FirmwareImage.save (esptool v4.8.1), after the merge.
Result<Bytes> layout_esp8266_v3(std::vector<ImageItem> items, const LayoutOptions& opt) {
  constexpr uint32_t kIromMapStart = 0x40200000;  // ESP8266ROM.IROM_MAP_START; flash means strictly above
  std::stable_sort(items.begin(), items.end(),
                   [](const ImageItem& a, const ImageItem& b) { return a.addr < b.addr; });
  std::vector<ImageItem> flash, ram;
  for (auto& it : items) {
    if (it.data.empty()) continue;
    (it.addr > kIromMapStart ? flash : ram).push_back(std::move(it));
  }
  for (size_t i = 1; i < flash.size(); ++i) {
    if (flash[i].addr / 0x10000 == flash[i - 1].addr / 0x10000) {
      return same_page_error(flash[i].addr, flash[i - 1].addr);
    }
  }
  Writer w;
  w.opt = &opt;
  w.out.resize(8);
  for (auto& f : flash) {
    // The RTOS SDK's linker script leaves 8 empty bytes there for a segment header.
    if (f.name == ".flash.rodata")
      f.data.erase(f.data.begin(), f.data.begin() + std::min<size_t>(8, f.data.size()));
    OTA32_TRY(w.segment(f.addr, std::move(f.data)));
  }
  for (auto& r : ram) OTA32_TRY(w.segment(r.addr, std::move(r.data)));
  append_checksum(w.out, segment_checksum(w.out, 8, w.out.size()));
  w.out[0] = kImageMagic;
  w.out[1] = static_cast<uint8_t>(w.segments);
  w.out[2] = opt.flash_mode;
  w.out[3] = opt.flash_speed_size;
  store_le32(&w.out[4], opt.entry);
  Sha256Digest d = sha256(w.out);
  w.out.insert(w.out.end(), d.begin(), d.end());
  return std::move(w.out);
}

// ESP8266V2FirmwareImage.save (esptool v4.8.1), after the merge.
Result<LayoutResult> layout_esp8266_v2(std::vector<ImageItem> items, const LayoutOptions& opt) {
  constexpr uint32_t kIromStart = 0x40200000, kIromEnd = 0x40300000;  // ESP8266ROM.IROM_MAP_START / END
  std::vector<ImageItem> irom, normal;
  for (auto& it : items)
    (it.addr >= kIromStart && it.addr < kIromEnd ? irom : normal).push_back(std::move(it));
  if (irom.size() > 1) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("Found {} segments that could be irom0. Bad ELF file?", irom.size()));
  }
  LayoutResult res;
  Writer w;
  w.opt = &opt;
  auto common_header = [&](uint8_t magic, uint8_t count) {
    uint8_t h[8] = {magic, count, opt.flash_mode, opt.flash_speed_size};
    store_le32(h + 4, opt.entry);
    w.out.insert(w.out.end(), h, h + 8);
  };
  common_header(kEsp8266V2Magic, 4);  // IMAGE_V2_SEGMENT, a constant
  if (!irom.empty()) {
    res.irom_offset = irom[0].addr - kIromStart;
    Bytes data = std::move(irom[0].data);
    data.resize((data.size() + 15) & ~size_t{15}, 0);
    OTA32_TRY(w.segment(0, std::move(data)));
  }
  const size_t second = w.out.size();
  common_header(kImageMagic, static_cast<uint8_t>(normal.size()));
  for (auto& n : normal) OTA32_TRY(w.segment(n.addr, std::move(n.data)));
  append_checksum(w.out, segment_checksum(w.out, second + 8, w.out.size()));
  // esp8266_crc32: zlib's CRC-32, then bit 31 set ? inverted : plus one.
  uint32_t crc = crc32_le(0, w.out);
  crc = (crc & 0x80000000u) ? crc ^ 0xFFFFFFFFu : crc + 1;
  uint8_t c[4];
  store_le32(c, crc);
  w.out.insert(w.out.end(), c, c + 4);
  res.image = std::move(w.out);
  return res;
}

bool same_types(const ChipInfo& chip, uint32_t a, uint32_t b) {
  for (const auto& r : chip.memory_map) {
    if ((a >= r.start && a < r.end) != (b >= r.start && b < r.end)) return false;
  }
  return true;
}

}  // namespace

Result<LayoutResult> layout_image(const ChipInfo& chip, std::vector<ImageItem> items,
                                  const LayoutOptions& opt) {
  LayoutResult res;
  for (auto& it : items) it.data.resize((it.data.size() + 3) & ~size_t{3}, 0);
  if (opt.ram_only_header) {  // esptool sorts by address before merging only in this mode
    std::stable_sort(items.begin(), items.end(),
                     [](const ImageItem& a, const ImageItem& b) { return a.addr < b.addr; });
  }

  // Merge backwards: item i joins i-1 when contiguous, same memory types and same flag bit 2 (v4.8.x).
  if (!items.empty()) {
    std::vector<ImageItem> kept;
    for (size_t i = items.size() - 1; i > 0; --i) {
      ImageItem& prev = items[i - 1];
      ImageItem& next = items[i];
      if (same_types(chip, prev.addr, next.addr) && next.addr == prev.addr + prev.data.size() &&
          (next.flags & 4) == (prev.flags & 4)) {
        prev.data.insert(prev.data.end(), next.data.begin(), next.data.end());
        ++res.merged;
      } else {
        kept.push_back(std::move(next));
      }
    }
    kept.push_back(std::move(items[0]));
    std::reverse(kept.begin(), kept.end());
    items = std::move(kept);
  }
  if (opt.on_merged) opt.on_merged(res.merged);
  if (items.size() > kMaxSegments) {
    return Error(
        ErrorCode::invalid_argument,
        fmt::format("Invalid segment count {} (max 16). Usually this indicates a linker script problem.",
                    items.size()));
  }

  if (opt.esp8266_v2) return layout_esp8266_v2(std::move(items), opt);
  if (opt.esp8266_v3) {
    OTA32_ASSIGN(res.image, layout_esp8266_v3(std::move(items), opt));
    return res;
  }

  const uint32_t A = opt.mmu_page_size;
  std::stable_sort(items.begin(), items.end(),
                   [](const ImageItem& a, const ImageItem& b) { return a.addr < b.addr; });
  std::deque<ImageItem> flash, ram;
  for (auto& it : items) (segment_is_mapped(chip, it.addr) ? flash : ram).push_back(std::move(it));
  auto move_to_front = [](std::deque<ImageItem>& list, std::string_view name) {
    auto f = std::find_if(list.begin(), list.end(), [&](const ImageItem& i) { return i.name == name; });
    if (f != list.end() && f != list.begin()) {
      ImageItem it = std::move(*f);
      list.erase(f);
      list.push_front(std::move(it));
    }
  };
  move_to_front(flash, ".flash.appdesc");
  move_to_front(ram, ".dram0.bootdesc");
  for (size_t i = 1; i < flash.size(); ++i) {
    if (flash[i].addr / A == flash[i - 1].addr / A) return same_page_error(flash[i].addr, flash[i - 1].addr);
  }

  Writer w;
  w.opt = &opt;
  w.out.resize(kImageHeaderSize);
  unsigned header_segments = 0;
  if (opt.ram_only_header) {
    for (auto& r : ram) OTA32_TRY(w.segment(r.addr, std::move(r.data)));
    header_segments = w.segments;
    append_checksum(w.out, segment_checksum(w.out, kImageHeaderSize, w.out.size()));
    const int64_t offset = esptool_bootloader_offset(chip);
    for (auto it = flash.rbegin(); it != flash.rend(); ++it) {
      int64_t pad = flash_alignment_padding(it->addr, w.out.size(), A);
      if (pad < offset - int64_t{kSegmentHeaderSize}) pad += A;
      pad -= offset;
      OTA32_TRY(w.segment(0, Bytes(static_cast<size_t>(pad), 0)));
      esp32_map_workaround(chip, w.out.size(), it->data);
      OTA32_TRY(w.segment(it->addr, std::move(it->data)));
    }
  }
  while (!opt.ram_only_header && !flash.empty()) {
    ImageItem& s = flash.front();
    int64_t pad = flash_alignment_padding(s.addr, w.out.size(), A);
    if (pad > 0) {
      if (!ram.empty() && pad > int64_t{kSegmentHeaderSize}) {
        ImageItem& r = ram.front();
        size_t cut = std::min(r.data.size(), static_cast<size_t>(pad));
        Bytes piece(r.data.begin(), r.data.begin() + static_cast<ptrdiff_t>(cut));
        r.data.erase(r.data.begin(), r.data.begin() + static_cast<ptrdiff_t>(cut));
        uint32_t addr = r.addr;
        r.addr += static_cast<uint32_t>(cut);
        if (r.data.empty()) ram.pop_front();
        OTA32_TRY(w.segment(addr, std::move(piece)));
      } else {
        OTA32_TRY(w.segment(0, Bytes(static_cast<size_t>(pad), 0)));
      }
      continue;
    }
    esp32_map_workaround(chip, w.out.size(), s.data);
    OTA32_TRY(w.segment(s.addr, std::move(s.data)));
    flash.pop_front();
  }
  if (!opt.ram_only_header) {
    for (auto& r : ram) OTA32_TRY(w.segment(r.addr, std::move(r.data)));
  }

  LayoutOptions::SecurePad sp = opt.secure_pad;
  if (sp == LayoutOptions::SecurePad::v1 && chip.chip_id != 0) sp = LayoutOptions::SecurePad::none;
  if (sp != LayoutOptions::SecurePad::none) {
    if (!opt.append_digest) {
      return Error(ErrorCode::invalid_argument,
                   "secure_pad only applies if a SHA-256 digest is also appended to the image");
    }
    int64_t after = sp == LayoutOptions::SecurePad::v2 ? 32 : 32 + 4 + 64 + 12;
    int64_t pad = (int64_t{A} - int64_t((w.out.size() + 8) % A) - 16 - after) % int64_t{A};
    if (pad < 0) pad += A;
    OTA32_TRY(w.segment(0, Bytes(static_cast<size_t>(pad), 0)));
  }

  // Checksum over the segment data: re-walk what was written (with --ram-only-header it is already there).
  if (!opt.ram_only_header) {
    append_checksum(w.out, segment_checksum(w.out, kImageHeaderSize, w.out.size()));
    header_segments = w.segments;
  }

  ImageHeader h;
  h.segment_count = static_cast<uint8_t>(header_segments);
  h.spi_mode = opt.flash_mode;
  h.spi_speed_size = opt.flash_speed_size;
  h.entry_addr = opt.entry;
  h.chip_id = chip.chip_id;
  h.min_chip_rev = opt.min_rev;
  h.min_chip_rev_full = opt.min_rev_full;
  h.max_chip_rev_full = opt.max_rev_full;
  h.hash_appended = opt.append_digest ? 1 : 0;
  write_image_header(h, w.out.data());

  if (opt.append_digest) {
    Sha256Digest d = sha256(w.out);
    w.out.insert(w.out.end(), d.begin(), d.end());
  }
  if (opt.pad_to_size != 0 && w.out.size() % opt.pad_to_size != 0) {
    w.out.resize(w.out.size() + (opt.pad_to_size - w.out.size() % opt.pad_to_size), 0xFF);
  }
  res.image = std::move(w.out);
  return res;
}

}  // namespace ota32
