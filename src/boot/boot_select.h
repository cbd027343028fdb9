// The 2nd-stage bootloader's decisions as pure functions over what it read: which otadata entries it
// rewrites, which partition index it starts from (bootloader_utility_get_selected_boot_partition), and the
// order it tries partitions in (bootloader_utility_load_boot_image). spec/otadata-and-boot.md §3.
// Each rule is a row of a table with its own test (tests/boot/boot_select_test.cc).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ota32 {

constexpr int kFactoryIndex = -1;   // FACTORY_INDEX
constexpr int kTestAppIndex = -2;   // TEST_APP_INDEX
constexpr int kInvalidIndex = -99;  // INVALID_INDEX
constexpr int kMaxOtaSlots = 16;

// esp_ota_img_states_t
enum OtaState : uint32_t {
  kOtaStateNew = 0,
  kOtaStatePendingVerify = 1,
  kOtaStateValid = 2,
  kOtaStateInvalid = 3,
  kOtaStateAborted = 4,
  kOtaStateUndefined = 0xFFFFFFFF,
};

// One esp_ota_select_entry_t as the bootloader sees it: the two predicates it uses.
struct EntryView {
  uint32_t seq = 0xFFFFFFFF;
  uint32_t state = kOtaStateUndefined;
  bool crc_ok = false;

  // invalid(e): empty, INVALID or ABORTED (CRC not considered).
  bool invalid() const { return seq == 0xFFFFFFFF || state == kOtaStateInvalid || state == kOtaStateAborted; }
  bool valid() const { return !invalid() && crc_ok; }
  // "initial contents": erased or CRC-bad.
  bool blank_or_bad() const { return seq == 0xFFFFFFFF || !crc_ok; }
};

struct SelectInput {
  bool has_otadata = true;
  std::array<EntryView, 2> entries;
  int ota_app_count = 0;  // app partitions with subtype 0x10..0x1F
  bool has_factory = false;
  bool anti_rollback = false;
  uint32_t efuse_secure_version = 0;
  // Anti-rollback: the secure_version of the app in each OTA slot (nullopt: no readable app descriptor).
  std::array<std::optional<uint32_t>, kMaxOtaSlots> slot_secure_version{};
};

struct SelectLine {
  char level;
  std::string text;
};

struct Selection {
  int start_index = kInvalidIndex;
  int active_entry = -1;          // the otadata entry that chose the slot (-1: none)
  bool initial_contents = false;  // write otadata[0] once an OTA slot boots
  std::vector<SelectLine> log;    // tag "boot"
};

// Rollback step before the selection: the entries (0, 1) whose PENDING_VERIFY state becomes ABORTED.
std::vector<int> entries_to_abort(const std::array<EntryView, 2>& entries, bool rollback);

// The active entry (both valid: the larger seq, tie -> entry 0), or -1.
int active_entry(const std::array<EntryView, 2>& entries);

// bootloader_utility_get_selected_boot_partition on entries already rewritten by entries_to_abort.
Selection select_boot_partition(const SelectInput& in);

// After the selection found an active entry: rollback turns its NEW into PENDING_VERIFY.
bool promote_new_to_pending(const EntryView& active, bool rollback);

// The indices tried by load_boot_image from `start`: start, start-1, ..., factory (-1), then start+1 ...
// up to ota_app_count-1, then the test app (-2) if present. Empty slots are skipped by the caller.
std::vector<int> boot_attempt_order(int start, int ota_app_count, bool has_test);

}  // namespace ota32
