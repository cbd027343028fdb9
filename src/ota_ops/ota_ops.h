// The app side of ESP-IDF's esp_ota_ops.c on a Flash: otadata read and written through a Region, the state
// of a partition, confirming or rejecting the running app (rollback), the invalidation of the inactive entry
// that esp_ota_begin does, and the otadata write of esp_ota_set_boot_partition. The bootloader, the agent
// and the virtual device's app model all call these: each rule is here once. The pure decisions (which
// entry is active, what set_boot_partition writes) are format/otadata.h's; this file does the I/O.
// spec/otadata-and-boot.md §2 and §4.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>

#include "core/bytes.h"
#include "core/result.h"
#include "flash/flash.h"
#include "format/app_image.h"
#include "format/otadata.h"
#include "format/partition_table.h"
#include "ota_ops/esp_log.h"
#include "ota_ops/secure_version.h"

namespace ota32 {

// otadata entries as stored: 32 bytes at offsets 0 and 0x1000 of the otadata partition.
struct OtaEntryBytes {
  std::array<uint8_t, 32> raw{};
  uint32_t seq() const { return load_le32(raw.data()); }
  uint32_t state() const { return load_le32(raw.data() + 24); }
  uint32_t crc() const { return load_le32(raw.data() + 28); }
  OtaSelectEntry entry() const { return parse_ota_select_entry(raw); }
};
OtaEntryBytes make_ota_entry(uint32_t seq, uint32_t state);
Result<std::array<OtaEntryBytes, 2>> read_otadata(const Region& otadata);
// write_otadata: erase the entry's sector, program its 32 bytes.
Result<void> write_otadata_entry(const Region& otadata, int index, const OtaEntryBytes& e);
// A write planned by format/otadata.h (select_boot_slot, initial_seq_write, plan_set_boot_partition).
Result<void> write_otadata_entry(const Region& otadata, const OtadataWrite& w);

// The table's otadata partition as a Region: not_found without one, corrupt when it is smaller than the
// two sectors it needs.
Result<Region> otadata_region(Flash& flash, const PartitionTable& table);
// The two entries as the app reads them (only the first 32 bytes of each sector). Errors as
// otadata_region's, and flash errors.
Result<Otadata> read_otadata_entries(Flash& flash, const PartitionTable& table);

// An OTA app slot (app, subtype ota_0..ota_15).
bool is_ota_slot(const PartitionEntry& p);

// esp_ota_get_next_update_partition: the first OTA slot after `running` (or ota_0 when running is not an
// OTA slot or is the last one); nullptr when the table has no OTA slot.
const PartitionEntry* next_update_partition(const PartitionTable& table, const PartitionEntry* running);

// esp_ota_get_partition_description: the esp_app_desc_t of the image in `p` (nullopt when there is none).
// Only flash errors are errors.
Result<std::optional<AppDescription>> get_partition_description(Flash& flash, const PartitionEntry& p);

// esp_ota_get_state_partition(p): the state of the first CRC-good entry (0, then 1) whose slot
// ((seq - 1) % ota_app_count) is p's. Errors where ESP-IDF returns one: unsupported (p is not an OTA slot),
// not_found (no usable otadata, no OTA slots, no entry for the slot); and flash errors.
Result<uint32_t> get_state_partition(Flash& flash, const PartitionTable& table, const PartitionEntry& p);
// Whether an error of the calls in this file is one of ESP-IDF's answers (unsupported, not_found, or
// otadata_region's corrupt for a partition too small) rather than a failure of the flash.
bool is_esp_ota_answer(const Error& e);

// esp_image_verify (silent) of the app in a partition: whether it could boot. The bootloader supplies it
// (boot/bootloader.h silent_app_verifier), so that the app side checks images exactly as the loader does.
using AppVerifier = std::function<Result<bool>(const PartitionEntry&)>;

struct AppOtaContext {
  Flash& flash;
  const PartitionTable& table;
  AppVerifier verify;                 // used by check_rollback_is_possible
  uint32_t efuse_secure_version = 0;  // with anti_rollback
  bool anti_rollback = false;         // CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK
  // Anti-rollback: mark_app_valid_cancel_rollback raises the eFuse counter to the running app's
  // secure_version through `burn_secure_version` (esp_ota_set_anti_rollback).
  const PartitionEntry* running = nullptr;
  uint32_t secure_version_bits = 32;  // CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD
  SecureVersionBurner burn_secure_version;
};

// esp_ota_mark_app_valid_cancel_rollback: the active entry becomes VALID (no write if it already is); with
// anti-rollback, once that write is done, the eFuse counter is raised to the running app's secure_version
// (ota_ops/secure_version.h update_secure_version, whose errors are returned). not_found: no otadata, or
// (logged "Running firmware is factory") no active entry / no OTA slots.
Result<void> mark_app_valid_cancel_rollback(const AppOtaContext& ctx, EspLog& log);

// esp_ota_check_rollback_is_possible: the other entry names a slot whose image verifies (and, with
// anti-rollback, whose secure_version is not below the eFuse's), or, without anti-rollback, the factory app
// verifies.
Result<bool> check_rollback_is_possible(const AppOtaContext& ctx);

// esp_ota_mark_app_invalid_rollback: the active entry becomes INVALID, so the next boot picks the other
// entry (or factory). rollback_refused when no other app could boot (logged as ESP-IDF does).
Result<void> mark_app_invalid_rollback(const AppOtaContext& ctx, EspLog& log);

// esp_ota_invalidate_inactive_ota_data_slot() (spec otadata-and-boot.md §4): erases the inactive otadata
// sector (1 - active) when there is an active entry, the inactive entry has a seq other than 0xFFFFFFFF and
// a good CRC (its state does not matter), and the OTA slot it names exists and is not `running`. Returns
// whether it erased (false = ESP-IDF's ESP_FAIL: nothing done). Only flash errors are errors.
Result<bool> invalidate_inactive_ota_data_slot(Flash& flash, const PartitionTable& table,
                                               const PartitionEntry* running);

// The otadata half of esp_ota_set_boot_partition (esp_rewrite_ota_data): the entry that selects `target`
// written into the sector that does not hold the active one (state NEW with rollback, UNDEFINED without).
// The image check before it is the caller's. Errors: plan_set_boot_partition's, otadata_region's, flash.
Result<void> set_boot_partition(Flash& flash, const PartitionTable& table, const PartitionEntry& target,
                                bool rollback_enabled);

}  // namespace ota32
