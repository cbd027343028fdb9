// The otadata partition (esp_ota_select_entry_t x 2, one per 4 KiB sector) and the pure decisions made on it:
// which slot the 2nd-stage bootloader boots (bootloader_utility_get_selected_boot_partition, ESP-IDF v5.5.5)
// and what esp_ota_set_boot_partition / otatool's switch_ota_partition write. Flash I/O lives in src/boot and
// src/agent; everything here is bytes in, decision out.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"
#include "format/partition_table.h"

namespace ota32 {

constexpr size_t kOtadataSectorSize = 0x1000;  // entry 1 lives at partition offset 0x1000
constexpr size_t kOtaSelectEntrySize = 32;
constexpr uint32_t kOtaSeqEmpty = 0xFFFFFFFF;

// esp_ota_img_states_t. ota_state is kept as a uint32_t: any other value is legal on flash (treated like
// VALID).
enum OtaState : uint32_t {
  kOtaStateNew = 0,
  kOtaStatePendingVerify = 1,
  kOtaStateValid = 2,
  kOtaStateInvalid = 3,
  kOtaStateAborted = 4,
  kOtaStateUndefined = 0xFFFFFFFF,
};
// "NEW", "PENDING_VERIFY", ... ; other values print as their hex number.
std::string ota_state_name(uint32_t state);
// Accepts the names above (any case, with or without ESP_OTA_IMG_) or a number.
Result<uint32_t> parse_ota_state(std::string_view text);

constexpr std::array<uint8_t, 20> erased_seq_label() {
  std::array<uint8_t, 20> a{};
  for (auto& b : a) b = 0xFF;
  return a;
}

// Default-constructed = an erased entry (32 bytes of 0xFF).
struct OtaSelectEntry {
  uint32_t ota_seq = kOtaSeqEmpty;
  std::array<uint8_t, 20> seq_label =
      erased_seq_label();  // unused by ESP-IDF; writers keep what the sector held
  uint32_t ota_state = kOtaStateUndefined;
  uint32_t crc = 0xFFFFFFFF;

  bool operator==(const OtaSelectEntry&) const = default;
};

// esp_rom_crc32_le(UINT32_MAX, &ota_seq, 4): covers the sequence number only.
uint32_t otadata_crc(uint32_t ota_seq);
// A fresh entry as ESP-IDF writes one: seq_label all FF, crc computed.
OtaSelectEntry make_ota_select_entry(uint32_t ota_seq, uint32_t ota_state);
// b32 must hold at least 32 bytes (asserted).
OtaSelectEntry parse_ota_select_entry(ByteView b32);
Bytes serialize_ota_select_entry(const OtaSelectEntry& e);

// Predicates shared by the bootloader and the app (bootloader_common_ota_select_invalid / _valid).
bool ota_entry_invalid(
    const OtaSelectEntry& e);  // seq empty, or state INVALID / ABORTED (CRC not considered)
bool ota_entry_crc_ok(const OtaSelectEntry& e);
bool ota_entry_valid(const OtaSelectEntry& e);  // not invalid and CRC good

struct Otadata {
  std::array<OtaSelectEntry, 2> entries;
};
// Reads entry 0 at offset 0 and entry 1 at offset 0x1000. Needs at least 0x2000 bytes (the bootloader
// refuses a smaller otadata partition and accepts a larger one).
Result<Otadata> parse_otadata(ByteView partition_bytes);
// The 0x2000-byte image: each entry at the start of its sector, the rest 0xFF.
Bytes otadata_image(const Otadata& d);
// ota_data_initial.bin: 0x2000 bytes of 0xFF.
Bytes empty_otadata_image();
// The active entry: the valid one with the larger seq (tie -> entry 0); -1 when neither is valid.
int active_otadata_entry(const Otadata& d);
// (seq - 1) % count in unsigned 32-bit arithmetic (count > 0).
uint32_t ota_slot_of_seq(uint32_t ota_seq, size_t ota_app_count);

// An entry to write: erase sector `sector` (0 or 1) of otadata, then program `entry` at its start.
struct OtadataWrite {
  int sector;
  OtaSelectEntry entry;
};

// The bootloader's partition indices (bootloader_config.h): OTA slots are 0..15.
constexpr int kFactoryIndex = -1;   // FACTORY_INDEX
constexpr int kTestAppIndex = -2;   // TEST_APP_INDEX
constexpr int kInvalidIndex = -99;  // INVALID_INDEX
constexpr int kMaxOtaSlots = 16;    // MAX_OTA_SLOTS

// The bootloader's choice (spec otadata-and-boot.md §3.1-3.3), one rule per row of its decision table:
// src/boot's run_bootloader and `ota32 otadata read` both call it.
struct BootSelectOptions {
  bool has_otadata = true;     // false: the table has no otadata partition; the entries are not looked at
  bool rollback = false;       // CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
  bool has_factory = true;     // the table has an app/factory partition
  bool anti_rollback = false;  // CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK (implies rollback)
  // Anti-rollback only: the eFuse secure version, and the secure_version of the app in each OTA slot
  // (nullopt: no readable app descriptor, which the bootloader logs and treats as too old).
  uint32_t efuse_secure_version = 0;
  std::array<std::optional<uint32_t>, kMaxOtaSlots> slot_secure_version{};
};
// A line of the bootloader's log (tag "boot") for this decision.
struct BootSelectLine {
  char level;  // 'I' or 'E'
  std::string text;
};
struct BootSelection {
  int entry_index = -1;              // the active otadata entry, -1 = none
  std::optional<uint32_t> ota_slot;  // start slot; nullopt = FACTORY_INDEX (factory, then the OTA slots)
  std::string reason;                // why, in words
  std::vector<BootSelectLine> log;   // the bootloader's log lines for this decision, in order
  bool initial_contents =
      false;  // after loading an OTA slot, entry 0 := {slot+1, VALID} ("Set actual ota_seq")
  std::vector<OtadataWrite> writes;  // rollback rewrites, in the order the bootloader does them

