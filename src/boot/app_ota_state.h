// The app side of rollback (esp_ota_ops.c): what the running firmware calls to confirm or reject itself.
// They write otadata exactly as ESP-IDF does (rewrite the active entry's own sector) through Flash.
// spec/otadata-and-boot.md §4.
#pragma once

#include <cstdint>

#include "boot/boot_log.h"
#include "boot/bootloader.h"
#include "core/result.h"
#include "flash/flash.h"
#include "format/partition_table.h"

namespace ota32 {

struct AppOtaContext {
  Flash& flash;
  const ChipInfo& chip;
  const PartitionTable& table;
  BootEfuse efuse;
  bool anti_rollback = false;
};

// esp_ota_get_state_partition: not_found (no otadata / no slots / no CRC-good entry for the slot),
// unsupported (p is not an OTA slot).
Result<uint32_t> get_state_partition(const AppOtaContext& ctx, const PartitionEntry& p);

// esp_ota_mark_app_valid_cancel_rollback: the active entry becomes VALID (no write if it already is).
// not_found: no otadata, or (logged "Running firmware is factory") no active entry / no OTA slots.
Result<void> mark_app_valid_cancel_rollback(const AppOtaContext& ctx, BootLog& log);

// esp_ota_check_rollback_is_possible.
Result<bool> check_rollback_is_possible(const AppOtaContext& ctx);

// esp_ota_mark_app_invalid_rollback: the active entry becomes INVALID, so the next boot picks the other
// entry (or factory). rollback_refused when no other app could boot (logged as ESP-IDF does).
Result<void> mark_app_invalid_rollback(const AppOtaContext& ctx, BootLog& log);

}  // namespace ota32
