// One test (or more) per rule of the rollout policy (src/rollout/rollout.h, spec/rollouts.md §6).
#include <gtest/gtest.h>

#include <map>

#include "core/splitmix.h"
#include "rollout/rollout.h"

namespace ota32::rollout {
namespace {

RolloutSpec spec3() {
  RolloutSpec s;
  s.id = "r1";
  s.target_version = "2.0.0";
  s.stages = {Stage{100, 3600, 0.9, std::nullopt}, Stage{1000, 600, 0.9, std::nullopt},
              Stage{10000, 0, 0.9, std::nullopt}};
  return s;
}

RolloutStatus running(uint32_t stage = 0, int64_t started = 1000) {
  return RolloutStatus{RolloutState::running, stage, started, started};
}

DeviceAction action(std::string id, ActionState st, uint32_t attempts = 1, int64_t offered = 1000) {
  DeviceAction a;
  a.device_id = std::move(id);
  a.state = st;
  a.attempts = attempts;
  a.offered_at = offered;
  a.updated_at = offered;
  a.from_version = "1.0.0";
  return a;
}

// A device id whose bucket in rollout `r` falls into stage `want` of `stages`.
std::string device_in_stage(const RolloutSpec& s, uint32_t want) {
  for (int i = 0; i < 100000; ++i) {
    std::string id = "dev-" + std::to_string(i);
    if (stage_of_bucket(s.stages, bucket(s.id, id)) == want) return id;
  }
  ADD_FAILURE() << "no device found for stage " << want;
  return "";
}

PollInput poll(const RolloutSpec& s, std::string device, RolloutStatus st, int64_t now = 2000) {
  PollInput in;
  in.spec = &s;
  in.status = st;
  in.device_id = std::move(device);
  in.running_version = "1.0.0";
  in.now = now;
  return in;
}

// ---- placement ----

TEST(Placement, BucketMatchesGoldenVectors) {
  // uint32_be(SHA-256(rollout || 0x00 || device)[0..4]) % 10000, computed independently (Python hashlib).
  EXPECT_EQ(bucket("r1", "dev-1"), 3342u);
  EXPECT_EQ(bucket("r1", "dev-2"), 6190u);
  EXPECT_EQ(bucket("canary-2026", "24:0a:c4:12:34:56"), 5908u);
  EXPECT_EQ(bucket("", ""), 4604u);
  EXPECT_EQ(bucket("r2", "dev-1"), 1435u);  // another rollout reshuffles the fleet
}

TEST(Placement, RaisingAStagePercentageNeverMovesADeviceToALaterStage) {
  std::vector<Stage> small{Stage{100}, Stage{1000}, Stage{10000}};
  std::vector<Stage> big{Stage{500}, Stage{2000}, Stage{10000}};
  for (int i = 0; i < 5000; ++i) {
    uint32_t b = bucket("r1", "dev-" + std::to_string(i));
    ASSERT_LT(b, kBucketCount);
    EXPECT_LE(stage_of_bucket(big, b), stage_of_bucket(small, b)) << "dev-" << i;
  }
}

TEST(Placement, StagesGetTheirShareOfTheFleet) {
  std::vector<Stage> st{Stage{1000}, Stage{5000}, Stage{10000}};
  std::map<uint32_t, int> n;
  for (int i = 0; i < 10000; ++i) ++n[stage_of_bucket(st, bucket("fleet", "dev-" + std::to_string(i)))];
  // 10 %, 40 %, 50 % of 10 000, within 4 standard deviations.
  EXPECT_NEAR(n[0], 1000, 120);
  EXPECT_NEAR(n[1], 4000, 200);
  EXPECT_NEAR(n[2], 5000, 200);
}

TEST(Placement, CheckSpecNamesTheBadField) {
  auto s = spec3();
  EXPECT_TRUE(check_spec(s));
  s.stages[1].cumulative_bp = 100;
  auto e = check_spec(s);
  ASSERT_FALSE(e);
  EXPECT_NE(e.error().message().find("stages[1].percent"), std::string::npos) << e.error().message();
  s = spec3();
  s.stages.back().cumulative_bp = 9000;
  EXPECT_NE(check_spec(s).error().message().find("must be 100"), std::string::npos);
  s = spec3();
  s.stages.clear();
  EXPECT_FALSE(check_spec(s));
  s = spec3();
  s.policy.max_in_flight = 0;
  EXPECT_NE(check_spec(s).error().message().find("max_in_flight"), std::string::npos);
  s = spec3();
  s.policy.max_failure_rate = 1.5;
  EXPECT_FALSE(check_spec(s));
}

// ---- update checks ----

TEST(Poll, DeviceOfTheOpenStageGetsAnOfferRecordingWhatItRan) {
  auto s = spec3();
  auto d = decide_poll(poll(s, device_in_stage(s, 0), running()));
  EXPECT_EQ(d.kind, OfferKind::offer);
  ASSERT_TRUE(d.change.action);
  EXPECT_EQ(d.change.action->state, ActionState::offered);
  EXPECT_EQ(d.change.action->attempts, 1u);
  EXPECT_EQ(d.change.action->offered_at, 2000);
  EXPECT_EQ(d.change.action->from_version, "1.0.0");
  EXPECT_EQ(d.change.action->stage, 0u);
}

TEST(Poll, DeviceOfALaterStageWaits) {
  auto s = spec3();
  auto d = decide_poll(poll(s, device_in_stage(s, 2), running(1)));
  EXPECT_EQ(d.kind, OfferKind::not_in_stage);
  EXPECT_EQ(d.stage, 2u);
  EXPECT_FALSE(d.change.action);
  EXPECT_EQ(d.change.why, "device is in stage 3, stage 2 is open");
  // Once its stage opens, it is offered.
  EXPECT_EQ(decide_poll(poll(s, device_in_stage(s, 2), running(2))).kind, OfferKind::offer);
}

TEST(Poll, CapOnDevicesUpdatingAtOnce) {
  auto s = spec3();
  s.policy.max_in_flight = 3;
  auto in = poll(s, device_in_stage(s, 0), running());
  in.in_flight = 2;
  EXPECT_EQ(decide_poll(in).kind, OfferKind::offer);
  in.in_flight = 3;
  auto d = decide_poll(in);
  EXPECT_EQ(d.kind, OfferKind::at_capacity);
  EXPECT_EQ(d.change.why, "3 of 3 devices are updating");
  // A device already holding an offer keeps it (it does not count twice against the cap).
  in.action = action(in.device_id, ActionState::downloading);
  EXPECT_EQ(decide_poll(in).kind, OfferKind::offer);
  EXPECT_FALSE(decide_poll(in).change.action);
}

TEST(Poll, StageMaxDevices) {
  auto s = spec3();
  s.stages[0].max_devices = 2;
  auto in = poll(s, device_in_stage(s, 0), running());
  in.stage_actions = 2;
  EXPECT_EQ(decide_poll(in).kind, OfferKind::stage_full);
  in.stage_actions = 1;
  EXPECT_EQ(decide_poll(in).kind, OfferKind::offer);
}

TEST(Poll, PausedRolloutOffersNothingNewButKeepsRunningDownloads) {
  auto s = spec3();
  auto st = running();
  st.state = RolloutState::paused_auto;
  auto in = poll(s, device_in_stage(s, 0), st);
  EXPECT_EQ(decide_poll(in).kind, OfferKind::not_running);
  in.action = action(in.device_id, ActionState::downloading);
  EXPECT_EQ(decide_poll(in).kind, OfferKind::offer);
  in.status.state = RolloutState::aborted;
  EXPECT_EQ(decide_poll(in).kind, OfferKind::not_running);
}

TEST(Poll, DeviceAlreadyOnTheTargetGetsNoAction) {
  auto s = spec3();
  auto in = poll(s, device_in_stage(s, 0), running());
  in.running_version = "2.0.0";
  auto d = decide_poll(in);
  EXPECT_EQ(d.kind, OfferKind::already_current);
  EXPECT_FALSE(d.change.action);
  EXPECT_FALSE(d.change.outcome);
}

TEST(Poll, SuccessOnlyWhenTheDevicePollsRunningTheNewImageAfterInstalling) {
  auto s = spec3();
  auto in = poll(s, "d", running(), 5000);
  in.action = action("d", ActionState::installed);
  in.running_version = "2.0.0";
  auto d = decide_poll(in);
  ASSERT_TRUE(d.change.outcome);
  EXPECT_TRUE(d.change.outcome->success);
  EXPECT_EQ(d.change.action->state, ActionState::succeeded);
  // Polling with the old image after installing = it rolled back: a failure, not retried.
  in.running_version = "1.0.0";
  d = decide_poll(in);
  ASSERT_TRUE(d.change.outcome);
  EXPECT_FALSE(d.change.outcome->success);
  EXPECT_EQ(d.change.outcome->reason, FailureReason::rolled_back);
  EXPECT_EQ(d.change.action->state, ActionState::failed);
}

TEST(Poll, RetryWaitsForItsBackoffAndTheCap) {
  auto s = spec3();
  auto in = poll(s, "d", running(), 1500);
  in.action = action("d", ActionState::retry_wait);
  in.action->retry_at = 1600;
  EXPECT_EQ(decide_poll(in).kind, OfferKind::backing_off);
  in.now = 1600;
  in.in_flight = s.policy.max_in_flight;
  EXPECT_EQ(decide_poll(in).kind, OfferKind::at_capacity);
  in.in_flight = 0;
  auto d = decide_poll(in);
  EXPECT_EQ(d.kind, OfferKind::offer);
  EXPECT_EQ(d.change.action->attempts, 2u);
  EXPECT_EQ(d.change.action->offered_at, 1600);
  EXPECT_EQ(d.change.action->state, ActionState::offered);
}

TEST(Poll, FinishedActionsGetNothing) {
  auto s = spec3();
  auto in = poll(s, "d", running());
  for (auto st : {ActionState::succeeded, ActionState::failed, ActionState::canceled}) {
    in.action = action("d", st);
    EXPECT_EQ(decide_poll(in).kind, OfferKind::finished);
  }
}

// ---- reports ----

TEST(Report, DownloadingThenInstalledThenConfirmedBoot) {
  auto s = spec3();
  auto a = action("d", ActionState::offered);
  auto c = apply_report(s, a, ReportKind::downloading, "1.0.0", FailureReason::none, 1100);
  ASSERT_TRUE(c.action);
  EXPECT_EQ(c.action->state, ActionState::downloading);
  c = apply_report(s, *c.action, ReportKind::installed, "1.0.0", FailureReason::none, 1200);
  EXPECT_EQ(c.action->state, ActionState::installed);
  EXPECT_FALSE(c.outcome);  // installing is not success
  c = apply_report(s, *c.action, ReportKind::booted, "2.0.0", FailureReason::none, 1300);
  EXPECT_EQ(c.action->state, ActionState::succeeded);
  ASSERT_TRUE(c.outcome);
  EXPECT_TRUE(c.outcome->success);
  EXPECT_EQ(c.outcome->at, 1300);
}

TEST(Report, RollbackIsAFailureAndNotRetried) {
  auto s = spec3();
  auto a = action("d", ActionState::installed);
  for (auto c : {apply_report(s, a, ReportKind::rolled_back, "1.0.0", FailureReason::none, 1300),
                 apply_report(s, a, ReportKind::booted, "1.0.0", FailureReason::none, 1300)}) {
    ASSERT_TRUE(c.outcome);
    EXPECT_FALSE(c.outcome->success);
    EXPECT_EQ(c.outcome->reason, FailureReason::rolled_back);
    EXPECT_EQ(c.action->state, ActionState::failed);
  }
  // A boot of the old image before anything was installed is just a boot.
  auto c = apply_report(s, action("d", ActionState::offered), ReportKind::booted, "1.0.0",
                        FailureReason::none, 1300);
  EXPECT_FALSE(c.outcome);
  EXPECT_FALSE(c.action);
}

TEST(Report, PerDeviceRetryLimitWithExponentialBackoff) {
  auto s = spec3();
  s.policy.retries = 2;
  s.policy.retry_backoff_s = 300;
  auto a = action("d", ActionState::downloading, 1);
  auto c = apply_report(s, a, ReportKind::failed, "1.0.0", FailureReason::none, 2000);
  EXPECT_EQ(c.outcome->reason, FailureReason::download_failed);
  EXPECT_EQ(c.action->state, ActionState::retry_wait);
  EXPECT_EQ(c.action->retry_at, 2300);
  a.attempts = 2;
  c = apply_report(s, a, ReportKind::failed, "1.0.0", FailureReason::none, 2000);
  EXPECT_EQ(c.action->retry_at, 2600);
  a.attempts = 3;  // the third attempt was the last (1 + 2 retries)
  c = apply_report(s, a, ReportKind::failed, "1.0.0", FailureReason::none, 2000);
  EXPECT_EQ(c.action->state, ActionState::failed);
  EXPECT_NE(c.why.find("no retries left"), std::string::npos) << c.why;
}

TEST(Report, ImageFaultsAreNotRetried) {
  auto s = spec3();
  auto c = apply_report(s, action("d", ActionState::downloading), ReportKind::failed, "1.0.0",
                        FailureReason::verify_failed, 2000);
  EXPECT_EQ(c.action->state, ActionState::failed);
  EXPECT_EQ(c.outcome->reason, FailureReason::verify_failed);
  c = apply_report(s, action("d", ActionState::installed), ReportKind::failed, "1.0.0", FailureReason::none,
                   2000);
  EXPECT_EQ(c.outcome->reason, FailureReason::install_failed);
}

TEST(Report, FinishedActionsIgnoreLateReports) {
  auto s = spec3();
  for (auto st :
       {ActionState::succeeded, ActionState::failed, ActionState::canceled, ActionState::retry_wait}) {
    auto c = apply_report(s, action("d", st), ReportKind::rolled_back, "1.0.0", FailureReason::none, 3000);
    EXPECT_FALSE(c.action);
    EXPECT_FALSE(c.outcome);
  }
}

// ---- timeouts ----

TEST(Timeout, OfferNotInstalledInTimeFails) {
  auto s = spec3();
  s.policy.action_timeout_s = 100;
  auto a = action("d", ActionState::downloading, 1, 1000);
  EXPECT_FALSE(expire_action(s.policy, a, 1099).action);
  auto c = expire_action(s.policy, a, 1100);
  ASSERT_TRUE(c.outcome);
  EXPECT_EQ(c.outcome->reason, FailureReason::timeout);
  EXPECT_EQ(c.action->state, ActionState::retry_wait);  // a timeout is retried
}

TEST(Timeout, InstalledButNeverConfirmedFails) {
  auto s = spec3();
  s.policy.confirm_timeout_s = 60;
  s.policy.retries = 0;
  auto a = action("d", ActionState::installed, 1, 1000);
  a.updated_at = 5000;
  EXPECT_FALSE(expire_action(s.policy, a, 5059).outcome);
  auto c = expire_action(s.policy, a, 5060);
  EXPECT_EQ(c.outcome->reason, FailureReason::timeout);
  EXPECT_EQ(c.action->state, ActionState::failed);
  EXPECT_FALSE(expire_action(s.policy, action("d", ActionState::succeeded, 1, 0), 999999).action);
}

// ---- auto-pause ----

struct Eval {
  RolloutSpec spec = spec3();
  RolloutStatus status = running(0, 1000);
  std::vector<Outcome> log;
  std::vector<StageTally> stages{3};
  Decision run(int64_t now = 2000) {
    EvaluationInput in{&spec, status, &log, stages, now};
    return evaluate(in);
  }
  void add(int n, bool success, uint32_t stage = 0, int64_t at = 1500,
           FailureReason r = FailureReason::rolled_back) {
    for (int i = 0; i < n; ++i)
      log.push_back(
          Outcome{"s" + std::to_string(stage) + (success ? "ok" : "bad") + std::to_string(log.size()), stage,
                  at, success, success ? FailureReason::none : r});
  }
};

const Evidence* find(const Decision& d, std::string_view rule, std::string_view scope_prefix) {
  for (const auto& e : d.evidence)
    if (e.rule == rule && e.scope.starts_with(scope_prefix)) return &e;
  return nullptr;
}

TEST(AutoPause, AbsoluteFailureCountFiresAtExactlyTheLimit) {
  Eval e;
  e.spec.policy.max_failures = 5;
  e.spec.policy.min_samples = 1000;
  e.add(4, false);
  EXPECT_EQ(e.run().kind, DecisionKind::none);
  e.add(1, false);
  auto d = e.run();
  EXPECT_EQ(d.kind, DecisionKind::paused_auto);
  EXPECT_EQ(d.status.state, RolloutState::paused_auto);
  const Evidence* ev = find(d, "max_failures", "stage 1");
  ASSERT_TRUE(ev);
  EXPECT_TRUE(ev->fired);
  EXPECT_EQ(ev->failed, 5u);
  EXPECT_EQ(ev->reported, 5u);
  EXPECT_EQ(ev->from, 1000);
  EXPECT_EQ(ev->to, 2000);
  EXPECT_EQ(d.summary, "paused by rule max_failures: stage 1: 5 failed of 5 reported (pause at 5 failures)");
}

TEST(AutoPause, FailureRateAmongReportedDevicesAfterAMinimumSample) {
  Eval e;
  e.spec.policy.max_failures = 0;
  e.spec.policy.min_samples = 20;
  e.spec.policy.max_failure_rate = 0.05;
  e.add(17, true);
  e.add(2, false);  // 2 of 19: above 5 %, but below the minimum sample
  auto d = e.run();
  EXPECT_EQ(d.kind, DecisionKind::none);
  EXPECT_FALSE(find(d, "failure_rate", "stage")->fired);
  e.add(1, true);  // 2 of 20 = 10 % > 5 %
  d = e.run();
  EXPECT_EQ(d.kind, DecisionKind::paused_auto);
  const Evidence* ev = find(d, "failure_rate", "stage 1");
  EXPECT_EQ(ev->reported, 20u);
  EXPECT_EQ(ev->failed, 2u);
  EXPECT_DOUBLE_EQ(ev->value, 0.1);
  EXPECT_DOUBLE_EQ(ev->threshold, 0.05);
}

TEST(AutoPause, RateAtExactlyTheLimitDoesNotFire) {
  Eval e;
  e.spec.policy.max_failures = 0;
  e.add(19, true);
  e.add(1, false);  // 5 % is not above 5 %
  EXPECT_EQ(e.run().kind, DecisionKind::none);
}

TEST(AutoPause, DenominatorIsReportedDevicesNotTheStageSize) {
  Eval e;
  e.spec.policy.max_failures = 0;
  e.stages[0].actions = 1000;  // hawkBit would divide by this
  e.add(14, true);
  e.add(6, false);
  auto d = e.run();
  EXPECT_EQ(d.kind, DecisionKind::paused_auto);
  EXPECT_DOUBLE_EQ(find(d, "failure_rate", "stage 1")->value, 0.3);
}

TEST(AutoPause, EachDeviceCountsOnceByItsLatestOutcome) {
  Eval e;
  e.spec.policy.max_failures = 2;
  e.log.push_back(Outcome{"a", 0, 1100, false, FailureReason::download_failed});
  e.log.push_back(Outcome{"a", 0, 1200, false, FailureReason::download_failed});
  EXPECT_EQ(e.run().kind, DecisionKind::none);  // one device, two failed attempts: 1 failure
  e.log.push_back(Outcome{"a", 0, 1300, true, FailureReason::none});
  auto d = e.run();
  EXPECT_EQ(find(d, "max_failures", "stage")->failed, 0u);
  EXPECT_EQ(find(d, "max_failures", "stage")->succeeded, 1u);
}

TEST(AutoPause, SlidingWindowCatchesFailuresAfterPromotion) {
  Eval e;
  e.spec.policy.max_failures = 3;
  e.spec.policy.window_s = 600;
  e.status = running(1, 1000);  // stage 2 open; stage 1's devices keep failing
  e.add(3, false, 0, 1800);
  auto d = e.run(2000);
  EXPECT_EQ(d.kind, DecisionKind::paused_auto);
  EXPECT_FALSE(find(d, "max_failures", "stage")->fired);
  const Evidence* w = find(d, "max_failures", "window");
  EXPECT_TRUE(w->fired);
  EXPECT_EQ(w->scope, "window 600 s");
  EXPECT_EQ(w->from, 1400);
  // Outside the window they no longer count.
  EXPECT_EQ(e.run(2401).kind, DecisionKind::none);
}

TEST(AutoPause, WilsonBoundFiresEarlyWithStrongEvidence) {
  Eval e;
  e.spec.policy.max_failures = 0;
  e.spec.policy.min_samples = 1000;  // the plain rate rule cannot fire
  e.spec.policy.wilson_rule = true;
  e.add(18, true);
  e.add(2, false);  // lower bound 2.8 %
  EXPECT_EQ(e.run().kind, DecisionKind::none);
  e.log.clear();
  e.add(17, true);
  e.add(3, false);  // 3 of 20: lower bound 5.2 % > 5 %
  auto d = e.run();
  EXPECT_EQ(d.kind, DecisionKind::paused_auto);
  EXPECT_NEAR(find(d, "wilson", "stage")->value, 0.05237, 1e-4);
}

TEST(AutoPause, ZeroToleranceReason) {
  Eval e;
  e.spec.policy.max_failures = 0;
  e.spec.policy.zero_tolerance = {FailureReason::verify_failed};
  e.add(1, false, 0, 1500, FailureReason::download_failed);
  EXPECT_EQ(e.run().kind, DecisionKind::none);
  e.add(1, false, 0, 1500, FailureReason::verify_failed);
  auto d = e.run();
  EXPECT_EQ(d.kind, DecisionKind::paused_auto);
  EXPECT_EQ(find(d, "zero_tolerance", "stage")->value, 1);
}

TEST(AutoPause, MatchesABruteForceCountOverRandomOutcomeSequences) {
  SplitMix64 rng(42);
  for (int round = 0; round < 300; ++round) {
    Eval e;
    e.spec.policy.max_failures = 1 + static_cast<uint32_t>(rng.next() % 8);
    e.spec.policy.min_samples = static_cast<uint32_t>(rng.next() % 30);
    e.spec.policy.max_failure_rate = (rng.next() % 40) / 100.0;
    e.spec.policy.window_s = 1000000;
    int devices = 1 + static_cast<int>(rng.next() % 40);
    std::map<std::string, bool> latest;
    for (int i = 0, n = static_cast<int>(rng.next() % 80); i < n; ++i) {
      std::string id = "d" + std::to_string(rng.next() % devices);
      bool ok = rng.next() % 3 != 0;
      e.log.push_back(Outcome{id, 0, 1001 + i, ok, ok ? FailureReason::none : FailureReason::rolled_back});
      latest[id] = ok;
    }
    uint32_t f = 0, n = 0;
    for (auto& [id, ok] : latest) {
      ++n;
      if (!ok) ++f;
    }
    const auto& p = e.spec.policy;
    bool expect = f >= p.max_failures || (n > 0 && n >= p.min_samples && double(f) / n > p.max_failure_rate);
    EXPECT_EQ(e.run(5000).kind == DecisionKind::paused_auto, expect)
        << "round " << round << ": " << f << "/" << n;
  }
}

TEST(AutoPause, APausedRolloutIsNotEvaluatedAndResumeCountsAfresh) {
  Eval e;
  e.spec.policy.max_failures = 2;
  e.add(2, false, 0, 1500);
  auto d = e.run(2000);
  ASSERT_EQ(d.kind, DecisionKind::paused_auto);
  e.status = d.status;
  EXPECT_EQ(e.run(2001).kind, DecisionKind::none);  // idempotent: already paused
  auto r = apply_command(e.spec, e.status, Command::resume, "admin", 3000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status.counted_since, 3001);
  e.status = r->status;
  e.add(2, false, 0, 3000);                         // stamped with the resume's own second
  EXPECT_EQ(e.run(3000).kind, DecisionKind::none);  // seen by the operator: not counted again
  EXPECT_EQ(e.run(3100).kind, DecisionKind::none);  // the two old failures are not counted twice
  e.add(2, false, 0, 3050);
  EXPECT_EQ(e.run(3100).kind, DecisionKind::paused_auto);
}

// ---- promotion and completion ----

TEST(Promotion, NeedsTheSoakTimeAndTheSuccessFraction) {
  Eval e;  // stage 1: soak 3600 s, 90 %
  e.stages[0] = StageTally{10, 9, 0, 1};
  auto d = e.run(1000 + 3599);
  EXPECT_EQ(d.kind, DecisionKind::none);
  EXPECT_FALSE(find(d, "soak", "stage 1")->fired);
  EXPECT_TRUE(find(d, "success_fraction", "stage 1")->fired);
  e.stages[0] = StageTally{10, 8, 0, 2};
  d = e.run(1000 + 3600);
  EXPECT_EQ(d.kind, DecisionKind::none);
  EXPECT_TRUE(find(d, "soak", "stage 1")->fired);
  EXPECT_EQ(find(d, "success_fraction", "stage 1")->text,
            "stage 1: 8 of 10 seen devices succeeded (80.0 %, need 90.0 %)");
  e.stages[0] = StageTally{10, 9, 0, 1};
  d = e.run(1000 + 3600);
  EXPECT_EQ(d.kind, DecisionKind::promoted);
  EXPECT_EQ(d.status.stage, 1u);
  EXPECT_EQ(d.status.stage_started_at, 4600);
  EXPECT_EQ(d.status.state, RolloutState::running);
}

TEST(Promotion, AStageNobodyHasPolledDoesNotPromote) {
  Eval e;
  auto d = e.run(100000);
  EXPECT_EQ(d.kind, DecisionKind::none);
  EXPECT_EQ(find(d, "success_fraction", "stage 1")->text,
            "stage 1: no device of the stage has been seen yet");
}

TEST(Promotion, AFiringRuleWinsOverPromotion) {
  Eval e;
  e.stages[0] = StageTally{10, 10, 0, 0};
  e.add(5, false, 0, 1500);
  EXPECT_EQ(e.run(100000).kind, DecisionKind::paused_auto);
}

TEST(Completion, AfterTheLastStageWhenEveryActionIsTerminal) {
  Eval e;
  e.status = running(2, 1000);
  e.stages = {StageTally{1, 1, 0, 0}, StageTally{10, 10, 0, 0}, StageTally{90, 89, 0, 1}};
  EXPECT_EQ(e.run().kind, DecisionKind::none);
  e.stages[2] = StageTally{90, 89, 1, 0};
  auto d = e.run();
  EXPECT_EQ(d.kind, DecisionKind::completed);
  EXPECT_EQ(d.status.state, RolloutState::completed);
  // An empty last stage does not block.
  e.stages[2] = StageTally{};
  EXPECT_EQ(e.run().kind, DecisionKind::completed);
  e.stages[1].in_progress = 1;
  EXPECT_EQ(e.run().kind, DecisionKind::none);
}

// ---- operator commands ----

TEST(Commands, PauseResumeAbortPromote) {
  auto s = spec3();
  auto st = running(0, 1000);
  auto p = apply_command(s, st, Command::pause, "alice", 1500);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->kind, DecisionKind::paused);
  EXPECT_EQ(p->actor, "alice");
  EXPECT_EQ(p->status.state, RolloutState::paused_manual);
  EXPECT_FALSE(apply_command(s, p->status, Command::pause, "alice", 1501));
  auto r = apply_command(s, p->status, Command::resume, "alice", 1600);
  EXPECT_EQ(r->status.state, RolloutState::running);
  EXPECT_FALSE(apply_command(s, r->status, Command::resume, "alice", 1601));
  auto pr = apply_command(s, r->status, Command::promote, "alice", 1700);
  EXPECT_EQ(pr->status.stage, 1u);
  EXPECT_EQ(pr->status.stage_started_at, 1700);
  auto pr2 = apply_command(s, pr->status, Command::promote, "alice", 1800);
  auto last = apply_command(s, pr2->status, Command::promote, "alice", 1900);
  ASSERT_FALSE(last);
  EXPECT_EQ(last.error().message(), "cannot promote: stage 3 is the last");
  auto a = apply_command(s, pr2->status, Command::abort, "alice", 2000);
  EXPECT_EQ(a->status.state, RolloutState::aborted);
  auto again = apply_command(s, a->status, Command::resume, "alice", 2001);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().message(), "cannot resume a rollout that is aborted");
  EXPECT_FALSE(apply_command(s, a->status, Command::abort, "alice", 2002));
}

