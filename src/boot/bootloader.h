// The ESP-IDF 2nd-stage bootloader run on the flash contents: check the bootloader image, load and list
// the partition table at 0x8000, read otadata, apply rollback / anti-rollback, pick and verify an app with
// fallback, rewrite otadata where ESP-IDF does, and produce the boot log. A deterministic function of
// (flash, eFuse, config): the same inputs give the same flash writes and the same log.
// spec/otadata-and-boot.md §3 and §6, spec/esp-app-image.md §2.4.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "boot/boot_log.h"
#include "core/bytes.h"
#include "core/result.h"
#include "flash/flash.h"
#include "format/app_image.h"
#include "format/chip.h"
#include "format/otadata.h"
#include "format/partition_table.h"
#include "format/secure_boot_v2.h"
#include "ota_ops/log_text.h"
#include "ota_ops/ota_ops.h"
#include "ota_ops/secure_version.h"

namespace ota32 {

constexpr uint32_t kPartitionTableOffset = 0x8000;

struct BootConfig {
  bool rollback = false;       // CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
  bool anti_rollback = false;  // CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
  // The bootloader's ESP-IDF version when its image has no descriptor (pre-v5 bootloaders): decides the
  // segment-line format ("v4.3-dev-..." and older print "paddr=0x%08x ..."). Empty: v5.5 formats.
  std::string idf_version;
};

struct BootEfuse {
  uint32_t chip_revision = 0;  // major*100+minor
  uint32_t secure_version = 0;
  uint32_t secure_version_bits = 32;
  SecureBootEfuse secure_boot;  // enabled: every app is signature-checked before it boots
};

struct BootedApp {
  int index = kInvalidIndex;  // kFactoryIndex, kTestAppIndex or the OTA slot
  PartitionEntry partition;
  AppImage image;
  std::optional<AppDescription> desc;
};

struct BootResult {
  std::optional<BootedApp> app;  // nullopt: the bootloader reset without starting an app
  std::string failure;           // why, when no app started (the last error line)
  BootEfuse efuse;               // after the boot (anti-rollback may have raised secure_version)
  std::vector<LogLine> log;      // bootloader lines, then the app's startup lines
};

struct LoadedApp {
  AppImage image;
  std::optional<AppDescription> desc;
};
// esp_image_load / esp_image_verify of the app in partition `p`: header checks (magic, chip id, chip
// revision, segment count), one "segment N: ..." line per segment, then the whole-image checks. nullopt =
// not bootable, the reason logged (log == nullptr: ESP_IMAGE_VERIFY_SILENT). Errors: flash failures only.
Result<std::optional<LoadedApp>> load_app_image(Flash& flash, const ChipInfo& chip, const PartitionEntry& p,
                                                const BootEfuse& efuse, bool old_format, BootLog* log);

// Errors are flash failures only (ErrorCode::power_lost from a FaultFlash): everything about the flash
// contents is an outcome in BootResult, as on the chip.
// Anti-rollback raises the eFuse counter through `burn` (the device's eFuses; empty: only BootResult::efuse
// says so), in ESP-IDF's order: before loading the app of an already VALID entry, after the initial-contents
// otadata write.
Result<BootResult> run_bootloader(Flash& flash, const ChipInfo& chip, const BootConfig& cfg,
                                  const BootEfuse& efuse, const SecureVersionBurner& burn = {});

// The app's "Application information:" lines (esp_app_desc.c / startup.c), tag and SHA length by the app's
// own ESP-IDF version.
void log_app_description(BootLog& log, const AppDescription& d, bool secure_version_line);

// esp_image_verify of the app in a partition without log, as esp_ota_check_rollback_is_possible runs it
// (ota_ops/ota_ops.h AppOtaContext::verify). `flash`, `chip` and `efuse` must outlive the verifier.
AppVerifier silent_app_verifier(Flash& flash, const ChipInfo& chip, const BootEfuse& efuse);

}  // namespace ota32
