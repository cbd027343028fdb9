#include "format/image_make.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "core/splitmix.h"
#include "format/app_image.h"
#include "format/image_layout.h"

namespace ota32 {
namespace {

constexpr uint32_t kFlagAlloc = 2, kFlagExec = 4;

// The seed app's (ESP32 simple_ota) section sizes: the default layout, and the proportions for --size.
constexpr uint32_t kSeedDrom = 0x1e510, kSeedDram = 0x1ae0 + 0x2428, kSeedIrom = 0x90374;
constexpr uint32_t kSeedVectors = 0x404, kSeedIramText = 0x1466c;
constexpr uint32_t kMinIrom = 0x100;
// RAM segments stay inside every chip's IRAM / DRAM from ChipInfo::iram_base / dram_base.
constexpr uint32_t kMaxIramText = 0x18000, kMaxDram = 0x10000;

// Deterministic filler that does not compress away.
Bytes pseudo_random(SplitMix64& rng, size_t n) {
  Bytes b(n);
  for (size_t i = 0; i < n; i += 8) {
    uint64_t z = rng.next();
    std::memcpy(b.data() + i, &z, std::min<size_t>(8, n - i));
  }
  return b;
}

struct Sizes {
  uint32_t drom, dram, irom, vectors, iram_text;
};

uint32_t round4(uint64_t v) { return static_cast<uint32_t>((v + 3) & ~uint64_t{3}); }

Result<Bytes> build(const MakeImageOptions& opt, const Sizes& sz) {
  const ChipInfo& chip = *opt.chip;
  AppDescription d;
  d.secure_version = opt.secure_version;
  d.version = opt.version;
  d.project_name = opt.project;
  d.time = opt.time;
  d.date = opt.date;
  d.idf_ver = opt.idf_ver;
  d.app_elf_sha256 = sha256(as_bytes(fmt::format("ota32 image make {} {} {} {} {} {}", chip.name, opt.project,
                                                 opt.version, opt.secure_version, opt.size, opt.seed)));
  d.min_efuse_blk_rev_full = opt.min_efuse_blk_rev_full;
  d.max_efuse_blk_rev_full = opt.max_efuse_blk_rev_full;
  d.mmu_page_size = 16;  // log2(64 KiB), as IDF >= v5.4 writes it

  SplitMix64 rng(opt.seed);
  const uint32_t irom_addr = chip.irom_map.start + 0x20;
  uint32_t drom_addr = chip.drom_map.start + 0x20;
  if (chip.drom_map.start == chip.irom_map.start) {  // one window for both (ESP32-P4): rodata after the code
    drom_addr = chip.irom_map.start + ((0x20 + sz.irom + 0xFFFF) & ~0xFFFFu) + 0x20;
  }

  std::vector<ImageItem> items;
  auto desc = serialize_app_desc(d);
  ImageItem drom{drom_addr, Bytes(desc.begin(), desc.end()), kFlagAlloc, ".flash.appdesc"};
  Bytes rodata = pseudo_random(rng, sz.drom - kAppDescSize);
  drom.data.insert(drom.data.end(), rodata.begin(), rodata.end());
  items.push_back(std::move(drom));
  // ELF order keeps the two IRAM sections apart, so they stay two segments as in a real IDF app.
  items.push_back({chip.iram_base, pseudo_random(rng, sz.vectors), kFlagAlloc | kFlagExec, ".iram0.vectors"});
  items.push_back({chip.dram_base, pseudo_random(rng, sz.dram), kFlagAlloc | 1, ".dram0.data"});
  items.push_back(
      {chip.iram_base + sz.vectors, pseudo_random(rng, sz.iram_text), kFlagAlloc | kFlagExec, ".iram0.text"});
  items.push_back({irom_addr, pseudo_random(rng, sz.irom), kFlagAlloc | kFlagExec, ".flash.text"});

  LayoutOptions lo;
  lo.flash_mode = opt.flash_mode;
  lo.flash_speed_size = opt.flash_speed_size;
  lo.entry = chip.iram_base + sz.vectors;
  lo.min_rev_full = opt.min_rev_full;
  lo.max_rev_full = opt.max_rev_full;
  OTA32_ASSIGN(auto r, layout_image(chip, std::move(items), lo));
  return std::move(r.image);
}

// End of the last segment's data: what moves one-for-one with the IROM length (IROM is the last flash item,
// so nothing after it needs page alignment).
uint32_t segments_end(const Bytes& img) {
  auto p = parse_image(img);
  assert(p);
  const auto& last = p->segments.back();
  return last.data_offset + last.data_len;
}

// A chip image make can lay out (it has a memory map and a DRAM base).
Result<void> check_chip(const ChipInfo* chip) {
  if (chip == nullptr) return Error(ErrorCode::invalid_argument, "image make: no chip given");
  if (chip->memory_map.empty() || chip->dram_base == 0) {
    return Error(ErrorCode::unsupported, fmt::format("image make: chip {} is not supported", chip->name));
  }
  return {};
}

// A string that must fit a descriptor field of n bytes.
Result<void> check(std::string_view field, const std::string& s, size_t n) {
  if (s.size() > n) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("image make: {} '{}' is longer than its {}-byte field", field, s, n));
  }
  return {};
}

}  // namespace

