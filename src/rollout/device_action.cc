// One device's action in a rollout (spec/rollouts.md §6.3, §6.4): offers under the cap, reports, the
// confirmation after reboot, timeouts and retries.
#include <fmt/format.h>

#include "rollout/rollout.h"

namespace ota32::rollout {
namespace {

// Transient failures are retried; the others say something about the image on this device (its self-test
// failed, its hash or signature did not verify, the device refused it) and would fail again.
bool retryable(FailureReason r) { return r == FailureReason::download_failed || r == FailureReason::timeout; }

// Ends the current attempt as a failure: retry_wait when another attempt is allowed, else failed.
ActionChange fail(const Policy& p, DeviceAction a, FailureReason reason, int64_t now, std::string why) {
  ActionChange c;
  c.outcome = Outcome{a.device_id, a.stage, now, false, reason};
  a.reason = reason;
  a.updated_at = now;
  if (retryable(reason) && a.attempts <= p.retries) {
    unsigned shift = a.attempts == 0 ? 0 : std::min(a.attempts - 1, 20u);
    a.state = ActionState::retry_wait;
    a.retry_at = now + p.retry_backoff_s * (int64_t{1} << shift);
    c.why = fmt::format("{}; attempt {} of {} failed ({}), next attempt from {}", why, a.attempts,
                        p.retries + 1, to_string(reason), a.retry_at);
  } else {
    a.state = ActionState::failed;
    c.why = fmt::format("{}; attempt {} failed ({}){}", why, a.attempts, to_string(reason),
                        retryable(reason) ? fmt::format(": no retries left ({} allowed)", p.retries)
                                          : std::string(": not retried"));
  }
  c.action = std::move(a);
  return c;
}

ActionChange succeed(DeviceAction a, int64_t now, std::string why) {
  ActionChange c;
  c.outcome = Outcome{a.device_id, a.stage, now, true, FailureReason::none};
  a.state = ActionState::succeeded;
  a.reason = FailureReason::none;
  a.updated_at = now;
  c.action = std::move(a);
  c.why = std::move(why);
  return c;
}

ActionChange move_to(DeviceAction a, ActionState s, int64_t now, std::string why) {
  a.state = s;
  a.updated_at = now;
  return ActionChange{std::move(a), std::nullopt, std::move(why)};
}

ActionChange unchanged(std::string why) { return ActionChange{std::nullopt, std::nullopt, std::move(why)}; }

}  // namespace

PollDecision decide_poll(const PollInput& in) {
  const RolloutSpec& spec = *in.spec;
  const Policy& p = spec.policy;
  PollDecision d;
  d.stage = in.action ? in.action->stage : stage_of_bucket(spec.stages, bucket(spec.id, in.device_id));
  const bool on_target = in.running_version == spec.target_version;
  auto decide = [&](OfferKind k, ActionChange c) {
    d.kind = k;
    d.change = std::move(c);
    return d;
  };
  if (in.action) {
    const DeviceAction& a = *in.action;
    switch (a.state) {
      case ActionState::succeeded:
      case ActionState::failed:
      case ActionState::canceled:
        return decide(OfferKind::finished, unchanged(fmt::format("action is {}", to_string(a.state))));
      case ActionState::installed:
        if (on_target)
          return decide(OfferKind::finished,
                        succeed(a, in.now,
                                fmt::format("polled running the target version {} after installing it",
                                            spec.target_version)));
        return decide(OfferKind::finished, fail(p, a, FailureReason::rolled_back, in.now,
                                                fmt::format("polled running {} after installing {}",
                                                            in.running_version, spec.target_version)));
      case ActionState::offered:
      case ActionState::downloading:
        if (on_target)
          return decide(OfferKind::finished,
                        succeed(a, in.now,
                                fmt::format("polled running the target version {} (reports were lost)",
                                            spec.target_version)));
        // A device that has the offer keeps it, even while the rollout is paused: never yank a download.
        if (in.status.state == RolloutState::aborted)
          return decide(OfferKind::not_running, unchanged("the rollout was aborted"));
        return decide(OfferKind::offer, unchanged(fmt::format("attempt {} is under way", a.attempts)));
      case ActionState::retry_wait:
        if (in.status.state != RolloutState::running)
          return decide(OfferKind::not_running,
                        unchanged(fmt::format("the rollout is {}", to_string(in.status.state))));
        if (in.now < a.retry_at)
          return decide(OfferKind::backing_off,
                        unchanged(fmt::format("attempt {} failed ({}); next attempt from {}", a.attempts,
                                              to_string(a.reason), a.retry_at)));
        if (in.in_flight >= p.max_in_flight)
          return decide(OfferKind::at_capacity, unchanged(fmt::format("{} of {} devices are updating",
                                                                      in.in_flight, p.max_in_flight)));
        {
          DeviceAction next = a;
          next.state = ActionState::offered;
          next.attempts = a.attempts + 1;
          next.offered_at = in.now;
          next.updated_at = in.now;
          return decide(OfferKind::offer,
                        ActionChange{std::move(next), std::nullopt,
                                     fmt::format("retry: attempt {} of {}", a.attempts + 1, p.retries + 1)});
        }
    }
  }
  if (in.status.state != RolloutState::running)
    return decide(OfferKind::not_running,
                  unchanged(fmt::format("the rollout is {}", to_string(in.status.state))));
  if (d.stage > in.status.stage)
    return decide(OfferKind::not_in_stage, unchanged(fmt::format("device is in stage {}, stage {} is open",
                                                                 d.stage + 1, in.status.stage + 1)));
  if (on_target)
    return decide(OfferKind::already_current,
                  unchanged(fmt::format("device already runs {}", spec.target_version)));
  const Stage& st = spec.stages[d.stage];
  if (st.max_devices && in.stage_actions >= *st.max_devices)
    return decide(OfferKind::stage_full,
                  unchanged(fmt::format("stage {} has its {} devices", d.stage + 1, *st.max_devices)));
  if (in.in_flight >= p.max_in_flight)
    return decide(OfferKind::at_capacity,
                  unchanged(fmt::format("{} of {} devices are updating", in.in_flight, p.max_in_flight)));
  DeviceAction a;
  a.device_id = in.device_id;
  a.stage = d.stage;
  a.state = ActionState::offered;
  a.attempts = 1;
  a.offered_at = in.now;
  a.updated_at = in.now;
  a.from_version = in.running_version;
  return decide(OfferKind::offer, ActionChange{std::move(a), std::nullopt,
                                               fmt::format("stage {} is open: attempt 1", d.stage + 1)});
}

ActionChange apply_report(const RolloutSpec& spec, const DeviceAction& a, ReportKind report,
                          std::string_view running_version, FailureReason reason, int64_t now) {
  const Policy& p = spec.policy;
  const bool under_way = a.state == ActionState::offered || a.state == ActionState::downloading ||
                         a.state == ActionState::installed;
  if (!under_way) return unchanged(fmt::format("action is {}: report ignored", to_string(a.state)));
  const bool on_target = running_version == spec.target_version;
  switch (report) {
    case ReportKind::downloading:
      if (a.state != ActionState::offered) return unchanged("already past downloading");
      return move_to(a, ActionState::downloading, now, "device is downloading");
    case ReportKind::installed:
      if (a.state == ActionState::installed) return unchanged("already installed");
      return move_to(a, ActionState::installed, now,
                     "installed; waiting for the device to confirm it after reboot");
    case ReportKind::booted:
      if (on_target) return succeed(a, now, fmt::format("booted and confirmed {}", spec.target_version));
      if (a.state == ActionState::installed)
        return fail(p, a, FailureReason::rolled_back, now,
                    fmt::format("booted {} after installing {}", running_version, spec.target_version));
      return unchanged("booted the old version before installing: nothing to count");
    case ReportKind::rolled_back:
      return fail(p, a, FailureReason::rolled_back, now, "device reported a rollback");
    case ReportKind::failed:
      if (reason == FailureReason::none)
        reason = a.state == ActionState::installed ? FailureReason::install_failed
                                                   : FailureReason::download_failed;
      return fail(p, a, reason, now, "device reported a failure");
  }
  return unchanged("unknown report");
}

ActionChange expire_action(const Policy& p, const DeviceAction& a, int64_t now) {
  if (is_in_flight(a.state) && now - a.offered_at >= p.action_timeout_s)
    return fail(p, a, FailureReason::timeout, now,
                fmt::format("not installed {} s after the offer (action_timeout {} s)", now - a.offered_at,
                            p.action_timeout_s));
  if (a.state == ActionState::installed && now - a.updated_at >= p.confirm_timeout_s)
    return fail(p, a, FailureReason::timeout, now,
                fmt::format("not confirmed {} s after installing (confirm_timeout {} s)", now - a.updated_at,
                            p.confirm_timeout_s));
  return unchanged("within its timeouts");
}

}  // namespace ota32::rollout