  // The index load_boot_image starts from: the OTA slot or kFactoryIndex.
  int start_index() const { return ota_slot ? static_cast<int>(*ota_slot) : kFactoryIndex; }
};
BootSelection select_boot_slot(const Otadata& d, size_t ota_app_count, const BootSelectOptions& opt);
BootSelection select_boot_slot(const Otadata& d, size_t ota_app_count, bool rollback_enabled);
// The write the bootloader does after loading OTA slot `slot` from "initial contents" (§3.3).
OtadataWrite initial_seq_write(uint32_t slot);

// The indices bootloader_utility_load_boot_image tries from `start` (§3.5): start, start-1, ..., factory
// (-1), then start+1 ... up to ota_app_count-1, then the test app (-2) if there is one. The caller skips
// empty slots.
std::vector<int> boot_attempt_order(int start, int ota_app_count, bool has_test);
// Which partition the selection boots when every image verifies (the first non-empty partition of
// boot_attempt_order, OTA slots counted as the app side does). nullptr = no app at all.
const PartitionEntry* boot_partition_for(const PartitionTable& t, const BootSelection& s);

// esp_ota_set_boot_partition(ota_<slot>) (§2): new seq and which sector gets it. The entry keeps the
// seq_label of the sector it replaces. Fails when slot >= ota_app_count (ESP_ERR_INVALID_ARG).
Result<OtadataWrite> plan_set_boot_partition(const Otadata& current, uint32_t slot, size_t ota_app_count,
                                             bool rollback_enabled);
// otatool.py switch_ota_partition (§7): CRC-good entries count whatever their state; only seq and crc of the
// target entry change (its state and label are kept); the tool then rewrites the whole partition.
Result<OtadataWrite> plan_otatool_switch(const Otadata& current, uint32_t slot, size_t ota_app_count);

// The partition image after an esp_ota_set_boot_partition-style write: the target sector erased (0xFF) and
// the entry programmed at its start; the other sector untouched. `image` must be at least 0x2000 bytes.
Bytes apply_otadata_write(ByteView image, const OtadataWrite& w);
// After an otatool switch: only the 4 bytes of seq (offset 0) and of crc (offset 28) of the entry change.
Bytes apply_otatool_write(ByteView image, const OtadataWrite& w);

}  // namespace ota32
