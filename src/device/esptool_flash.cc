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

uint64_t size_bytes(std::string_view s) { return (1ull << 20) << (*flash_size_code(s) >> 4); }

std::string size_name_of(uint32_t bytes) {
  auto names = flash_size_names();
  for (size_t i = 0; i < names.size(); ++i) {
    if ((1ull << 20) << i == bytes) return std::string(names[i]);
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
  if (opt.flash_size != "keep" && opt.flash_size != "detect" && !flash_size_code(opt.flash_size)) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("Flash size '{}' is not supported by this chip type. Supported sizes: {}",
                             opt.flash_size, flash_size_list()));
  }
  return {};
}

// What esptool's get_chip_description() / get_chip_features() / get_crystal_freq() report for the package
// each virtual chip models (the common module of each family; ESP32: the seed's ESP32-D0WDQ6, or the
// ESP32-D0WD-V3 that revision v3 chips are sold as).
struct ChipPackage {
  std::string_view chip, description, features, crystal;
};
constexpr std::array<ChipPackage, 9> kPackages = {{
    {"esp32", "ESP32-D0WDQ6", "WiFi, BT, Dual Core, 240MHz, VRef calibration in efuse, Coding Scheme None",
     "40MHz"},
    {"esp32s2", "ESP32-S2FNR2",
     "WiFi, Embedded Flash 4MB, Embedded PSRAM 2MB, ADC and temperature sensor "
     "calibration in BLK2 of efuse V2",
     "40MHz"},
    {"esp32s3", "ESP32-S3 (QFN56)", "WiFi, BLE, Embedded Flash 8MB (GD)", "40MHz"},
    {"esp32c3", "ESP32-C3 (QFN32)", "WiFi, BLE, Embedded Flash 4MB (XMC)", "40MHz"},
    {"esp32c2", "ESP32-C2", "WiFi, BLE", "26MHz"},
    {"esp32c6", "ESP32-C6 (QFN40)", "WiFi 6, BT 5, IEEE802.15.4", "40MHz"},
    {"esp32h2", "ESP32-H2", "BLE, IEEE802.15.4", "32MHz"},
    {"esp32p4", "ESP32-P4", "High-Performance MCU", "40MHz"},
    {"esp32c5", "ESP32-C5", "WiFi 6 (dual-band), BT 5 (LE), IEEE802.15.4", "48MHz"},
}};

const ChipPackage* package_of(const ChipInfo& chip) {
  for (const auto& p : kPackages)
    if (p.chip == chip.name) return &p;
  return nullptr;
}

}  // namespace

double esptool_transfer_seconds(uint64_t sent, uint32_t baud) {
  return 1.09 * static_cast<double>(sent) * 10.0 / baud + 0.005;
}

double esptool_erase_seconds(uint32_t addr, uint64_t len, bool chip_erase) {
  if (chip_erase) return 2.5 * static_cast<double>(len) / (4u << 20);
  // The stub's erase_region: 64 KiB block erases where aligned, 4 KiB sector erases elsewhere.
  double t = 0;
  uint64_t a = addr, end = uint64_t{addr} + len;
  while (a < end) {
    if (a % kFlashBlockSize == 0 && end - a >= kFlashBlockSize) {
      t += 0.15, a += kFlashBlockSize;
    } else {
      t += 0.045, a += kFlashSectorSize;
    }
  }
  return t;
}

std::string esptool_speed_tail(uint64_t bytes, double t, bool effective) {
  std::string s = fmt::format(" in {:.1f} seconds", t);
  if (t > 0.0) {
    s += fmt::format(" ({}{:.1f} kbit/s)", effective ? "effective " : "", bytes / t * 8 / 1000);
  }
  return s;
}

std::string esptool_chip_description(const ChipInfo& chip, uint32_t rev) {
  const ChipPackage* p = package_of(chip);
  std::string desc = p ? std::string(p->description) : std::string(chip.display_name);
  if (chip.name == "esp32" && rev >= 300) desc = "ESP32-D0WD-V3";
  return fmt::format("{} (revision {})", desc, rev_text(rev));
}

std::vector<std::string> esptool_connect_lines(const ChipInfo& chip, const EsptoolConnect& c) {
  const ChipPackage* p = package_of(chip);
  std::vector<std::string> l;
  l.emplace_back(kEsptoolBanner);
  l.push_back("Serial port " + c.port);
  l.push_back("Connecting...");
  if (c.detect_chip) {
    // detect_chip(): GET_SECURITY_INFO first; the ESP32 ROM refuses it (and resets, so esptool connects
    // again), the ESP32-S2 ROM answers too short; both are then told apart by the magic register.
    if (chip.name == "esp32" || chip.name == "esp32s2") {
      l.push_back("Detecting chip type... Unsupported detection protocol, switching and trying again...");
      if (chip.name == "esp32") l.push_back("Connecting...");
    }
    l.push_back(fmt::format("Detecting chip type... {}", chip.display_name));
  }
  l.push_back("Chip is " + esptool_chip_description(chip, c.chip_revision));
  l.push_back(fmt::format("Features: {}", p ? p->features : "WiFi"));
  l.push_back(fmt::format("Crystal is {}", p ? p->crystal : "40MHz"));
  l.push_back("MAC: " + c.mac);
  l.push_back("Uploading stub...");
  l.push_back("Running stub...");
  l.push_back("Stub running...");
  if (c.baud != 115200) {
    l.push_back(fmt::format("Changing baud rate to {}", c.baud));
    l.push_back("Changed.");
  }
  return l;
}

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
    speed_size = static_cast<uint8_t>((speed_size & 0x0F) | *flash_size_code(opt.flash_size));
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

Result<void> check_sector_overlaps(const std::vector<FlashFile>& files) {
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
  return {};
}

Result<FlashPlan> plan_write_flash(const ChipInfo& chip, uint32_t flash_size, std::vector<FlashFile> files,
                                   const WriteFlashOptions& opt) {
  OTA32_TRY(check_sector_overlaps(files));
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
    plan.header_lines.push_back(fmt::format("Chip erase completed successfully in {:.1f}s",
                                            esptool_erase_seconds(0, flash_size, true)));
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
      const double t = esptool_transfer_seconds(compressed.size(), opt.baud);
      out(fmt::format("Wrote {} bytes ({} compressed) at {:#010x}{}...", data.size(), compressed.size(),
                      item.addr, esptool_speed_tail(data.size(), t, true)));
    } else {
      const uint64_t sent = progress.size() * kWriteBlock;
      const double t = esptool_transfer_seconds(sent, opt.baud);
      out(fmt::format("Wrote {} bytes at {:#010x}{}...", sent, item.addr,
                      esptool_speed_tail(sent, t, false)));
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
