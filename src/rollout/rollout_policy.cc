// The rollout-level decisions (spec/rollouts.md §6.5 - §6.7): auto-pause, promotion, completion, operator
// commands, superseding and the rollback plan.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>

#include "rollout/rollout.h"

namespace ota32::rollout {
namespace {

struct Counts {
  uint32_t succeeded = 0, failed = 0;
  std::vector<FailureReason> failure_reasons;  // of the failed devices
};

// Each device once, by its latest outcome in [from, to] (a later entry wins a tie: the log's order).
Counts count_latest(const std::vector<Outcome>& log, int64_t from, int64_t to,
                    std::optional<uint32_t> stage) {
  std::map<std::string_view, const Outcome*> latest;
  for (const Outcome& o : log) {
    if (o.at < from || o.at > to || (stage && o.stage != *stage)) continue;
    auto [it, inserted] = latest.emplace(o.device_id, &o);
    if (!inserted && o.at >= it->second->at) it->second = &o;
  }
  Counts c;
  for (const auto& [id, o] : latest) {
    if (o->success) {
      ++c.succeeded;
    } else {
      ++c.failed;
      c.failure_reasons.push_back(o->reason);
    }
  }
  return c;
}

// Lower bound of the 95 % Wilson score interval of a rate f/n.
double wilson_lower(uint32_t f, uint32_t n) {
  if (n == 0) return 0;
  const double z = 1.959963984540054, p = double(f) / n, z2n = z * z / n;
  return (p + z2n / 2 - z * std::sqrt(p * (1 - p) / n + z2n / (4.0 * n))) / (1 + z2n);
}

// The auto-pause rules over one scope; appends one Evidence per rule that is switched on.
void check_rules(const Policy& p, const Counts& c, const std::string& scope, int64_t from, int64_t to,
                 std::vector<Evidence>& out) {
  const uint32_t n = c.succeeded + c.failed;
  auto add = [&](std::string rule, double value, double threshold, bool fired, std::string text) {
    out.push_back(Evidence{std::move(rule), scope, from, to, c.succeeded, c.failed, n, value, threshold,
                           fired, fmt::format("{}: {}", scope, text)});
  };
  if (p.max_failures > 0)
    add("max_failures", c.failed, p.max_failures, c.failed >= p.max_failures,
        fmt::format("{} failed of {} reported (pause at {} failures)", c.failed, n, p.max_failures));
  const double rate = n == 0 ? 0 : double(c.failed) / n;
  if (n < p.min_samples || n == 0) {
    add("failure_rate", rate, p.max_failure_rate, false,
        fmt::format("{} of {} reported devices failed; the rate counts from {} reported", c.failed, n,
                    std::max<uint32_t>(p.min_samples, 1)));
  } else {
    add("failure_rate", rate, p.max_failure_rate, rate > p.max_failure_rate,
        fmt::format("failure rate {:.1f} % ({} of {} reported), limit {:.1f} %", rate * 100, c.failed, n,
                    p.max_failure_rate * 100));
  }
  if (p.wilson_rule) {
    double lb = wilson_lower(c.failed, n);
    add("wilson", lb, p.max_failure_rate, n > 0 && lb > p.max_failure_rate,
        fmt::format("failure rate is at least {:.1f} % with 95 % confidence ({} of {}), limit {:.1f} %",
                    lb * 100, c.failed, n, p.max_failure_rate * 100));
  }
  if (!p.zero_tolerance.empty()) {
    uint32_t hits = 0;
    std::string which;
    for (FailureReason r : c.failure_reasons)
      if (std::find(p.zero_tolerance.begin(), p.zero_tolerance.end(), r) != p.zero_tolerance.end()) {
        if (hits++ == 0) which = std::string(to_string(r));
      }
    add("zero_tolerance", hits, 0, hits > 0,
        hits > 0 ? fmt::format("{} failure(s) with a zero-tolerance reason (first: {})", hits, which)
                 : std::string("no failure with a zero-tolerance reason"));
  }
}

Decision make(DecisionKind kind, const RolloutStatus& after, std::string actor, uint32_t stage, int64_t now,
              std::string summary, std::vector<Evidence> evidence = {}) {
  return Decision{kind, now, std::move(actor), stage, std::move(summary), std::move(evidence), after};
}

}  // namespace

std::vector<StageTally> tally(const std::vector<DeviceAction>& actions, size_t stage_count) {
  std::vector<StageTally> t(stage_count);
  for (const DeviceAction& a : actions) {
    if (a.stage >= stage_count || a.state == ActionState::canceled) continue;
    StageTally& s = t[a.stage];
    ++s.actions;
    if (a.state == ActionState::succeeded)
      ++s.succeeded;
    else if (a.state == ActionState::failed)
      ++s.failed;
    else
      ++s.in_progress;
  }
  return t;
}

Decision evaluate(const EvaluationInput& in) {
  const RolloutSpec& spec = *in.spec;
  const Policy& p = spec.policy;
  const RolloutStatus& st = in.status;
  const uint32_t k = st.stage;
  if (st.state != RolloutState::running)
    return make(DecisionKind::none, st, "policy", k, in.now,
                fmt::format("the rollout is {}", to_string(st.state)));

  // 1. Auto-pause: the open stage since counting started, then the window over every stage.
  std::vector<Evidence> ev;
  static const std::vector<Outcome> kNone;
  const auto& log = in.outcomes ? *in.outcomes : kNone;
  check_rules(p, count_latest(log, st.counted_since, in.now, k), fmt::format("stage {}", k + 1),
              st.counted_since, in.now, ev);
  const int64_t wfrom = std::max(st.counted_since, in.now - p.window_s);
  check_rules(p, count_latest(log, wfrom, in.now, std::nullopt), fmt::format("window {} s", p.window_s),
              wfrom, in.now, ev);
  for (const Evidence& e : ev)
    if (e.fired) {
      RolloutStatus after = st;
      after.state = RolloutState::paused_auto;
      return make(DecisionKind::paused_auto, after, "policy", k, in.now,
                  fmt::format("paused by rule {}: {}", e.rule, e.text), std::move(ev));
    }

  // 2. Promotion of the open stage, or completion after the last one.
  const Stage& stage = spec.stages[k];
  const StageTally t = k < in.stages.size() ? in.stages[k] : StageTally{};
  const int64_t soaked = in.now - st.stage_started_at;
  const bool soak_ok = soaked >= stage.min_soak_s;
  ev.push_back(Evidence{"soak", fmt::format("stage {}", k + 1), st.stage_started_at, in.now, t.succeeded,
                        t.failed, t.actions, double(soaked), double(stage.min_soak_s), soak_ok,
                        fmt::format("stage {}: open for {} s of {} s", k + 1, soaked, stage.min_soak_s)});
  const double frac = t.actions == 0 ? 0 : double(t.succeeded) / t.actions;
  const bool frac_ok = t.actions > 0 && frac >= stage.success_fraction;
  ev.push_back(Evidence{
      "success_fraction", fmt::format("stage {}", k + 1), st.stage_started_at, in.now, t.succeeded, t.failed,
      t.actions, frac, stage.success_fraction, frac_ok,
      t.actions == 0 ? fmt::format("stage {}: no device of the stage has been seen yet", k + 1)
                     : fmt::format("stage {}: {} of {} seen devices succeeded ({:.1f} %, need {:.1f} %)",
                                   k + 1, t.succeeded, t.actions, frac * 100, stage.success_fraction * 100)});
  const bool last = k + 1 >= spec.stages.size();
  if (!last) {
    if (soak_ok && frac_ok) {
      RolloutStatus after = st;
      after.stage = k + 1;
      after.stage_started_at = in.now;
      return make(DecisionKind::promoted, after, "policy", k, in.now,
                  fmt::format("stage {} done: stage {} opens", k + 1, k + 2), std::move(ev));
    }
    return make(DecisionKind::none, st, "policy", k, in.now, fmt::format("stage {} is running", k + 1),
                std::move(ev));
  }
  uint32_t open = 0, total = 0;
  for (const StageTally& s : in.stages) {
    open += s.in_progress;
    total += s.actions;
  }
  const bool all_done = total > 0 && open == 0;
  ev.push_back(Evidence{"all_terminal", "rollout", 0, in.now, 0, 0, total, double(open), 0, all_done,
                        fmt::format("rollout: {} of {} actions still under way", open, total)});
  // An empty last stage (every device fell into earlier ones) does not block completion.
  if (soak_ok && (frac_ok || t.actions == 0) && all_done) {
    RolloutStatus after = st;
    after.state = RolloutState::completed;
    return make(DecisionKind::completed, after, "policy", k, in.now, "every stage is done", std::move(ev));
  }
  return make(DecisionKind::none, st, "policy", k, in.now,
              fmt::format("stage {} (the last) is running", k + 1), std::move(ev));
}

Result<Decision> apply_command(const RolloutSpec& spec, const RolloutStatus& st, Command cmd,
                               std::string_view actor, int64_t now) {
  auto refuse = [&](std::string_view what) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("cannot {} a rollout that is {}", what, to_string(st.state)));
  };
  const bool paused = st.state == RolloutState::paused_manual || st.state == RolloutState::paused_auto;
  const bool final = st.state == RolloutState::aborted || st.state == RolloutState::completed;
  RolloutStatus after = st;
  std::string who(actor);
  switch (cmd) {
    case Command::pause:
      if (st.state != RolloutState::running) return refuse("pause");
      after.state = RolloutState::paused_manual;
      return make(DecisionKind::paused, after, who, st.stage, now, "paused by the operator");
    case Command::resume:
      if (!paused) return refuse("resume");
      after.state = RolloutState::running;
      // The clock counts whole seconds: outcomes stamped with the resume's own second are the ones the
      // operator saw when resuming, so counting starts with the next second.
      after.counted_since = now + 1;
      return make(
          DecisionKind::resumed, after, who, st.stage, now,
          fmt::format("resumed from {}; auto-pause counts outcomes from now on", to_string(st.state)));
    case Command::abort:
      if (final) return refuse("abort");
      after.state = RolloutState::aborted;
      return make(DecisionKind::aborted, after, who, st.stage, now, "aborted by the operator");
    case Command::promote:
      if (final) return refuse("promote");
      if (st.stage + 1 >= spec.stages.size())
        return Error(ErrorCode::invalid_argument,
                     fmt::format("cannot promote: stage {} is the last", st.stage + 1));
      after.stage = st.stage + 1;
      after.stage_started_at = now;
      return make(DecisionKind::promoted, after, who, st.stage, now,
                  fmt::format("stage {} opened by the operator", st.stage + 2));
  }
  return Error(ErrorCode::internal, "unknown command");
}