// ---- superseding ----

TEST(Supersede, NewestRolloutAnswersAndOlderRetriesAreCanceled) {
  std::vector<Candidate> c{{"old", 1, RolloutState::running, action("d", ActionState::retry_wait)},
                           {"new", 2, RolloutState::running, std::nullopt}};
  auto r = resolve(c);
  EXPECT_EQ(r.rollout_id, "new");
  EXPECT_EQ(r.cancel, std::vector<std::string>{"old"});
}

TEST(Supersede, AnAttemptUnderWayIsLeftToFinish) {
  for (auto st : {ActionState::offered, ActionState::downloading, ActionState::installed}) {
    std::vector<Candidate> c{{"old", 1, RolloutState::paused_auto, action("d", st)},
                             {"new", 2, RolloutState::running, std::nullopt}};
    auto r = resolve(c);
    EXPECT_EQ(r.rollout_id, "old");
    EXPECT_TRUE(r.cancel.empty());
  }
}

TEST(Supersede, FinishedRolloutsDoNotCount) {
  std::vector<Candidate> c{{"new", 3, RolloutState::aborted, std::nullopt},
                           {"mid", 2, RolloutState::running, action("d", ActionState::succeeded)},
                           {"old", 1, RolloutState::completed, std::nullopt}};
  EXPECT_EQ(resolve(c).rollout_id, "mid");
  EXPECT_FALSE(resolve({}).rollout_id);
}

