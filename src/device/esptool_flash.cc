#include "device/esptool_flash.h"

#include <fmt/format.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <cstring>

#include "core/hash.h"
#include "core/numbers.h"
#include "format/app_image.h"
#include "ota_ops/log_text.h"

namespace ota32 {

namespace {

constexpr uint32_t kWriteBlock = 0x4000;  // the stub's FLASH_WRITE_SIZE

constexpr std::array<std::string_view, 8> kSizeNames = {"1MB",  "2MB",  "4MB",  "8MB",
                                                        "16MB", "32MB", "64MB", "128MB"};

// esptool's --after choices and the line it prints last for each.
struct AfterChoice {
  std::string_view name, line;
};
constexpr std::array<AfterChoice, 4> kAfter = {{{"hard_reset", "Hard resetting via RTS pin..."},
                                                {"soft_reset", "Soft resetting..."},
                                                {"no_reset", "Staying in bootloader."},
                                                {"no_reset_stub", "Staying in flasher stub."}}};

const AfterChoice* after_choice(std::string_view name) {
  for (const auto& a : kAfter)
    if (a.name == name) return &a;
  return nullptr;
}

std::optional<uint8_t> mode_code(std::string_view m) {
  if (m == "qio") return 0;
  if (m == "qout") return 1;
  if (m == "dio") return 2;
  if (m == "dout") return 3;
  return std::nullopt;
}

std::optional<uint8_t> size_code(std::string_view s) {
  for (size_t i = 0; i < kSizeNames.size(); ++i) {
    if (kSizeNames[i] == s) return static_cast<uint8_t>(i << 4);
  }
  return std::nullopt;
}

uint64_t size_bytes(std::string_view s) { return (1ull << 20) << (*size_code(s) >> 4); }

std::string size_name_of(uint32_t bytes) {
  for (size_t i = 0; i < kSizeNames.size(); ++i) {
    if ((1ull << 20) << i == bytes) return std::string(kSizeNames[i]);
  }
  return {};
}

Result<void> check_params(const ChipInfo& chip, const WriteFlashOptions& opt) {
  // esptool's argparse choices for --after; refused before the flash is touched, like the others.
  if (!after_choice(opt.after)) {
    std::string names;
    for (const auto& a : kAfter) names += (names.empty() ? "" : ", ") + std::string(a.name);
    return Error(ErrorCode::invalid_argument,
                 fmt::format("--after: '{}' is not one of {}", opt.after, names));
  }
  if (opt.flash_mode != "keep" && !mode_code(opt.flash_mode)) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("--flash-mode: '{}' is not one of qio, qout, dio, dout, keep", opt.flash_mode));
  }
  if (opt.flash_freq != "keep") {
    bool ok = std::any_of(chip.flash_freqs.begin(), chip.flash_freqs.end(),
                          [&](const FlashFreq& f) { return f.name == opt.flash_freq; });
    if (!ok) {
      std::string names;
      for (const auto& f : chip.flash_freqs) names += (names.empty() ? "" : ", ") + std::string(f.name);
      return Error(
          ErrorCode::invalid_argument,
          fmt::format("Flash frequency '{}' is not supported by this chip type. Supported frequencies: {}",
                      opt.flash_freq, names));
    }
  }
  if (opt.flash_size != "keep" && opt.flash_size != "detect" && !size_code(opt.flash_size)) {
    std::string names;
    for (auto n : kSizeNames) names += (names.empty() ? "" : ", ") + std::string(n);
    return Error(ErrorCode::invalid_argument,
                 fmt::format("Flash size '{}' is not supported by this chip type. Supported sizes: {}",
                             opt.flash_size, names));
  }
  return {};
}

}  // namespace

Bytes zlib_compress9(ByteView data) {
  uLongf len = compressBound(data.size());
  Bytes out(len);
  int rc = compress2(out.data(), &len, data.data(), data.size(), 9);
  assert(rc == Z_OK);
  (void)rc;
  out.resize(len);
  return out;
}

