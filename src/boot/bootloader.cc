#include "boot/bootloader.h"

#include <fmt/format.h>

#include <algorithm>

#include "format/otadata.h"
#include "format/secure_boot_v2_crypto.h"

namespace ota32 {

namespace {

constexpr uint32_t kPartitionTableLength = 0xC00;

std::string_view spi_speed_name(uint8_t code) {
  switch (code & 0x0F) {
    case 0x0:
      return "40MHz";
    case 0x1:
      return "26.7MHz";
    case 0x2:
      return "20MHz";
    case 0xF:
      return "80MHz";
    default:
      return "20MHz";
  }
}

std::string_view spi_mode_name(uint8_t mode) {
  switch (mode) {
    case 0:
      return "QIO";
    case 1:
      return "QOUT";
    case 2:
      return "DIO";
    case 3:
      return "DOUT";
    case 4:
      return "FAST READ";
    default:
      return "SLOW READ";
  }
}

std::string_view spi_size_name(uint8_t size_bits) {
  // The 2nd-stage bootloader prints "2MB" for a code it does not know.
  auto name = flash_size_name(size_bits);
  return name.empty() ? "2MB" : name;
}

bool dual_core(const ChipInfo& chip) {
  return chip.name == "esp32" || chip.name == "esp32s3" || chip.name == "esp32p4";
}

struct Slots {
  const PartitionEntry* factory = nullptr;
  const PartitionEntry* test = nullptr;
  const PartitionEntry* otadata = nullptr;
  std::array<const PartitionEntry*, kMaxOtaSlots> ota{};
  int app_count = 0;
};

// What the bootloader fills while listing the table (the last otadata listed wins).
Slots scan_slots(const PartitionTable& t) {
  Slots s;
  for (const auto& e : t.entries) {
    if (e.type == kPartitionTypeApp) {
      if (e.subtype == kAppSubtypeFactory)
        s.factory = &e;
      else if (e.subtype == kAppSubtypeTest)
        s.test = &e;
      else if (e.subtype >= kAppSubtypeOta0 && e.subtype < kAppSubtypeOta0 + kMaxOtaSlots) {
        s.ota[e.subtype & 0x0F] = &e;
        ++s.app_count;
      }
    } else if (e.type == kPartitionTypeData && e.subtype == kDataSubtypeOta) {
      s.otadata = &e;
    }
  }
  return s;
}

const PartitionEntry* partition_for(const Slots& s, int index) {
  if (index == kFactoryIndex) return s.factory;
  if (index == kTestAppIndex) return s.test;
  if (index >= 0 && index < s.app_count && index < kMaxOtaSlots) return s.ota[index];
  return nullptr;
}

}  // namespace

void log_app_description(BootLog& log, const AppDescription& d, bool secure_version_line) {
  auto mm = idf_major_minor(d.idf_ver);
  // Tag app_init from v5.3 (cpu_start before); ELF SHA prefix 9 hex digits from v5.2 (16 before).
  const bool v53 = mm && *mm >= std::make_pair(5, 3);
  const size_t sha_len = mm && *mm >= std::make_pair(5, 2) ? 9 : 16;
  const std::string tag = v53 ? "app_init" : "cpu_start";
  log.info(tag, "Application information:");
  log.info(tag, "Project name:     " + d.project_name);
  log.info(tag, "App version:      " + d.version);
  if (secure_version_line) log.info(tag, fmt::format("Secure version:   {}", d.secure_version));
  log.info(tag, fmt::format("Compile time:     {} {}", d.date, d.time));
  log.info(tag, "ELF file SHA256:  " + to_hex(d.app_elf_sha256).substr(0, sha_len) + "...");
  log.info(tag, "ESP-IDF:          " + d.idf_ver);
}

// esp_image_load(ESP_IMAGE_LOAD) of the app in `p`: header checks, one line per segment, then the checks
// of the whole image. nullopt = not bootable (the reason is logged).
Result<std::optional<LoadedApp>> load_app_image(Flash& flash, const ChipInfo& chip, const PartitionEntry& p,
                                                const BootEfuse& efuse, bool old_format, BootLog* log) {
  BootLog silent;
  BootLog& out = log ? *log : silent;
  Bytes header(kImageHeaderSize);
  OTA32_TRY(flash.read(p.offset, header));
  if (header[0] != kImageMagic) {
    out.error("esp_image",
              fmt::format("image at {:#x} has invalid magic byte (nothing flashed here?)", p.offset));
    return std::optional<LoadedApp>();
  }
  auto h = parse_image_header(header);
  if (!h) {
    out.error("esp_image", h.error().message());
    return std::optional<LoadedApp>();
  }
  if (h->chip_id != chip.chip_id) {
    out.error("boot_comm", fmt::format("mismatch chip ID, expected {}, found {}", chip.chip_id, h->chip_id));
    return std::optional<LoadedApp>();
  }
  if (efuse.chip_revision < h->min_chip_rev_full) {
    out.error("boot_comm", fmt::format("chip revision check failed. Required >= {}, found {}.",
                                       rev_text(h->min_chip_rev_full), rev_text(efuse.chip_revision)));
    return std::optional<LoadedApp>();
  }
  if (h->max_chip_rev_full != 0 && h->max_chip_rev_full != 0xFFFF &&
      efuse.chip_revision > h->max_chip_rev_full) {
    out.error("boot_comm", fmt::format("chip revision check failed. Required <= {}, found {}.",
                                       rev_text(h->max_chip_rev_full), rev_text(efuse.chip_revision)));
    return std::optional<LoadedApp>();
  }
  if (h->segment_count > kMaxSegments) {
    out.error("esp_image", fmt::format("image at {:#x} segment count {} exceeds max {}", p.offset,
                                       h->segment_count, kMaxSegments));
    return std::optional<LoadedApp>();
  }
  Bytes data(p.size);
  OTA32_TRY(flash.read(p.offset, data));
  auto img = parse_image(data, fmt::format("image at {:#x}", p.offset));
  if (!img) {
    out.error("esp_image", img.error().message());
    return std::optional<LoadedApp>();
  }
  for (size_t i = 0; i < img->segments.size(); ++i) {
    const auto& s = img->segments[i];
    std::string_view kind;
    if (segment_is_mapped(chip, s.load_addr))
      kind = "map";
    else if (s.load_addr >= 0x10000000)
      kind = "load";  // below: padding, never loaded
    out.info("esp_image", segment_log_text(static_cast<int>(i), p.offset + s.data_offset, s.load_addr,
                                           s.data_len, kind, old_format));
    out.spend_bytes(s.data_len);
  }
  VerifyOptions vo;
  vo.chip = &chip;
  vo.kind = ImageKind::app;
  const std::string name = fmt::format("image at {:#x}", p.offset);
  vo.file_name = name;
  if (auto ok = verify_image(*img, data, vo); !ok) {
    out.error("esp_image", ok.error().message());
    return std::optional<LoadedApp>();
  }
  if (efuse.secure_boot.enabled) {
    auto check = verify_app_on_boot(data, img->image_size, default_sign_scheme(chip.name), efuse.secure_boot);
    for (auto& line : check.lines) out.log(line.level, std::move(line.tag), std::move(line.text));
    if (!check.verified) return std::optional<LoadedApp>();
  }
  LoadedApp l{std::move(*img), std::nullopt};
  l.desc = l.image.app_desc;
  return std::optional<LoadedApp>(std::move(l));
}

Result<BootResult> run_bootloader(Flash& flash, const ChipInfo& chip, const BootConfig& cfg,
                                  const BootEfuse& efuse, const SecureVersionBurner& burn) {
  BootResult result;
  result.efuse = efuse;

  // The ROM loads the 2nd-stage bootloader from its offset; without a valid one it prints its complaint and
  // resets, forever.
  const uint32_t bl_end = std::min<uint32_t>(kPartitionTableOffset, flash.size());
  Bytes bl(bl_end > chip.bootloader_offset ? bl_end - chip.bootloader_offset : 0);
  OTA32_TRY(flash.read(chip.bootloader_offset, bl));
  auto bl_img = parse_image(bl, "bootloader");
  BootLog log(22);  // the ROM's own start-up
  if (!bl_img || bl_img->header.chip_id != chip.chip_id) {
    uint32_t word = bl.size() >= 4 ? load_le32(bl.data()) : 0xFFFFFFFF;
    log.error("rom", fmt::format("invalid header: {:#010x}", word));
    result.failure = fmt::format("no valid 2nd-stage bootloader at {:#x}", chip.bootloader_offset);
    result.log = log.take();
    return result;
  }
  log.spend_bytes(bl_img->image_size);
  std::string bl_idf = cfg.idf_version;
  if (bl_img->bootloader_desc) {
    bl_idf = bl_img->bootloader_desc->idf_ver;
    log.info("boot", fmt::format("ESP-IDF {} 2nd stage bootloader", bl_idf));
    log.info("boot", "compile time " + bl_img->bootloader_desc->date_time);
  }
  const bool old_format = old_segment_log_format(bl_idf);
  if (dual_core(chip)) log.info("boot", "Multicore bootloader");
  log.info("boot", "chip revision: " + rev_text(efuse.chip_revision));
  const std::string chip_tag = fmt::format("boot.{}", chip.name);
  log.info(chip_tag, fmt::format("SPI Speed      : {}", spi_speed_name(bl_img->header.spi_speed())));
  log.info(chip_tag, fmt::format("SPI Mode       : {}", spi_mode_name(bl_img->header.spi_mode)));
  log.info(chip_tag, fmt::format("SPI Flash Size : {}", spi_size_name(bl_img->header.spi_size())));
  log.info("boot", "Enabling RNG early entropy source...");

  auto fail = [&](std::string why) -> Result<BootResult> {
    result.failure = std::move(why);
    result.log = log.take();
    return result;
  };

  // Partition table.
  Bytes table_bin(kPartitionTableLength);
  OTA32_TRY(flash.read(kPartitionTableOffset, table_bin));
  BinaryOptions bo;
  bo.check_md5 = true;
  auto table = parse_partition_binary(table_bin, bo, "partition table at 0x8000");
  if (!table) {
    log.error("flash_parts", table.error().message());
    log.error("boot", "Failed to verify partition table");
    log.error("boot", "load partition table error!");
    return fail("load partition table error: " + table.error().message());
  }
  log.info("boot", "Partition Table:");
  log.info("boot", "## Label            Usage          Type ST Offset   Length");
  for (size_t i = 0; i < table->entries.size(); ++i) {
    const auto& e = table->entries[i];
    log.info("boot",
             fmt::format("{:2} {:<16} {:<16} {:02x} {:02x} {:08x} {:08x}", i, e.name.substr(0, 16),
                         partition_usage_name(e.type, e.subtype), e.type, e.subtype, e.offset, e.size));
  }
  log.info("boot", "End of partition table");
  const Slots slots = scan_slots(*table);

  // otadata: the selection (format/otadata.h's decision table), then its rollback rewrites.
  BootSelectOptions opt;
  opt.has_otadata = slots.otadata != nullptr;
  opt.rollback = cfg.rollback;
  opt.has_factory = slots.factory != nullptr;
  opt.anti_rollback = cfg.anti_rollback;
  opt.efuse_secure_version = efuse.secure_version;
  std::optional<Region> otadata;
  Otadata current;  // as read, then as rewritten
  if (slots.otadata) {
    if (slots.otadata->size < 2 * kFlashSectorSize) {
      log.error("boot", fmt::format("ota_info partition size {} is too small (minimum 8192 bytes)",
                                    slots.otadata->size));
      return fail("otadata partition too small");
    }
    otadata.emplace(flash, slots.otadata->offset, slots.otadata->size, slots.otadata->name);
    OTA32_ASSIGN(auto raw, read_otadata(*otadata));
    current.entries = {raw[0].entry(), raw[1].entry()};
    if (cfg.anti_rollback) {
      for (int s = 0; s < kMaxOtaSlots && s < slots.app_count; ++s) {
        if (!slots.ota[s]) continue;
        OTA32_ASSIGN(auto d, get_partition_description(flash, *slots.ota[s]));
        if (d) opt.slot_secure_version[s] = d->secure_version;
      }
    }
  }
  const BootSelection sel = select_boot_slot(current, static_cast<size_t>(slots.app_count), opt);
  for (const auto& w : sel.writes) {  // PENDING_VERIFY -> ABORTED, then the active NEW -> PENDING_VERIFY
    OTA32_TRY(write_otadata_entry(*otadata, w));
    current.entries[static_cast<size_t>(w.sector)] = w.entry;
  }
  for (const auto& l : sel.log) log.log(l.level, "boot", l.text);
  const int start_index = sel.start_index();

  // update_anti_rollback: esp_efuse_update_secure_version with the app's secure_version. Its refusals only
  // log (the bootloader ignores the result); a power cut stops the boot.
  auto raise_counter = [&](uint32_t app_sv) -> Result<void> {
    SecureVersionBurner keep = [&](uint32_t v) -> Result<void> {
      if (burn) OTA32_TRY(burn(v));
      result.efuse.secure_version = v;
      return {};
    };
    auto r = update_secure_version(result.efuse.secure_version, efuse.secure_version_bits, app_sv, keep, log);
    if (!r && r.error().code() == ErrorCode::power_lost) return r.error();
    return {};
  };
  // The chosen entry is already VALID (confirmed earlier): raised to its app's secure_version before it is
  // loaded, as bootloader_utility_get_selected_boot_partition does.
  if (cfg.anti_rollback && sel.entry_index >= 0 && start_index >= 0 &&
      current.entries[static_cast<size_t>(sel.entry_index)].ota_state == kOtaStateValid) {
    if (const PartitionEntry* p = partition_for(slots, start_index)) {
      OTA32_ASSIGN(auto d, get_partition_description(flash, *p));
      if (d) OTA32_TRY(raise_counter(d->secure_version));
    }
  }

  // Load with fallback.
  for (int index : boot_attempt_order(start_index, slots.app_count, slots.test != nullptr)) {
    const PartitionEntry* p = partition_for(slots, index);
    if (!p || p->size == 0) continue;
    bool bootable = true;
    if (cfg.anti_rollback) {
      OTA32_ASSIGN(auto d, get_partition_description(flash, *p));
      bootable = d && d->secure_version >= result.efuse.secure_version;
    }
    std::optional<LoadedApp> loaded;
    if (bootable) {
      OTA32_ASSIGN(loaded, load_app_image(flash, chip, *p, efuse, old_format, &log));
    }
    if (!loaded) {
      if (index == kFactoryIndex)
        log.error("boot", "Factory app partition is not bootable");
      else if (index == kTestAppIndex)
        log.error("boot", "No bootable test partition in the partition table");
      else
        log.error("boot", fmt::format("OTA app partition slot {} is not bootable", index));
      continue;
    }
    log.info("boot", fmt::format("Loaded app from partition at offset {:#x}", p->offset));
    if (index == kTestAppIndex && start_index != kTestAppIndex) {
      log.warn("boot", "Falling back to test app as only bootable partition");
    }
    const uint32_t app_sv = loaded->desc ? loaded->desc->secure_version : 0;
    if (sel.initial_contents && index >= 0) {
      OTA32_TRY(write_otadata_entry(*otadata, initial_seq_write(static_cast<uint32_t>(index))));
      log.info("boot", fmt::format("Set actual ota_seq={} in otadata[0]", index + 1));
    }
    // The initial-contents write, then (anti-rollback) the counter raised to the app just selected.
    if (cfg.anti_rollback && sel.initial_contents && index >= 0) OTA32_TRY(raise_counter(app_sv));
    log.info("boot", "Disabling RNG early entropy source...");
    log.spend_ms(11);
    if (loaded->desc) log_app_description(log, *loaded->desc, cfg.anti_rollback);
    result.app = BootedApp{index, *p, std::move(loaded->image), loaded->desc};
    result.log = log.take();
    return result;
  }
  log.error("boot", "No bootable app partitions in the partition table");
  return fail("no bootable app partitions");
}

AppVerifier silent_app_verifier(Flash& flash, const ChipInfo& chip, const BootEfuse& efuse) {
  return [&flash, &chip, efuse](const PartitionEntry& p) -> Result<bool> {
    OTA32_ASSIGN(auto loaded, load_app_image(flash, chip, p, efuse, false, nullptr));
    return loaded.has_value();
  };
}

}  // namespace ota32
