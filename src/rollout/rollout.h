// Pure rollout policy (../shared/spec/rollouts.md §6): stage placement by a stable hash, the cap on devices
// updating at once, success / failure accounting per device, auto-pause and promotion decisions, operator
// commands and superseding. No I/O and no clock: callers pass the state they stored and `now` (Unix
// seconds), and persist what comes back. Every decision carries its evidence (which counts, which window).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace ota32::rollout {

// Stage percentages are basis points of the fleet: 100 = 1 %, 10000 = everyone.
inline constexpr uint32_t kBucketCount = 10000;

struct Stage {
  // Cumulative: a device whose bucket is below this and not below an earlier stage's value is in this stage.
  uint32_t cumulative_bp = kBucketCount;
  int64_t min_soak_s = 0;         // the stage runs at least this long before the next one opens
  double success_fraction = 0.9;  // succeeded / devices seen in the stage, needed to promote
  // At most this many devices of the stage get the update (lowest buckets first are not guaranteed: the
  // first devices to poll take the places). nullopt = no cap.
  std::optional<uint32_t> max_devices;
};

enum class FailureReason {
  none,
  download_failed,
  verify_failed,
  install_failed,
  rolled_back,
  timeout,
  rejected
};
std::string_view to_string(FailureReason r);
Result<FailureReason> failure_reason_from_string(std::string_view s);

struct Policy {
  uint32_t max_in_flight = 50;       // devices holding an offer they have not installed yet (rollout-wide)
  uint32_t retries = 2;              // new attempts after a transient failure (download_failed, timeout)
  int64_t retry_backoff_s = 300;     // wait before attempt n+1: retry_backoff_s * 2^(n-1)
  int64_t action_timeout_s = 86400;  // offered but not installed within this: timeout
  int64_t confirm_timeout_s =
      1800;  // installed but not confirmed (booted on the new image) within this: timeout
  // Auto-pause rules (0 turns a rule off). Evaluated over the current stage and over a sliding window.
  uint32_t max_failures = 5;       // rule max_failures: F >= max_failures
  uint32_t min_samples = 20;       // rule failure_rate: n >= min_samples and F/n > max_failure_rate
  double max_failure_rate = 0.05;  //
  bool wilson_rule = false;        // rule wilson: Wilson 95 % lower bound of F/n > max_failure_rate
  int64_t window_s = 3600;         // the sliding window across the whole rollout
  std::vector<FailureReason> zero_tolerance;  // rule zero_tolerance: any failure with one of these reasons
};

struct RolloutSpec {
  std::string id;              // also the placement hash's salt
  std::string target_version;  // the release's esp_app_desc_t.version
  std::vector<Stage> stages;   // at least one; cumulative_bp strictly increasing, the last one 10000
  Policy policy;
};

// Checks stages and policy; errors (invalid_argument) name the field ("stages[1].percent: ...").
Result<void> check_spec(const RolloutSpec& spec);

enum class RolloutState { running, paused_manual, paused_auto, aborted, completed };
std::string_view to_string(RolloutState s);
Result<RolloutState> rollout_state_from_string(std::string_view s);

struct RolloutStatus {
  RolloutState state = RolloutState::running;
  uint32_t stage = 0;            // the open stage: devices of stages 0..stage may get the update
  int64_t stage_started_at = 0;  // when `stage` opened
  int64_t counted_since = 0;     // auto-pause counts outcomes from here on (creation, then every resume)
};

// ---- placement (§6.2) ----

// uint32_be(SHA-256(rollout_id || 0x00 || device_id)[0..4]) mod 10000: the same device always lands in
// the same bucket of a rollout, and raising a stage's percentage never moves a device to a later stage.
uint32_t bucket(std::string_view rollout_id, std::string_view device_id);
// The stage whose range holds `bucket` (always one when the last stage is 10000).
uint32_t stage_of_bucket(const std::vector<Stage>& stages, uint32_t bucket);