std::vector<WriteProgress> write_progress(uint32_t addr, ByteView data, ByteView compressed, bool compress) {
  const size_t sent = compress ? compressed.size() : data.size();
  const size_t blocks = std::max<size_t>(1, (sent + kWriteBlock - 1) / kWriteBlock);
  std::vector<WriteProgress> out;
  z_stream zs{};
  if (compress) inflateInit(&zs);
  uint64_t written = 0;
  Bytes sink(1 << 16);
  for (size_t seq = 0; seq < blocks; ++seq) {
    out.push_back({static_cast<uint32_t>(addr + written), static_cast<int>(100 * (seq + 1) / blocks)});
    if (compress) {
      // What Python's decompressobj().decompress(block) returns: everything the block lets it inflate.
      const size_t off = seq * kWriteBlock, n = std::min<size_t>(kWriteBlock, compressed.size() - off);
      zs.next_in = const_cast<Bytef*>(compressed.data() + off);
      zs.avail_in = static_cast<uInt>(n);
      int rc;
      do {
        zs.next_out = sink.data();
        zs.avail_out = static_cast<uInt>(sink.size());
        rc = inflate(&zs, Z_SYNC_FLUSH);
        written += sink.size() - zs.avail_out;
      } while (rc == Z_OK && (zs.avail_in > 0 || zs.avail_out == 0));
    } else {
      written += kWriteBlock;
    }
  }
  if (compress) inflateEnd(&zs);
  return out;
}

Result<std::vector<std::string>> patch_flash_params(const ChipInfo& chip, uint32_t addr, Bytes& data,
                                                    const WriteFlashOptions& opt) {
  std::vector<std::string> lines;
  if (data.size() < 8 || addr != chip.bootloader_offset) return lines;
  if (opt.flash_mode == "keep" && opt.flash_freq == "keep" && opt.flash_size == "keep") return lines;
  if (data[0] != kImageMagic) {
    lines.push_back(fmt::format(
        "Warning: Image file at {:#x} doesn't look like an image file, so not changing any flash settings.",
        addr));
    return lines;
  }
  auto img = parse_image(data);
  if (!img || img->header.hash_appended > 1 || img->header.segment_count > kMaxSegments) {
    lines.push_back(fmt::format(
        "Warning: Image file at {:#x} is not a valid {} image, so not changing any flash settings.", addr,
        chip.display_name));
    return lines;
  }
  OTA32_TRY(check_params(chip, opt));
  uint8_t mode = data[2], speed_size = data[3];
  if (opt.flash_mode != "keep") mode = *mode_code(opt.flash_mode);
  if (opt.flash_freq != "keep") {
    for (const auto& f : chip.flash_freqs) {
      if (f.name == opt.flash_freq) {
        speed_size = static_cast<uint8_t>((speed_size & 0xF0) | f.code);
        break;
      }
    }
  }
  if (opt.flash_size != "keep")
    speed_size = static_cast<uint8_t>((speed_size & 0x0F) | *size_code(opt.flash_size));
  if (mode != data[2] || speed_size != data[3]) {
    data[2] = mode;
    data[3] = speed_size;
    lines.push_back(fmt::format("Flash params set to {:#06x}", (mode << 8) | speed_size));
  }
  if (img->header.hash_appended == 1) {
    const size_t end = img->checksum_offset + 1;  // header through the checksum byte
    auto digest = sha256(ByteView(data.data(), end));
    if (data.size() < end + digest.size()) data.resize(end + digest.size(), 0);
    std::memcpy(data.data() + end, digest.data(), digest.size());
    lines.push_back("SHA digest in image updated");
  }
  return lines;
}

