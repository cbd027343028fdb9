// The power-cut sweep (design.md "Flash and faults"): run a scenario once cleanly and count its mutating
// flash operations, then run it again with the power cut at every one of them (and, with a seed, at random
// pairs: a second cut during the recovery from the first), and check after each cut that the device
//  - boots an image, and it is the old or the new one, never neither (write-flash: see below);
//  - has otadata that never selects a slot whose image does not verify;
//  - never goes back to the old image once the clean run had committed to the new one (confirmed it, or
//    without rollback switched otadata to it);
//  - after a retry (power on again and let the firmware finish) ends on the new image, committed: the next
//    power-on boots it and writes nothing;
//  - lifecycle: after the retry the agent's record is idle and does not hold the new version as rolled back.
// With anti-rollback (secure-version scenario) also, after every cut: the eFuse counter is never below
// where it started nor above the new image's secure_version, and it is above where it started only once
// the otadata durably commits to the new image (VALID): a counter burnt earlier would leave the old image,
// the only one otadata may still boot, below it and the device without a bootable app. After the retry
// the counter equals the new image's secure_version.
// Every cut starts from an in-memory copy of one snapshot, so a cut costs a memcpy of the flash.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/https_ota.h"
#include "agent/update_agent.h"
#include "core/bytes.h"
#include "core/result.h"
#include "device/device_config.h"
#include "flash/fault_flash.h"

namespace ota32::sim {

enum class Scenario {
  ota,           // esp_ota_begin/write/end/set_boot_partition of the new image, rollback disabled
  ota_rollback,  // the same on a rollback build, then the new image's first boot and its confirmation
  rollback,      // the bootloader's rollback rewrites: the new image (installed, state NEW) boots, resets
                 // before it confirms itself, and the bootloader goes back to the old image
  mark_valid,    // the installed new image boots (NEW -> PENDING_VERIFY) and confirms itself
  write_flash,   // esptool write_flash of a whole device: bootloader, partition table, blank otadata and
                 // the new image at the factory slot (ota_0 without one), as `idf.py flash` does
  resume,        // a download interrupted by a power cut, resumed after the reboot with Range (esp_https_ota
                 // with the saved progress), then the reboot into the new image
  lifecycle,     // the update agent's whole lifecycle (agent/update_agent.h): update check, download,
                 // install, reboot, confirmation on a rollback build, reports; its record persisted as NVS
  secure_version,  // anti-rollback: the installed new image, whose secure_version is above the eFuse
                   // counter, boots, confirms itself (VALID) and burns the counter; the cuts include the
                   // eFuse burn (FaultFlash::burn_efuse)
};
std::string_view to_string(Scenario s);  // "ota", "ota-rollback", "rollback", "mark-valid", ...
Result<Scenario> parse_scenario(std::string_view text);
std::span<const Scenario> all_scenarios();
std::string_view describe(Scenario s);  // one line for --help and the report

// What a cut's device starts from.
struct DeviceState {
  DeviceConfig config;
  Efuse efuse;
  Bytes flash;
  std::optional<agent::DownloadProgress> progress;  // the agent's saved download (NVS on the chip)
  agent::AgentState record;                         // the update agent's record (NVS on the chip)
};

struct SweepProgress {
  uint64_t done = 0, total = 0;  // cut runs
  uint64_t failed = 0;
};

struct SweepOptions {
  Scenario scenario = Scenario::ota;
  TornMode torn = TornMode::random;
  uint64_t seed = 0;    // the torn bits; with pairs > 0 also which pairs
  uint64_t pairs = 0;   // random pairs of cuts (--multi)
  uint64_t sample = 0;  // 0 = every cut point; else this many, evenly spread
  std::function<void(const SweepProgress&)> on_progress;  // after every cut run
};

struct CutFailure {
  uint64_t cut = 0;                // mutating operation of the clean run (0-based)
  std::optional<uint64_t> second;  // the recovery's operation where the second cut hit
  std::string op;                  // the torn operation, "erase 0x00110000 +0x1000"
  std::string what;                // what broke
};

struct SweepReport {
  Scenario scenario = Scenario::ota;
  TornMode torn = TornMode::random;
  uint64_t seed = 0;
  std::string old_image, new_image;  // "factory (version 1)", "ota_0 (version 2)"
  // secure-version: the eFuse counter before, and the new image's secure_version (what it must end at).
  uint32_t counter_before = 0, counter_after = 0;
  uint64_t clean_ops = 0;  // mutating operations of the clean run
  uint64_t commit_op = 0;  // from this many operations on, the clean run had committed
  uint64_t cuts = 0, cuts_survived = 0;
  uint64_t pairs = 0, pairs_survived = 0;
  // write-flash only: cuts after which nothing booted until the retry. esptool's flashing is not
  // power-safe (a half-erased bootloader does not boot), so this is reported, not judged.
  uint64_t unbootable_until_retry = 0;
  std::vector<CutFailure> failures;  // in the order found; the first is the first failing cut

  bool ok() const { return failures.empty(); }
};

// Runs the sweep of `opt.scenario` from the device state `before` with the image `new_image`. Errors are
// for a sweep that cannot start, naming why: the device does not boot, the image is not an app for this
// chip or is the one already running, the clean run does not end on the new image.
Result<SweepReport> run_powercut_sweep(const DeviceState& before, ByteView new_image,
                                       const SweepOptions& opt);

// "survived 131 of 131 cuts (+ 20 of 20 pairs)".
std::string summary_line(const SweepReport& r);

}  // namespace ota32::sim