// ---- one device's action (§6.3, §6.4) ----

enum class ActionState {
  offered,      // the device was given the update; it has not installed it yet (counts against the cap)
  downloading,  // it said so (counts against the cap)
  installed,    // written and set to boot; waiting for the device to confirm the new image after reboot
  succeeded,    // it confirmed: booted the target version (after its self-test marked it valid)
  retry_wait,   // an attempt failed; another one is allowed from retry_at
  failed,       // final failure: no more attempts in this rollout
  canceled,     // superseded by a newer rollout before it was offered again
};
std::string_view to_string(ActionState s);
Result<ActionState> action_state_from_string(std::string_view s);
bool is_terminal(ActionState s);   // succeeded, failed, canceled
bool is_in_flight(ActionState s);  // offered, downloading

struct DeviceAction {
  std::string device_id;
  uint32_t stage = 0;
  ActionState state = ActionState::offered;
  uint32_t attempts = 0;                       // attempts started
  int64_t offered_at = 0;                      // start of the current attempt
  int64_t updated_at = 0;                      // last state change
  int64_t retry_at = 0;                        // retry_wait: the next attempt may start then
  FailureReason reason = FailureReason::none;  // of the last failed attempt
  std::string from_version;  // what the device ran before its first attempt (for a rollback rollout)
};

// A terminal result of one attempt, appended to the rollout's outcome log. Auto-pause counts each device
// once, by its latest outcome in the scope (a retry that succeeds replaces the failure).
struct Outcome {
  std::string device_id;
  uint32_t stage = 0;
  int64_t at = 0;
  bool success = false;
  FailureReason reason = FailureReason::none;
};

// The result of applying an event to one device's action: what to store, and the outcome to log if the
// attempt ended. `why` says in words which rule decided.
struct ActionChange {
  std::optional<DeviceAction> action;  // nullopt = nothing to store
  std::optional<Outcome> outcome;
  std::string why;
};

// What the server answers a device's update check with.
enum class OfferKind {
  offer,            // give it the update (action = the attempt to store)
  not_in_stage,     // its stage is not open yet
  not_running,      // the rollout is paused, aborted or completed
  at_capacity,      // max_in_flight devices are updating; poll again later
  stage_full,       // the stage's max_devices places are taken
  backing_off,      // retry_wait until retry_at
  finished,         // its action is terminal (succeeded / failed / canceled)
  already_current,  // it runs the target version and never had an action here
};
std::string_view to_string(OfferKind k);

struct PollInput {
  const RolloutSpec* spec = nullptr;
  RolloutStatus status;
  std::string device_id;
  std::string running_version;
  std::optional<DeviceAction> action;  // the device's action in this rollout, if any
  uint32_t in_flight = 0;              // actions of the rollout in offered / downloading
  uint32_t stage_actions = 0;          // actions of the device's stage (for max_devices)
  int64_t now = 0;
};

struct PollDecision {
  OfferKind kind = OfferKind::not_in_stage;
  uint32_t stage = 0;  // the device's stage
  ActionChange change;
};

// An update check. A poll also finishes an installed attempt: running the target version = succeeded
// (a DDI client's second poll after closed/success), running anything else = rolled_back.
PollDecision decide_poll(const PollInput& in);

// Device reports (POST /api/v1/devices/{id}/report states): downloading, installed, booted, rolled_back,
// failed. `reason` refines `failed` (default: download_failed before installed, install_failed after).
enum class ReportKind { downloading, installed, booted, rolled_back, failed };
Result<ReportKind> report_kind_from_string(std::string_view s);

ActionChange apply_report(const RolloutSpec& spec, const DeviceAction& action, ReportKind report,
                          std::string_view running_version, FailureReason reason, int64_t now);

// An attempt that went quiet: offered / downloading past action_timeout_s since offered_at, or installed
// past confirm_timeout_s since updated_at, fails with `timeout` (retried like a download failure).
ActionChange expire_action(const Policy& policy, const DeviceAction& action, int64_t now);