Result<FlashPlan> plan_write_flash(const ChipInfo& chip, uint32_t flash_size, std::vector<FlashFile> files,
                                   const WriteFlashOptions& opt) {
  // Argument parsing: pairs whose sector ranges overlap, compared in address order.
  {
    std::vector<const FlashFile*> sorted;
    for (const auto& f : files) sorted.push_back(&f);
    std::stable_sort(sorted.begin(), sorted.end(), [](auto* a, auto* b) { return a->addr < b->addr; });
    uint64_t end = 0;
    for (const auto* f : sorted) {
      uint64_t start = f->addr & ~uint64_t{kFlashSectorSize - 1};
      uint64_t last =
          ((uint64_t{f->addr} + f->data.size() + kFlashSectorSize - 1) & ~uint64_t{kFlashSectorSize - 1});
      if (start < end) {
        return Error(ErrorCode::invalid_argument,
                     fmt::format("Detected overlap at address: {:#x} for file: {}", f->addr, f->name));
      }
      end = last;  // one past the last byte (esptool keeps the last byte; same comparison)
    }
  }
  OTA32_TRY(check_params(chip, opt));

  FlashPlan plan;
  plan.header_lines.push_back("Configuring flash size...");
  // Safety checks (esptool skips them with --force).
  if (!opt.force) {
    for (const auto& f : files) {
      auto img = parse_image(f.data, f.name);
      if (!img) continue;  // not an image (partition table, otadata): not checked
      if (img->header.chip_id != chip.chip_id) {
        return Error(
            ErrorCode::invalid_argument,
            fmt::format("{} is not an {} image (chip id {}, expected {}). Use --force to flash anyway.",
                        f.name, chip.display_name, img->header.chip_id, chip.chip_id));
      }
      if (img->header.min_chip_rev_full > opt.chip_revision) {
        return Error(
            ErrorCode::invalid_argument,
            fmt::format("{} requires chip revision {} or higher (this chip is revision {}). Use --force "
                        "to flash anyway.",
                        f.name, rev_text(img->header.min_chip_rev_full), rev_text(opt.chip_revision)));
      }
    }
  }
  // Fit check.
  uint64_t flash_end = flash_size;
  if (opt.flash_size != "keep" && opt.flash_size != "detect") {
    uint64_t given = size_bytes(opt.flash_size);
    if (given > flash_size) {
      plan.header_lines.push_back(fmt::format(
          "WARNING: Set --flash_size {} is larger than the available flash size of {}.", opt.flash_size,
          size_name_of(flash_size).empty() ? format_size(flash_size) : size_name_of(flash_size)));
    }
    flash_end = std::min(given, flash_end);
  }
  for (const auto& f : files) {
    if (uint64_t{f.addr} + f.data.size() > flash_end) {
      return Error(
          ErrorCode::out_of_range,
          fmt::format("File {} (length {}) at offset {} will not fit in {} bytes of flash. Change the "
                      "--flash_size argument, or flashing address.",
                      f.name, f.data.size(), f.addr, flash_end));
    }
  }
  if (opt.erase_all) {
    plan.header_lines.push_back("Erasing flash (this may take a while)...");
    plan.header_lines.push_back("Chip erase completed successfully in 0.0s");
  } else {
    for (const auto& f : files) {
      if (f.addr % kFlashSectorSize != 0) {
        plan.header_lines.push_back(fmt::format(
            "WARNING: Flash address {:#010x} is not aligned to a {:#x} byte flash sector. {:#x} bytes "
            "before this address will be erased.",
            f.addr, kFlashSectorSize, f.addr % kFlashSectorSize));
      }
      uint64_t start = f.addr & ~uint64_t{kFlashSectorSize - 1};
      uint64_t end =
          (uint64_t{f.addr} + f.data.size() + kFlashSectorSize - 1) & ~uint64_t{kFlashSectorSize - 1};
      plan.header_lines.push_back(
          fmt::format("Flash will be erased from {:#010x} to {:#010x}...", start, end - 1));
    }
  }
  WriteFlashOptions patch_opt = opt;
  if (patch_opt.flash_size == "detect") patch_opt.flash_size = size_name_of(flash_size);
  if (patch_opt.flash_size.empty()) patch_opt.flash_size = "keep";  // a size esptool has no code for
  for (auto& f : files) {
    FlashPlanItem item;
    item.addr = f.addr;
    item.name = f.name;
    if (f.data.empty()) {
      item.pre_lines.push_back(fmt::format("WARNING: File {} is empty", f.name));
      plan.items.push_back(std::move(item));
      continue;
    }
    item.data = std::move(f.data);
    item.data.resize((item.data.size() + 3) / 4 * 4, 0xFF);
    OTA32_ASSIGN(auto lines, patch_flash_params(chip, item.addr, item.data, patch_opt));
    item.pre_lines = std::move(lines);
    if (uint64_t{item.addr} + item.data.size() > flash_size) {
      return Error(ErrorCode::out_of_range,
                   fmt::format("File {} (length {}) at offset {} will not fit in {} bytes of flash.",
                               item.name, item.data.size(), item.addr, flash_size));
    }
    plan.items.push_back(std::move(item));
  }
  return plan;
}