TEST(Rollback, TakesBackDevicesThatInstalledOrConfirmed) {
  std::vector<DeviceAction> a{action("a", ActionState::succeeded), action("b", ActionState::installed),
                              action("c", ActionState::failed), action("d", ActionState::downloading)};
  auto plan = plan_rollback(a);
  ASSERT_EQ(plan.size(), 2u);
  EXPECT_EQ(plan[0].device_id, "a");
  EXPECT_EQ(plan[0].version, "1.0.0");
  EXPECT_EQ(plan[1].device_id, "b");
}

TEST(Tally, CountsPerStageWithoutCanceledActions) {
  auto a = action("a", ActionState::succeeded);
  auto b = action("b", ActionState::retry_wait);
  b.stage = 1;
  auto c = action("c", ActionState::canceled);
  auto t = tally({a, b, c}, 2);
  EXPECT_EQ(t[0].actions, 1u);
  EXPECT_EQ(t[0].succeeded, 1u);
  EXPECT_EQ(t[1].in_progress, 1u);
}

TEST(Names, RoundTrip) {
  for (auto s : {ActionState::offered, ActionState::retry_wait, ActionState::canceled})
    EXPECT_EQ(action_state_from_string(to_string(s)).value(), s);
  for (auto s : {RolloutState::running, RolloutState::paused_auto, RolloutState::completed})
    EXPECT_EQ(rollout_state_from_string(to_string(s)).value(), s);
  EXPECT_EQ(failure_reason_from_string("rolled_back").value(), FailureReason::rolled_back);
  auto bad = command_from_string("stop");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "command: 'stop' is not one of pause, resume, abort, promote");
}

}  // namespace
}  // namespace ota32::rollout