// ---- the rollout (§6.5 - §6.7) ----

// Counts of one stage's actions (see tally()).
struct StageTally {
  uint32_t actions = 0;  // devices of the stage that were seen (polled) since it opened
  uint32_t succeeded = 0;
  uint32_t failed = 0;       // final failures
  uint32_t in_progress = 0;  // offered, downloading, installed, retry_wait
};
// Per stage, from the rollout's actions; the vector has one entry per stage.
std::vector<StageTally> tally(const std::vector<DeviceAction>& actions, size_t stage_count);

// One measurement behind a decision.
struct Evidence {
  std::string rule;   // max_failures, failure_rate, wilson, zero_tolerance, soak, success_fraction, ...
  std::string scope;  // "stage 1" or "window 3600 s"
  int64_t from = 0, to = 0;  // the outcomes counted lie in [from, to]
  uint32_t succeeded = 0, failed = 0, reported = 0;
  double value = 0;      // the measured quantity (a count, a rate, a bound, seconds)
  double threshold = 0;  // what it was compared with
  bool fired = false;
  std::string text;  // one line for people
};

enum class DecisionKind { none, paused_auto, promoted, completed, paused, resumed, aborted };
std::string_view to_string(DecisionKind k);

struct Decision {
  DecisionKind kind = DecisionKind::none;
  int64_t at = 0;
  std::string actor;   // "policy" or the operator
  uint32_t stage = 0;  // the stage it concerned
  std::string summary;
  std::vector<Evidence> evidence;  // every rule checked, fired or not
  RolloutStatus status;            // the status after the decision
};

struct EvaluationInput {
  const RolloutSpec* spec = nullptr;
  RolloutStatus status;
  const std::vector<Outcome>* outcomes = nullptr;  // the whole outcome log (any order)
  std::vector<StageTally> stages;                  // tally() of the actions
  int64_t now = 0;
};

// The periodic (and on-every-outcome) evaluation of a running rollout: auto-pause first (stage scope, then
// the window), else promotion of the open stage, else completion after the last one. kind none = keep
// going; the evidence still says why not. A paused, aborted or completed rollout is left alone.
Decision evaluate(const EvaluationInput& in);

enum class Command { pause, resume, abort, promote };
Result<Command> command_from_string(std::string_view s);

// An operator's command: pause (running -> paused_manual), resume (paused_* -> running; auto-pause counts
// start again with the next second, so the failures that paused it are not counted twice), abort (-> aborted,
// final), promote (open the next stage now, skipping soak and success fraction). Errors: invalid_argument
// naming the state that refuses it.
Result<Decision> apply_command(const RolloutSpec& spec, const RolloutStatus& status, Command command,
                               std::string_view actor, int64_t now);

// ---- several rollouts for one device (§6.7) ----

struct Candidate {
  std::string rollout_id;
  int64_t created_seq = 0;  // creation order: higher = newer
  RolloutState state = RolloutState::running;
  std::optional<DeviceAction> action;  // the device's action in it
};

struct Resolution {
  std::optional<std::string> rollout_id;  // the rollout that answers the device (nullopt: none)
  std::vector<std::string> cancel;        // rollouts whose action for this device is canceled
  std::string why;
};

// The newest running or paused rollout answers a device, except that an older one whose attempt is under
// way (offered, downloading, installed) keeps the device until that attempt ends. Older actions waiting
// for a retry are canceled. Candidates are the rollouts that target the device.
Resolution resolve(const std::vector<Candidate>& candidates);

// Devices an aborted rollout should take back (the rollback rollout): those that installed or confirmed the
// new image, with the version each ran before.
struct RollbackTarget {
  std::string device_id;
  std::string version;
};
std::vector<RollbackTarget> plan_rollback(const std::vector<DeviceAction>& actions);

}  // namespace ota32::rollout