Result<Bytes> make_app_image(const MakeImageOptions& opt) {
  OTA32_TRY(check_chip(opt.chip));
  OTA32_TRY(check("--project", opt.project, 32));
  OTA32_TRY(check("--version", opt.version, 32));
  OTA32_TRY(check("idf_ver", opt.idf_ver, 32));
  OTA32_TRY(check("date", opt.date, 16));
  OTA32_TRY(check("time", opt.time, 16));

  Sizes sz{kSeedDrom, kSeedDram, kSeedIrom, kSeedVectors, kSeedIramText};
  if (opt.size == 0) return build(opt, sz);

  const uint64_t target = (uint64_t{opt.size} + 15) & ~uint64_t{15};
  constexpr uint64_t kSeedTotal = kSeedDrom + kSeedDram + kSeedIrom + kSeedVectors + kSeedIramText;
  sz.drom = std::max<uint32_t>(round4(target * kSeedDrom / kSeedTotal), kAppDescSize + 0x40);
  sz.dram = std::clamp<uint32_t>(round4(target * kSeedDram / kSeedTotal), 0x40, kMaxDram);
  sz.vectors = kSeedVectors;
  sz.iram_text = std::clamp<uint32_t>(round4(target * kSeedIramText / kSeedTotal), 0x40, kMaxIramText);
  const uint32_t irom_cap = opt.chip->irom_map.end - (opt.chip->irom_map.start + 0x20) - 0x10000;
  // The file is roundup16(end + 1) + 32: grow the IROM segment until the end lands in the last block. The
  // ESP32 tail rule (§8.5) can lengthen IROM behind our back: then shift 0x40 bytes between sections and
  // try again (bounded).
  for (int attempt = 0; attempt < 8; ++attempt) {
    sz.irom = kMinIrom;
    OTA32_ASSIGN(Bytes first, build(opt, sz));
    const uint64_t end0 = segments_end(first);
    const uint64_t want_end_max = target - 32 - 1;  // end + 1 <= target - 32
    if (want_end_max < end0 || target < first.size()) {
      return Error(
          ErrorCode::invalid_argument,
          fmt::format("image make: --size {} is below the smallest {} image this layout makes ({} bytes)",
                      opt.size, opt.chip->name, first.size()));
    }
    const uint64_t irom = sz.irom + ((want_end_max - end0) & ~uint64_t{3});
    if (irom > irom_cap) {  // past the IROM window: the excess goes to DROM
      sz.drom += round4(irom - irom_cap + 0x10000);
      continue;
    }
    sz.irom = static_cast<uint32_t>(irom);
    OTA32_ASSIGN(Bytes img, build(opt, sz));
    if (img.size() != target) {
      (attempt % 2 ? sz.iram_text : sz.drom) += 0x40;
      continue;
    }
    // Never hand out an image the bootloader would refuse.
    OTA32_ASSIGN(auto parsed, parse_image(img, "image make"));
    if (auto v = verify_image(parsed, img, {}); !v) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("image make: --size {} does not make a valid {} image ({})", opt.size,
                               opt.chip->name, v.error().message()));
    }
    return img;
  }
  return Error(ErrorCode::invalid_argument,
               fmt::format("image make: found no {} layout of exactly {} bytes", opt.chip->name, target));
}

Result<Bytes> make_bootloader_image(const MakeBootloaderOptions& opt) {
  OTA32_TRY(check_chip(opt.chip));
  OTA32_TRY(check("idf_ver", opt.idf_ver, 32));
  OTA32_TRY(check("date_time", opt.date_time, 24));
  const ChipInfo& chip = *opt.chip;
  BootloaderDescription d;
  d.secure_version = opt.secure_version;
  d.version = opt.version;
  d.idf_ver = opt.idf_ver;
  d.date_time = opt.date_time;
  auto desc = serialize_bootloader_desc(d);

  // Segment sizes of the seed's bootloader (its ROM log: load:0x3fff0030,len:4 + 0x3fff0034,len:6928,
  // 0x40078000,len:14328, 0x40080400,len:3660); the descriptor leads the data segment.
  constexpr uint32_t kDram = 4 + 6928, kLoader = 14328, kIram = 3660;
  const bool esp32 = chip.name == std::string_view("esp32");
  const uint32_t dram = esp32 ? 0x3fff0030 : chip.dram_base;
  // Elsewhere DRAM and IRAM are often two windows on one SRAM: the code goes 64 KiB in, clear of the data.
  const uint32_t loader = esp32 ? 0x40078000 : chip.iram_base + 0x10000;
  const uint32_t iram = esp32 ? 0x40080400 : loader + ((kLoader + 0x3FF) & ~0x3FFu) + 0x400;

  SplitMix64 rng(opt.seed ^ 0xB00710ADE5ULL);
  ImageItem data{dram, Bytes(desc.begin(), desc.end()), kFlagAlloc | 1, ".dram0.bootdesc"};
  Bytes filler = pseudo_random(rng, kDram - kBootloaderDescSize);
  data.data.insert(data.data.end(), filler.begin(), filler.end());
  std::vector<ImageItem> items;
  items.push_back(std::move(data));
  items.push_back({loader, pseudo_random(rng, kLoader), kFlagAlloc | kFlagExec, ".iram_loader.text"});
  items.push_back({iram, pseudo_random(rng, kIram), kFlagAlloc | kFlagExec, ".iram.text"});

  LayoutOptions lo;
  lo.flash_mode = opt.flash_mode;
  lo.flash_speed_size = opt.flash_speed_size;
  lo.entry = esp32 ? 0x40080678 : iram + 0x278;
  OTA32_ASSIGN(auto r, layout_image(chip, std::move(items), lo));
  return std::move(r.image);
}

}  // namespace ota32