Result<void> run_write_flash(Flash& flash, const FlashPlan& plan, const WriteFlashOptions& opt,
                             const LineSink& out) {
  for (const auto& l : plan.header_lines) out(l);
  if (opt.erase_all) OTA32_TRY(flash.erase(0, flash.size()));
  for (const auto& item : plan.items) {
    for (const auto& l : item.pre_lines) out(l);
    if (item.data.empty()) continue;
    const ByteView data = item.data;
    Bytes compressed;
    if (opt.compress) {
      compressed = zlib_compress9(data);
      out(fmt::format("Compressed {} bytes to {}...", data.size(), compressed.size()));
    }
    const auto progress = write_progress(item.addr, data, compressed, opt.compress);
    // The stub erases just ahead of the write pointer: a 64 KiB block when the next sector is 64 KiB
    // aligned and at least 16 sectors remain, else one sector.
    uint32_t next_erase = item.addr & ~(kFlashSectorSize - 1);
    const uint32_t erase_end = static_cast<uint32_t>(
        (uint64_t{item.addr} + data.size() + kFlashSectorSize - 1) & ~uint64_t{kFlashSectorSize - 1});
    auto erase_to = [&](uint64_t upto) -> Result<void> {
      while (!opt.erase_all && next_erase < erase_end && next_erase < upto) {
        uint32_t unit = (next_erase % kFlashBlockSize == 0 && erase_end - next_erase >= kFlashBlockSize)
                            ? kFlashBlockSize
                            : kFlashSectorSize;
        OTA32_TRY(flash.erase(next_erase, unit));
        next_erase += unit;
      }
      return {};
    };
    size_t pos = 0;
    for (size_t seq = 0; seq < progress.size(); ++seq) {
      out(fmt::format("Writing at {:#010x}... ({} %)", progress[seq].addr, progress[seq].percent));
      const size_t upto = seq + 1 < progress.size() ? progress[seq + 1].addr - item.addr : data.size();
      if (upto > pos) {
        OTA32_TRY(erase_to(uint64_t{item.addr} + upto));
        OTA32_TRY(flash.program(item.addr + static_cast<uint32_t>(pos), data.subspan(pos, upto - pos)));
        pos = upto;
      }
    }
    if (opt.compress) {
      out(fmt::format("Wrote {} bytes ({} compressed) at {:#010x} in 0.0 seconds...", data.size(),
                      compressed.size(), item.addr));
    } else {
      out(fmt::format("Wrote {} bytes at {:#010x} in 0.0 seconds...", progress.size() * kWriteBlock,
                      item.addr));
    }
    if (opt.verify) {
      Bytes back(data.size());
      OTA32_TRY(flash.read(item.addr, back));
      auto want = to_hex(md5(data)), got = to_hex(md5(back));
      if (want != got) {
        out(fmt::format("File  md5: {}", want));
        out(fmt::format("Flash md5: {}", got));
        out(fmt::format("MD5 of 0xFF is {}", to_hex(md5(Bytes(data.size(), 0xFF)))));
        return Error(ErrorCode::corrupt, "MD5 of file does not match data in flash!");
      }
      out("Hash of data verified.");
    }
  }
  out("");
  out("Leaving...");
  if (const AfterChoice* a = after_choice(opt.after))
    out(std::string(a->line));  // plan_write_flash refused others
  return {};
}

}  // namespace ota32
