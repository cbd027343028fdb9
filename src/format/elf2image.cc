#include "format/elf2image.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>

#include "core/hash.h"
#include "format/elf.h"
#include "format/image_layout.h"

namespace ota32 {
namespace {

Error fatal(std::string msg) { return Error(ErrorCode::invalid_argument, std::move(msg)); }

// esptool's --pad-to-size: "<decimal>MB" or "<decimal>KB" (MB looked for first).
Result<uint32_t> parse_pad_size(const std::string& s) {
  uint64_t unit = 0;
  size_t at = s.find("MB");
  if (at != std::string::npos) {
    unit = 1024 * 1024;
  } else if ((at = s.find("KB")) != std::string::npos) {
    unit = 1024;
  } else {
    return fatal(fmt::format("Unknown size {}", s));
  }
  uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + at, n);
  if (ec != std::errc() || p != s.data() + at || at == 0 || n * unit > UINT32_MAX) {
    return fatal(fmt::format("--pad-to-size: '{}' is not a decimal number of KB or MB", s));
  }
  return static_cast<uint32_t>(n * unit);
}

}  // namespace

Result<Elf2ImageResult> elf2image(ByteView elf_bytes, std::string_view elf_path, const Elf2ImageOptions& opt,
                                  std::vector<std::string>* console_so_far) {
  Elf2ImageResult res;
  std::vector<std::string> scratch;
  std::vector<std::string>& con = console_so_far ? *console_so_far : scratch;
  if (opt.chip == nullptr) return fatal("elf2image: no chip given");
  if (opt.version < 1 || opt.version > 3) {
    return fatal(fmt::format("--version: '{}' is not one of 1, 2, 3", opt.version));
  }
  const ChipInfo& chip = *opt.chip;
  const bool esp8266 = is_esp8266(chip);
  if (esp8266 && opt.version == 1) {
    // esptool's default for the ESP8266 is --version 1: two files (RAM segments, irom0), ROM-loaded.
    return fatal(
        "--chip esp8266: esptool's --version 1 image (two files) is not made; use --version 2 (the OTA "
        "image) "
        "or --version 3 (the ESP8266 RTOS SDK v3 image)");
  }

  OTA32_ASSIGN(ElfFile elf, parse_elf(elf_bytes, elf_path));
  for (auto& w : elf.warnings) con.push_back(w);
  con.push_back(fmt::format("Creating {} image...", chip.name));

  LayoutOptions lo;
  if (!opt.flash_mmu_page_size.empty()) {
    uint32_t page = 0;
    for (auto [name, v] :
         {std::pair{"64KB", 0x10000u}, {"32KB", 0x8000u}, {"16KB", 0x4000u}, {"8KB", 0x2000u}}) {
      if (opt.flash_mmu_page_size == name) page = v;
    }
    if (page == 0) {
      return fatal(fmt::format("--flash-mmu-page-size: '{}' is not one of 64KB, 32KB, 16KB, 8KB",
                               opt.flash_mmu_page_size));
    }
    if (!chip.mmu_page_size_configurable) {
      con.push_back(fmt::format("WARNING: Changing MMU page size is not supported on {}! Defaulting to 64KB.",
                                chip.display_name));
    } else if (chip.chip_id == 0x000C && page == 0x2000) {
      return fatal("8192 bytes is not a valid ESP32-C2 page size, select from 64KB, 32KB, 16KB.");
    } else {
      lo.mmu_page_size = page;
    }
  }

  std::vector<ImageItem> items;
  for (auto& c : opt.use_segments ? elf.segments : elf.sections) {
    items.push_back(ImageItem{c.addr, std::move(c.data), c.flags, std::move(c.name)});
  }

  if (items.empty()) {
    // esptool v4.8.1 writes a 0-segment image here; a firmware without code is an input error for us.
    return fatal(fmt::format("{} has no loadable {} (with an address and a size)", elf_path,
                             opt.use_segments ? "PT_LOAD program headers" : "PROGBITS sections"));
  }
  if (!opt.pad_to_size.empty()) {
    OTA32_ASSIGN(lo.pad_to_size, parse_pad_size(opt.pad_to_size));
  }

  static constexpr std::string_view kEsp8266Sizes[] = {"256KB", "512KB", "2MB-c1", "4MB-c1"};
  uint8_t size_code = 0xFF;
  if (!esp8266) size_code = flash_size_code(opt.flash_size).value_or(0xFF);
  for (unsigned bits = 0; esp8266 && bits < 0x100; bits += 0x10) {
    if (esp8266_flash_size_name(static_cast<uint8_t>(bits)) == opt.flash_size)
      size_code = static_cast<uint8_t>(bits);
  }
  if (size_code == 0xFF && esp8266) {
    return fatal(fmt::format(
        "Flash size '{}' is not supported by this chip type. Supported sizes: 512KB, 256KB, 1MB, 2MB, "
        "4MB, 2MB-c1, 4MB-c1, 8MB, 16MB",
        opt.flash_size));
  }
  if (size_code == 0xFF) {
    if (std::find(std::begin(kEsp8266Sizes), std::end(kEsp8266Sizes), opt.flash_size) !=
        std::end(kEsp8266Sizes)) {
      return fatal(fmt::format("Flash size '{}' is not supported by this chip type. Supported sizes: {}",
                               opt.flash_size, flash_size_list()));
    }
    return fatal(fmt::format("--flash-size: '{}' is not one of {}", opt.flash_size, flash_size_list()));
  }
  uint8_t freq_code = 0;
  if (!opt.flash_freq.empty()) {
    static constexpr std::string_view kAllFreqs[] = {"80m", "60m", "48m", "40m", "30m", "26m",
                                                     "24m", "20m", "16m", "15m", "12m"};
    if (std::find(std::begin(kAllFreqs), std::end(kAllFreqs), opt.flash_freq) == std::end(kAllFreqs)) {
      return fatal(
          fmt::format("--flash-freq: '{}' is not one of 80m, 60m, 48m, 40m, 30m, 26m, 24m, 20m, 16m, 15m, "
                      "12m",
                      opt.flash_freq));
    }
    bool found = false;
    std::string names;
    for (const auto& f : chip.flash_freqs) {
      if (f.name == opt.flash_freq) freq_code = f.code, found = true;
      names += (names.empty() ? "" : ", ") + std::string(f.name);
    }
    if (!found) {
      return fatal(
          fmt::format("Flash frequency '{}' is not supported by this chip type. Supported frequencies: {}",
                      opt.flash_freq, names));
    }
  }
  uint8_t mode = 0xFF;
  for (auto [name, v] : {std::pair{"qio", 0}, {"qout", 1}, {"dio", 2}, {"dout", 3}}) {
    if (opt.flash_mode == name) mode = static_cast<uint8_t>(v);
  }
  if (mode == 0xFF) {
    return fatal(fmt::format("--flash-mode: '{}' is not one of qio, qout, dio, dout", opt.flash_mode));
  }

  if (opt.elf_sha256_offset != 0) {
    lo.elf_sha256_offset = opt.elf_sha256_offset;
    lo.elf_sha256 = sha256(elf_bytes);
  }
  lo.flash_mode = mode;
  lo.flash_speed_size = static_cast<uint8_t>(size_code | freq_code);
  lo.entry = elf.entry;
  lo.min_rev = opt.min_rev;
  lo.min_rev_full = opt.min_rev_full;
  lo.max_rev_full = opt.max_rev_full;
  lo.append_digest = opt.append_digest && !opt.ram_only_header;
  lo.ram_only_header = opt.ram_only_header;
  if (esp8266) {  // esptool's ESP8266 images: v3 always has a SHA-256, v2 never; no secure pad, no padding
    lo.esp8266_v3 = opt.version == 3;
    lo.esp8266_v2 = opt.version == 2;
    lo.append_digest = opt.version == 3;
    lo.pad_to_size = 0;
  }
  lo.secure_pad = opt.secure_pad_v2 ? LayoutOptions::SecurePad::v2
                  : opt.secure_pad  ? LayoutOptions::SecurePad::v1
                                    : LayoutOptions::SecurePad::none;
  if (esp8266) lo.secure_pad = LayoutOptions::SecurePad::none;

  if (opt.ram_only_header) {
    con.push_back(
        "Image has only RAM segments visible. ROM segments are hidden and SHA256 digest is not appended.");
  }
  lo.on_merged = [&con](unsigned n) {
    if (n == 1) con.push_back("Merged 1 ELF section");
    if (n > 1) con.push_back(fmt::format("Merged {} ELF sections", n));
  };
  OTA32_ASSIGN(LayoutResult lr, layout_image(chip, std::move(items), lo));
  con.push_back(fmt::format("Successfully created {} image.", chip.name));
  res.image = std::move(lr.image);
  res.irom_offset = lr.irom_offset;
  res.console = con;
  return res;
}

}  // namespace ota32
