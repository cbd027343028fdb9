#include "server/rollout_service.h"

#include <fmt/format.h>

#include <algorithm>

#include "server/group_filter.h"

namespace ota32::server {
namespace {

using json = nlohmann::json;
using namespace ota32::rollout;

// How often one step re-reads and tries again after another writer changed the same row.
constexpr int kRaceRetries = 8;

RolloutDeviceRecord record_of(const DeviceAction& a, const std::string& rollout_id) {
  RolloutDeviceRecord r;
  r.rollout_id = rollout_id;
  r.device_id = a.device_id;
  r.stage = a.stage;
  r.state = std::string(to_string(a.state));
  r.attempts = a.attempts;
  r.offered_at = a.offered_at;
  r.updated_at = a.updated_at;
  r.retry_at = a.retry_at;
  r.reason = std::string(to_string(a.reason));
  r.from_version = a.from_version;
  return r;
}

std::optional<RolloutOutcomeRecord> outcome_record(const std::optional<Outcome>& o,
                                                   const std::string& rollout_id) {
  if (!o) return std::nullopt;
  return RolloutOutcomeRecord{rollout_id, o->device_id, o->stage,
                              o->at,      o->success,   std::string(to_string(o->reason))};
}

bool under_way(ActionState s) { return is_in_flight(s) || s == ActionState::installed; }

bool is_open(std::string_view state) {
  return state == "running" || state == "paused_manual" || state == "paused_auto";
}

RolloutDecisionRecord decision_record(const Decision& d, const std::string& rollout_id) {
  RolloutDecisionRecord r;
  r.rollout_id = rollout_id;
  r.at = d.at;
  r.kind = std::string(to_string(d.kind));
  r.actor = d.actor;
  r.stage = d.stage;
  r.summary = d.summary;
  r.evidence_json = evidence_to_json(d.evidence).dump();
  return r;
}

RolloutRecord with_status(RolloutRecord r, const RolloutStatus& s) {
  r.state = std::string(to_string(s.state));
  r.stage = s.stage;
  r.stage_started_at = s.stage_started_at;
  r.counted_since = s.counted_since;
  return r;
}

// Writes one change of a device's action (compare-and-set on `expected`).
Result<bool> write_change(Store& store, const std::string& rollout_id, const ActionChange& change,
                          const std::optional<RolloutDeviceRecord>& expected, int64_t max_in_flight = -1,
                          int64_t max_stage_devices = -1) {
  Store::DeviceActionWrite w;
  w.action = record_of(*change.action, rollout_id);
  w.expected = expected;
  w.outcome = outcome_record(change.outcome, rollout_id);
  w.max_in_flight = max_in_flight;
  w.max_stage_devices = max_stage_devices;
  return store.write_rollout_device(w);
}

bool is_failure(const ActionChange& c) { return c.outcome && !c.outcome->success; }

}  // namespace

// ---- conversions ----

json policy_to_json(const Policy& p) {
  json zero = json::array();
  for (FailureReason r : p.zero_tolerance) zero.push_back(std::string(to_string(r)));
  return json{{"max_in_flight", p.max_in_flight},
              {"retries", p.retries},
              {"retry_backoff_s", p.retry_backoff_s},
              {"action_timeout_s", p.action_timeout_s},
              {"confirm_timeout_s", p.confirm_timeout_s},
              {"max_failures", p.max_failures},
              {"min_samples", p.min_samples},
              {"max_failure_rate", p.max_failure_rate},
              {"wilson", p.wilson_rule},
              {"window_s", p.window_s},
              {"zero_tolerance", std::move(zero)}};
}

Result<Policy> policy_from_json(const json& j) {
  Policy p;
  if (j.is_null()) return p;
  auto bad = [](std::string_view key, std::string_view why) {
    return Error(ErrorCode::invalid_argument, fmt::format("policy.{}: {}", key, why));
  };
  if (!j.is_object()) return Error(ErrorCode::invalid_argument, "policy: must be a JSON object");
  for (const auto& [key, v] : j.items()) {
    auto count = [&](auto& out, int64_t max) -> Result<void> {
      if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > max)
        return bad(key, fmt::format("a whole number from 0 to {}", max));
      out = static_cast<std::remove_reference_t<decltype(out)>>(v.get<int64_t>());
      return {};
    };
    constexpr int64_t kYear = int64_t{366} * 24 * 3600;
    if (key == "max_in_flight")
      OTA32_TRY(count(p.max_in_flight, 1'000'000));
    else if (key == "retries")
      OTA32_TRY(count(p.retries, 100));
    else if (key == "retry_backoff_s")
      OTA32_TRY(count(p.retry_backoff_s, kYear));
    else if (key == "action_timeout_s")
      OTA32_TRY(count(p.action_timeout_s, kYear));
    else if (key == "confirm_timeout_s")
      OTA32_TRY(count(p.confirm_timeout_s, kYear));
    else if (key == "max_failures")
      OTA32_TRY(count(p.max_failures, 1'000'000'000));
    else if (key == "min_samples")
      OTA32_TRY(count(p.min_samples, 1'000'000'000));
    else if (key == "window_s")
      OTA32_TRY(count(p.window_s, kYear));
    else if (key == "max_failure_rate") {
      if (!v.is_number() || !(v.get<double>() >= 0 && v.get<double>() <= 1))
        return bad(key, "a fraction from 0 to 1 (0.05 = 5 %)");
      p.max_failure_rate = v.get<double>();
    } else if (key == "wilson") {
      if (!v.is_boolean()) return bad(key, "true or false");
      p.wilson_rule = v.get<bool>();
    } else if (key == "zero_tolerance") {
      if (!v.is_array()) return bad(key, "a list of failure reasons");
      for (const auto& r : v) {
        if (!r.is_string()) return bad(key, "a list of failure reasons");
        auto reason = failure_reason_from_string(r.get<std::string>());
        if (!reason || *reason == FailureReason::none)
          return bad(key, reason ? "'none' is not a failure" : reason.error().message());
        p.zero_tolerance.push_back(*reason);
      }
    } else {
      return bad(key,
                 "unknown key (max_in_flight, retries, retry_backoff_s, action_timeout_s, "
                 "confirm_timeout_s, max_failures, min_samples, max_failure_rate, wilson, window_s, "
                 "zero_tolerance)");
    }
  }
  return p;
}

Result<RolloutSpec> spec_of(const RolloutRecord& r) {
  RolloutSpec s;
  s.id = r.id;
  s.target_version = r.target_version;
  for (const auto& st : r.stages)
    s.stages.push_back(Stage{
        st.cumulative_bp, st.min_soak_s, st.success_fraction,
        st.max_devices < 0 ? std::nullopt : std::optional<uint32_t>(static_cast<uint32_t>(st.max_devices))});
  json pj = json::parse(r.policy_json.empty() ? "{}" : r.policy_json, nullptr, false);
  if (pj.is_discarded())
    return Error(ErrorCode::corrupt, fmt::format("rollout {}: the stored policy is not JSON", r.id));
  auto p = policy_from_json(pj);
  if (!p) return p.error().with_context("rollout " + r.id);
  s.policy = std::move(*p);
  return s;
}

RolloutStatus status_of(const RolloutRecord& r) {
  RolloutStatus s;
  auto st = rollout_state_from_string(r.state);
  s.state = st ? *st : RolloutState::aborted;  // an unknown stored state offers nothing
  s.stage = r.stage;
  s.stage_started_at = r.stage_started_at;
  s.counted_since = r.counted_since;
  return s;
}

Result<DeviceAction> action_of(const RolloutDeviceRecord& r) {
  DeviceAction a;
  a.device_id = r.device_id;
  a.stage = r.stage;
  OTA32_ASSIGN(a.state, action_state_from_string(r.state));
  a.attempts = r.attempts;
  a.offered_at = r.offered_at;
  a.updated_at = r.updated_at;
  a.retry_at = r.retry_at;
  auto reason = failure_reason_from_string(r.reason);
  a.reason = reason ? *reason : FailureReason::none;
  a.from_version = r.from_version;
  return a;
}

json evidence_to_json(const std::vector<Evidence>& ev) {
  json out = json::array();
  for (const Evidence& e : ev)
    out.push_back(json{{"rule", e.rule},
                       {"scope", e.scope},
                       {"from", e.from},
                       {"to", e.to},
                       {"succeeded", e.succeeded},
                       {"failed", e.failed},
                       {"reported", e.reported},
                       {"value", e.value},
                       {"threshold", e.threshold},
                       {"fired", e.fired},
                       {"text", e.text}});
  return out;
}

// ---- targeting ----

Result<std::vector<RolloutTarget>> open_rollouts(Store& store) {
  OTA32_ASSIGN(auto all, store.list_rollouts());
  std::vector<RolloutTarget> out;
  for (auto& r : all) {
    if (!is_open(r.state)) continue;
    RolloutTarget t;
    OTA32_ASSIGN(auto fw, store.get_firmware(r.firmware_sha256));
    if (!fw) continue;  // its firmware was deleted: nothing to offer
    t.firmware = std::move(*fw);
    if (!r.group_name.empty()) {
      OTA32_ASSIGN(auto g, store.get_group(r.group_name));
      if (!g) continue;  // the group was deleted: it targets nobody
      t.filter = g->filter;
    }
    t.rollout = std::move(r);
    out.push_back(std::move(t));
  }
  return out;
}

bool targets(const RolloutTarget& t, const DeviceRecord& device, std::string_view running_version) {
  if (device.project != t.firmware.project || device.chip != t.firmware.chip) return false;
  auto f = parse_group_filter(t.filter);
  return f && matches(*f, device, running_version);
}

// ---- the update check ----

Result<RolloutAnswer> answer_update_check(Store& store, const DeviceRecord& device,
                                          std::string_view running_version, int64_t now) {
  OTA32_ASSIGN(auto open, open_rollouts(store));
  std::vector<Candidate> candidates;
  std::vector<const RolloutTarget*> mine;
  for (const auto& t : open) {
    if (!targets(t, device, running_version)) continue;
    OTA32_ASSIGN(auto rec, store.get_rollout_device(t.rollout.id, device.id));
    Candidate c{t.rollout.id, t.rollout.seq, status_of(t.rollout).state, std::nullopt};
    if (rec) {
      OTA32_ASSIGN(c.action, action_of(*rec));
    }
    candidates.push_back(std::move(c));
    mine.push_back(&t);
  }
  RolloutAnswer answer;
  if (candidates.empty()) return answer;
  answer.targeted = true;
  const Resolution res = resolve(candidates);
  for (const auto& id : res.cancel) {
    // A newer rollout supersedes this one's waiting retry: the action ends as canceled (no outcome).
    OTA32_ASSIGN(auto rec, store.get_rollout_device(id, device.id));
    if (!rec || rec->state != "retry_wait") continue;
    OTA32_ASSIGN(DeviceAction a, action_of(*rec));
    a.state = ActionState::canceled;
    a.updated_at = now;
    OTA32_TRY(write_change(store, id, ActionChange{a, std::nullopt, "superseded"}, rec));
  }
  answer.why = res.why;
  if (!res.rollout_id) return answer;
  const RolloutTarget& t = **std::find_if(
      mine.begin(), mine.end(), [&](const RolloutTarget* m) { return m->rollout.id == *res.rollout_id; });
  const std::string& rid = t.rollout.id;
  answer.rollout_id = rid;
  OTA32_ASSIGN(RolloutSpec spec, spec_of(t.rollout));
  const RolloutStatus status = status_of(t.rollout);
  bool failed = false;
  for (int attempt = 0; attempt < kRaceRetries; ++attempt) {
    OTA32_ASSIGN(auto cur, store.get_rollout_device(rid, device.id));
    std::optional<DeviceAction> action;
    if (cur) {
      OTA32_ASSIGN(action, action_of(*cur));
      ActionChange expired = expire_action(spec.policy, *action, now);
      if (expired.action) {
        OTA32_ASSIGN(bool ok, write_change(store, rid, expired, cur));
        if (!ok) continue;
        failed = failed || is_failure(expired);
        action = expired.action;
        cur = record_of(*action, rid);
      }
    }
    const uint32_t stage = action ? action->stage : stage_of_bucket(spec.stages, bucket(spec.id, device.id));
    OTA32_ASSIGN(auto counts, store.rollout_state_counts(rid));
    uint32_t in_flight = 0, stage_actions = 0;
    for (const auto& c : counts) {
      if (c.state == "offered" || c.state == "downloading") in_flight += static_cast<uint32_t>(c.count);
      if (c.stage == stage && c.state != "canceled") stage_actions += static_cast<uint32_t>(c.count);
    }
    PollInput in{&spec,  status,    device.id,     std::string(running_version),
                 action, in_flight, stage_actions, now};
    PollDecision d = decide_poll(in);
    if (d.change.action) {
      const bool new_in_flight =
          is_in_flight(d.change.action->state) && !(action && is_in_flight(action->state));
      const auto& max_devices = spec.stages[std::min<size_t>(stage, spec.stages.size() - 1)].max_devices;
      OTA32_ASSIGN(bool ok, write_change(store, rid, d.change, cur,
                                         new_in_flight ? int64_t{spec.policy.max_in_flight} : -1,
                                         !cur && max_devices ? int64_t{*max_devices} : -1));
      if (!ok) continue;  // another check took the last place, or the action changed: decide again
      failed = failed || is_failure(d.change);
    }
    answer.kind = d.kind;
    answer.why = d.change.why;
    if (d.kind == OfferKind::offer) answer.offer = t.firmware;
    if (failed && status.state == RolloutState::running) OTA32_TRY(evaluate_rollout(store, rid, now));
    return answer;
  }
  return Error(ErrorCode::unavailable,
               fmt::format("rollout {}: device {}'s action kept changing under concurrent requests; retry",
                           rid, device.id));
}

// ---- reports ----

Result<void> apply_device_report(Store& store, std::string_view device_id, ReportKind report,
                                 std::string_view running_version, FailureReason reason, int64_t now) {
  OTA32_ASSIGN(auto all, store.list_rollouts());
  for (const auto& r : all) {
    if (r.state == "completed") continue;
    std::optional<RolloutSpec> spec;
    for (int attempt = 0; attempt < kRaceRetries; ++attempt) {
      OTA32_ASSIGN(auto cur, store.get_rollout_device(r.id, device_id));
      if (!cur) break;
      OTA32_ASSIGN(DeviceAction a, action_of(*cur));
      if (!under_way(a.state)) break;
      if (!spec) {
        OTA32_ASSIGN(spec, spec_of(r));
      }
      ActionChange change = apply_report(*spec, a, report, running_version, reason, now);
      if (!change.action) break;
      OTA32_ASSIGN(bool ok, write_change(store, r.id, change, cur));
      if (!ok) continue;
      if (is_failure(change) && r.state == "running") OTA32_TRY(evaluate_rollout(store, r.id, now));
      break;
    }
  }
  return {};
}

// ---- the rollout's decisions ----

Result<std::optional<Decision>> evaluate_rollout(Store& store, std::string_view rollout_id, int64_t now) {
  for (int attempt = 0; attempt < kRaceRetries; ++attempt) {
    OTA32_ASSIGN(auto rec, store.get_rollout(rollout_id));
    if (!rec) return Error(ErrorCode::not_found, fmt::format("no rollout '{}'", rollout_id));
    if (rec->state != "running") return std::optional<Decision>();
    OTA32_ASSIGN(RolloutSpec spec, spec_of(*rec));
    const RolloutStatus status = status_of(*rec);
    OTA32_ASSIGN(auto outcome_rows, store.rollout_outcomes(rec->id, status.counted_since));
    std::vector<Outcome> outcomes;
    outcomes.reserve(outcome_rows.size());
    for (const auto& o : outcome_rows) {
      auto reason = failure_reason_from_string(o.reason);
      outcomes.push_back(
          Outcome{o.device_id, o.stage, o.at, o.success, reason ? *reason : FailureReason::none});
    }
    OTA32_ASSIGN(auto counts, store.rollout_state_counts(rec->id));
    std::vector<StageTally> stages(spec.stages.size());
    for (const auto& c : counts) {
      if (c.stage >= stages.size() || c.state == "canceled") continue;
      StageTally& s = stages[c.stage];
      const auto n = static_cast<uint32_t>(c.count);
      s.actions += n;
      if (c.state == "succeeded")
        s.succeeded += n;
      else if (c.state == "failed")
        s.failed += n;
      else
        s.in_progress += n;
    }
    EvaluationInput in{&spec, status, &outcomes, std::move(stages), now};
    Decision d = evaluate(in);
    if (d.kind == DecisionKind::none) return std::optional<Decision>();
    const RolloutRecord next = with_status(*rec, d.status);
    OTA32_ASSIGN(bool ok, store.record_rollout_decision(decision_record(d, rec->id), &*rec, &next));
    if (ok) return std::optional<Decision>(std::move(d));
  }
  return std::optional<Decision>();  // other servers keep deciding; the next evaluation catches up
}

Result<Decision> command_rollout(Store& store, std::string_view rollout_id, Command command,
                                 std::string_view actor, int64_t now) {
  for (int attempt = 0; attempt < kRaceRetries; ++attempt) {
    OTA32_ASSIGN(auto rec, store.get_rollout(rollout_id));
    if (!rec) return Error(ErrorCode::not_found, fmt::format("no rollout '{}'", rollout_id));
    OTA32_ASSIGN(RolloutSpec spec, spec_of(*rec));
    OTA32_ASSIGN(Decision d, apply_command(spec, status_of(*rec), command, actor, now));
    const RolloutRecord next = with_status(*rec, d.status);
    OTA32_ASSIGN(bool ok, store.record_rollout_decision(decision_record(d, rec->id), &*rec, &next));
    if (ok) return d;
  }
  return Error(ErrorCode::unavailable,
               fmt::format("rollout {} kept changing under concurrent decisions; retry", rollout_id));
}

Result<int> sweep_rollouts(Store& store, int64_t now) {
  OTA32_ASSIGN(auto all, store.list_rollouts());
  int expired = 0;
  for (const auto& r : all) {
    if (r.state == "completed") continue;
    OTA32_ASSIGN(RolloutSpec spec, spec_of(r));
    OTA32_ASSIGN(auto actions, store.list_rollout_devices(r.id));
    for (const auto& rec : actions) {
      OTA32_ASSIGN(DeviceAction a, action_of(rec));
      if (!under_way(a.state)) continue;
      ActionChange change = expire_action(spec.policy, a, now);
      if (!change.action) continue;
      // A lost race means the device reported meanwhile: its own step decided, nothing to do here.
      OTA32_ASSIGN(bool ok, write_change(store, r.id, change, rec));
      if (ok) ++expired;
    }
    if (r.state == "running") OTA32_TRY(evaluate_rollout(store, r.id, now));
  }
  return expired;
}

RolloutTimer::RolloutTimer(Store& store, std::chrono::milliseconds interval, std::function<int64_t()> clock,
                           std::function<void(const std::string&)> log) {
  thread_ = std::thread([this, &store, interval, clock = std::move(clock), log = std::move(log)] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, interval, [this] { return stop_; })) {
      lock.unlock();
      auto swept = sweep_rollouts(store, clock ? clock() : unix_now());
      if (!swept && log) log(fmt::format("rollout timer: {}", swept.error().message()));
      lock.lock();
    }
  });
}

RolloutTimer::~RolloutTimer() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

}  // namespace ota32::server