Resolution resolve(const std::vector<Candidate>& candidates) {
  std::vector<const Candidate*> active;
  for (const Candidate& c : candidates)
    if (c.state == RolloutState::running || c.state == RolloutState::paused_manual ||
        c.state == RolloutState::paused_auto)
      active.push_back(&c);
  std::sort(active.begin(), active.end(),
            [](const Candidate* a, const Candidate* b) { return a->created_seq > b->created_seq; });
  Resolution r;
  if (active.empty()) {
    r.why = "no running or paused rollout targets the device";
    return r;
  }
  const Candidate* answer = active.front();
  r.why = fmt::format("rollout {} is the newest that targets the device", answer->rollout_id);
  for (const Candidate* c : active) {
    auto s = c->action ? std::optional(c->action->state) : std::nullopt;
    if (s && (is_in_flight(*s) || *s == ActionState::installed)) {
      if (c != answer)
        r.why =
            fmt::format("rollout {} keeps the device until its attempt ends ({}), then rollout {} takes over",
                        c->rollout_id, to_string(*s), answer->rollout_id);
      answer = c;
      break;
    }
  }
  r.rollout_id = answer->rollout_id;
  for (const Candidate* c : active)
    if (c != answer && c->created_seq < active.front()->created_seq && c->action &&
        c->action->state == ActionState::retry_wait)
      r.cancel.push_back(c->rollout_id);
  return r;
}

std::vector<RollbackTarget> plan_rollback(const std::vector<DeviceAction>& actions) {
  std::vector<RollbackTarget> out;
  for (const DeviceAction& a : actions)
    if ((a.state == ActionState::succeeded || a.state == ActionState::installed) && !a.from_version.empty())
      out.push_back(RollbackTarget{a.device_id, a.from_version});
  return out;
}

}  // namespace ota32::rollout
