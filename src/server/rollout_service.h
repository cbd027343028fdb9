// The server's side of staged rollouts: it wires the store (src/store: the rollout's definition, each
// device's action, the outcome and decision logs) to the pure policy (src/rollout). Every step reads the
// store afresh and writes back with the store's compare-and-set calls (write_rollout_device,
// record_rollout_decision), retrying on a lost race: several threads, or several servers sharing one
// PostgreSQL, may handle reports of one rollout at once and still count each outcome once, and a restart
// loses nothing because nothing lives only in memory.
#pragma once

#include <nlohmann/json.hpp>

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/result.h"
#include "rollout/rollout.h"
#include "store/store.h"

namespace ota32::server {

// ---- the stored form <-> the policy's types ----
nlohmann::json policy_to_json(const rollout::Policy& p);
// Unknown keys and wrong types are errors naming the key ("policy.max_in_flight: ...").
Result<rollout::Policy> policy_from_json(const nlohmann::json& j);
Result<rollout::RolloutSpec> spec_of(const RolloutRecord& r);
rollout::RolloutStatus status_of(const RolloutRecord& r);
Result<rollout::DeviceAction> action_of(const RolloutDeviceRecord& r);
nlohmann::json evidence_to_json(const std::vector<rollout::Evidence>& ev);

// The rollouts that may answer devices (running or paused), and whether one of them targets `device`:
// its group's filter matches and the device's project and chip are the release's.
struct RolloutTarget {
  RolloutRecord rollout;
  FirmwareRecord firmware;
  std::string filter;  // the group's filter text ("" = every device of the release's project and chip)
};
Result<std::vector<RolloutTarget>> open_rollouts(Store& store);
bool targets(const RolloutTarget& t, const DeviceRecord& device, std::string_view running_version);

// What the update check answers a device that rollouts target.
struct RolloutAnswer {
  bool targeted = false;   // some running or paused rollout targets the device
  std::string rollout_id;  // the one that answered
  rollout::OfferKind kind = rollout::OfferKind::not_running;
  std::optional<FirmwareRecord> offer;  // set for OfferKind::offer
  std::string why;
};
// `device` = the stored record overlaid with the check's project / chip; `running_version` = the check's.
// Places the device, enforces the caps inside the store's transaction, finishes an installed attempt
// (running the target = confirmed, anything else = rolled back), expires a quiet attempt, and cancels
// waiting actions of older rollouts that a newer one supersedes.
Result<RolloutAnswer> answer_update_check(Store& store, const DeviceRecord& device,
                                          std::string_view running_version, int64_t now);

// A device report (downloading, installed, booted, rolled_back, failed) applied to the device's attempt
// under way in any rollout. A failure evaluates that rollout at once (auto-pause).
Result<void> apply_device_report(Store& store, std::string_view device_id, rollout::ReportKind report,
                                 std::string_view running_version, rollout::FailureReason reason,
                                 int64_t now);

// Runs the policy's evaluation of one rollout and stores a decision that changes it (auto-pause,
// promotion, completion) with its evidence. Returns the decision stored, if any.
Result<std::optional<rollout::Decision>> evaluate_rollout(Store& store, std::string_view rollout_id,
                                                          int64_t now);

// An operator's command (pause, resume, abort, promote), stored as a decision. Errors: invalid_argument
// when the rollout's state refuses it, not_found for an unknown id.
Result<rollout::Decision> command_rollout(Store& store, std::string_view rollout_id, rollout::Command command,
                                          std::string_view actor, int64_t now);

// The time-based part: every attempt past its timeout (action_timeout, confirm_timeout) fails, then every
// running rollout is evaluated (soak time, promotion, completion, the sliding window). The server runs it
// every --rollout-interval seconds (RolloutTimer) so that time passes for a rollout even when no device
// reports. Returns how many actions expired.
Result<int> sweep_rollouts(Store& store, int64_t now);

// Runs sweep_rollouts every `interval` on its own thread until destroyed. Failures go to `log`.
class RolloutTimer {
 public:
  RolloutTimer(Store& store, std::chrono::milliseconds interval, std::function<int64_t()> clock,
               std::function<void(const std::string&)> log);
  ~RolloutTimer();
  RolloutTimer(const RolloutTimer&) = delete;
  RolloutTimer& operator=(const RolloutTimer&) = delete;

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace ota32::server
