// Groups, device tags and staged rollouts through the real Router, without sockets, on a SQLite store in a
// temp dir, with an injected clock: placement, the cap, reports driving outcomes, auto-pause with its
// evidence, promotion after soak by the timer's sweep, timeouts, superseding, and a reopened store (a
// server restart) that keeps every counter.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include "core/bytes.h"
#include "format/chip.h"
#include "format/image_make.h"
#include "rollout/rollout.h"
#include "server/api.h"
#include "server/group_filter.h"
#include "test_support.h"

namespace ota32::server {
namespace {

using json = nlohmann::json;
using ::testing::HasSubstr;

class RolloutApiTest : public ::testing::Test {
 protected:
  void SetUp() override { open(); }

  void open() {
    router_ = Router();
    api_.reset();
    ApiConfig cfg;
    cfg.data_dir = tmp_ / "data";
    cfg.device_rate = 0;
    auto setup = open_api(cfg);
    ASSERT_TRUE(setup) << setup.error().message();
    if (setup->new_admin_token) token_ = *setup->new_admin_token;
    api_ = std::move(setup->context);
    api_->clock = [this] { return now_; };
    register_api_routes(router_, *api_);
  }

  HttpResponse call(http::verb method, const std::string& target, const json& body = nullptr,
                    bool admin = true) {
    HttpRequest req{method, target, 11};
    req.set(http::field::host, "10.0.0.36:8070");
    if (admin) req.set(http::field::authorization, "Bearer " + token_);
    if (!body.is_null()) req.body() = body.dump();
    req.prepare_payload();
    RequestContext ctx;
    ctx.remote_address = "127.0.0.1";
    auto r = router_.route(req, ctx);
    EXPECT_TRUE(std::holds_alternative<HttpResponse>(r));
    return std::holds_alternative<HttpResponse>(r) ? std::get<HttpResponse>(r) : HttpResponse{};
  }
  static json body_of(const HttpResponse& r) { return json::parse(r.body(), nullptr, false); }

  std::string upload(const std::string& version) {
    MakeImageOptions opt;
    opt.chip = find_chip("esp32");
    opt.project = "app";
    opt.version = version;
    opt.size = 128 * 1024;
    auto img = make_app_image(opt);
    EXPECT_TRUE(img);
    HttpRequest req{http::verb::post, "/api/v1/firmware", 11};
    req.set(http::field::host, "10.0.0.36:8070");
    req.set(http::field::authorization, "Bearer " + token_);
    req.body() = std::string(as_chars(*img));
    req.prepare_payload();
    auto r = std::get<HttpResponse>(router_.route(req, RequestContext{}));
    EXPECT_EQ(r.result(), http::status::created) << r.body();
    return body_of(r)["sha256"];
  }
  void add_devices(int n, const std::string& prefix = "dev-") {
    for (int i = 0; i < n; ++i)
      ASSERT_EQ(call(http::verb::post, "/api/v1/devices",
                     json{{"id", prefix + std::to_string(i)}, {"project", "app"}, {"chip", "esp32"}})
                    .result(),
                http::status::created);
  }
  // An update check; returns the offered version, or "" for 204.
  std::string check(const std::string& id, const std::string& version = "1.0") {
    auto r =
        call(http::verb::get, "/api/v1/update?project=app&chip=esp32&version=" + version + "&device=" + id,
             nullptr, false);
    EXPECT_TRUE(r.result() == http::status::ok || r.result() == http::status::no_content) << r.body();
    last_hold_ = std::string(r["x-ota32-rollout"]);
    return r.result() == http::status::ok ? body_of(r)["version"].get<std::string>() : "";
  }
  void report(const std::string& id, const std::string& state, const std::string& version,
              const std::string& reason = "") {
    json b{{"state", state}, {"version", version}};
    if (!reason.empty()) b["reason"] = reason;
    ASSERT_EQ(call(http::verb::post, "/api/v1/devices/" + id + "/report", b, false).result(),
              http::status::ok);
  }
  // A device that takes the offer and confirms it after reboot (or rolls back).
  void update(const std::string& id, bool good, const std::string& target = "2.0") {
    ASSERT_EQ(check(id), target) << id;
    report(id, "downloading", "1.0");
    report(id, "installed", "1.0");
    if (good)
      report(id, "booted", target);
    else
      report(id, "rolled_back", "1.0");
  }
  json show(const std::string& id) { return body_of(call(http::verb::get, "/api/v1/rollouts/" + id)); }
  json create(json body, http::status expect = http::status::created) {
    auto r = call(http::verb::post, "/api/v1/rollouts", body);
    EXPECT_EQ(r.result(), expect) << r.body();
    return body_of(r);
  }
  // Device ids of `n` devices split by the stage the rollout places them in.
  std::vector<std::vector<std::string>> by_stage(const std::string& rollout, int n,
                                                 const std::vector<rollout::Stage>& stages) {
    std::vector<std::vector<std::string>> out(stages.size());
    for (int i = 0; i < n; ++i) {
      std::string id = "dev-" + std::to_string(i);
      out[rollout::stage_of_bucket(stages, rollout::bucket(rollout, id))].push_back(id);
    }
    return out;
  }

  testing::TempDir tmp_;
  Router router_;
  std::unique_ptr<ApiContext> api_;
  std::string token_;
  int64_t now_ = 1'800'000'000;
  std::string last_hold_;
};

TEST(GroupFilter, ParsesAndMatches) {
  auto f = parse_group_filter("chip=esp32 tag=canary version<2.0 attr.site=ber*");
  ASSERT_TRUE(f) << f.error().message();
  DeviceRecord d;
  d.id = "a";
  d.chip = "esp32";
  d.tags = {"canary"};
  d.running_version = "1.9.3";
  d.attributes = {{"site", "berlin"}};
  EXPECT_TRUE(matches(*f, d));
  EXPECT_FALSE(matches(*f, d, "2.0.0")) << "the check's running version wins over the record's";
  d.tags = {"lab"};
  EXPECT_FALSE(matches(*f, d));
  auto ne = parse_group_filter("tag!=lab id=dev-*");
  ASSERT_TRUE(ne);
  EXPECT_FALSE(matches(*ne, d));
  d.tags.clear();
  d.id = "dev-7";
  EXPECT_TRUE(matches(*ne, d));
  EXPECT_TRUE(matches(*parse_group_filter(""), d)) << "the empty filter is every device";
  for (const char* bad : {"chip", "chip<esp32", "colour=red", "tag=", "version<1*", "x!y", "=v"}) {
    auto e = parse_group_filter(bad);
    ASSERT_FALSE(e) << bad;
    EXPECT_THAT(e.error().message(), HasSubstr("filter term 1")) << bad;
  }
}

TEST_F(RolloutApiTest, GroupsAndTags) {
  add_devices(3);
  auto tagged =
      call(http::verb::put, "/api/v1/devices/dev-1/tags", json{{"tags", {"canary", "lab", "canary"}}});
  ASSERT_EQ(tagged.result(), http::status::ok) << tagged.body();
  EXPECT_EQ(body_of(tagged)["tags"], json({"canary", "lab"}));
  auto attrs =
      call(http::verb::put, "/api/v1/devices/dev-2/attributes", json{{"attributes", {{"site", "berlin"}}}});
  ASSERT_EQ(attrs.result(), http::status::ok) << attrs.body();
  auto g = call(http::verb::post, "/api/v1/groups", json{{"name", "canaries"}, {"filter", "tag=canary"}});
  ASSERT_EQ(g.result(), http::status::created) << g.body();
  EXPECT_EQ(body_of(g)["devices"], 1);
  ASSERT_EQ(call(http::verb::post, "/api/v1/groups", json{{"name", "berlin"}, {"filter", "attr.site=berlin"}})
                .result(),
            http::status::created);
  EXPECT_EQ(call(http::verb::post, "/api/v1/groups", json{{"name", "canaries"}}).result(),
            http::status::conflict);
  auto bad = call(http::verb::post, "/api/v1/groups", json{{"name", "x"}, {"filter", "chip<esp32"}});
  EXPECT_EQ(bad.result(), http::status::bad_request);
  EXPECT_THAT(body_of(bad)["message"].get<std::string>(), HasSubstr("chip takes only = or !="));
  EXPECT_EQ(call(http::verb::post, "/api/v1/groups", json{{"name", "a/b"}}).result(),
            http::status::bad_request);
  EXPECT_EQ(call(http::verb::put, "/api/v1/devices/dev-1/tags", json{{"tags", {"has space"}}}).result(),
            http::status::bad_request);
  EXPECT_EQ(call(http::verb::put, "/api/v1/devices/nobody/tags", json{{"tags", json::array()}}).result(),
            http::status::not_found);
  auto shown = body_of(call(http::verb::get, "/api/v1/groups/berlin"));
  EXPECT_EQ(shown["members"], json({"dev-2"}));
  auto list = body_of(call(http::verb::get, "/api/v1/groups"));
  ASSERT_EQ(list["groups"].size(), 2u);
  EXPECT_EQ(call(http::verb::get, "/api/v1/groups/none").result(), http::status::not_found);
  EXPECT_EQ(call(http::verb::get, "/api/v1/groups", nullptr, false).result(), http::status::unauthorized);
  EXPECT_EQ(call(http::verb::delete_, "/api/v1/groups/berlin").result(), http::status::ok);
  EXPECT_EQ(call(http::verb::delete_, "/api/v1/groups/berlin").result(), http::status::not_found);
}

TEST_F(RolloutApiTest, CreateRefusesBadInputNamingTheField) {
  const std::string sha = upload("2.0");
  struct Case {
    json body;
    http::status status;
    std::string message;
  };
  const std::vector<Case> cases = {
      {json{{"stages", {{{"percent", 100}}}}}, http::status::bad_request, "firmware: give the release"},
      {json{{"version", "9.9"}, {"stages", {{{"percent", 100}}}}}, http::status::not_found,
       "no firmware with version"},
      {json{{"firmware", "abc"}, {"stages", {{{"percent", 100}}}}}, http::status::bad_request,
       "64 hex digits"},
      {json{{"firmware", sha}, {"group", "nope"}, {"stages", {{{"percent", 100}}}}}, http::status::not_found,
       "no group 'nope'"},
      {json{{"firmware", sha}}, http::status::bad_request, "stages: required"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 50}}, {{"percent", 40}}}}}, http::status::bad_request,
       "stages[1].percent: 40 is not above"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 50}}}}}, http::status::bad_request,
       "the last stage must be 100"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 100}, {"soak", 5}}}}}, http::status::bad_request,
       "stages[0].soak: unknown key"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 100}}}}, {"policy", {{"max_in_flight", -1}}}},
       http::status::bad_request, "policy.max_in_flight"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 100}}}}, {"policy", {{"max_failure_rate", 5}}}},
       http::status::bad_request, "policy.max_failure_rate"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 100}}}}, {"policy", {{"zero_tolerance", {"oops"}}}}},
       http::status::bad_request, "policy.zero_tolerance"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 100}}}}, {"colour", 1}}, http::status::bad_request,
       "colour: unknown key"},
      {json{{"firmware", sha}, {"stages", {{{"percent", 100}}}}, {"id", "a b"}}, http::status::bad_request,
       "id:"},
  };
  for (const auto& c : cases) {
    auto r = create(c.body, c.status);
    EXPECT_THAT(r["message"].get<std::string>(), HasSubstr(c.message)) << c.body.dump();
  }
  auto ok = create(json{{"id", "r1"}, {"version", "2.0"}, {"stages", {{{"percent", 100}}}}});
  EXPECT_EQ(ok["firmware"], sha);
  create(json{{"id", "r1"}, {"version", "2.0"}, {"stages", {{{"percent", 100}}}}}, http::status::conflict);
  EXPECT_EQ(call(http::verb::get, "/api/v1/rollouts/none").result(), http::status::not_found);
  EXPECT_EQ(call(http::verb::post, "/api/v1/rollouts/r1/explode").result(), http::status::not_found);
  EXPECT_EQ(call(http::verb::post, "/api/v1/rollouts/r1/resume").result(), http::status::conflict);
  EXPECT_EQ(call(http::verb::post, "/api/v1/rollouts", nullptr, false).result(), http::status::unauthorized);
}

// Only devices of the open stage are offered; the rollout's firmware does not leak through the channel to
// anyone else; a failing device pauses the rollout with the evidence; a paused rollout offers nothing new.
TEST_F(RolloutApiTest, StagedOffersAndAutoPauseWithEvidence) {
  add_devices(40);
  upload("2.0");
  const std::vector<rollout::Stage> stages{{2500}, {10000}};
  create(json{{"id", "r1"},
              {"version", "2.0"},
              {"stages", {{{"percent", 25}, {"min_soak_s", 600}}, {{"percent", 100}}}},
              {"policy", {{"max_failures", 2}}}});
  auto split = by_stage("r1", 40, stages);
  ASSERT_GE(split[0].size(), 4u);
  ASSERT_GE(split[1].size(), 1u);
  for (const auto& id : split[1]) {
    EXPECT_EQ(check(id), "") << id;
    EXPECT_EQ(last_hold_, "r1 not_in_stage");
  }
  // An anonymous check (no device id: nothing to place) does not get the rollout's firmware either.
  EXPECT_EQ(
      call(http::verb::get, "/api/v1/update?project=app&chip=esp32&version=1.0", nullptr, false).result(),
      http::status::no_content);
  update(split[0][0], true);
  update(split[0][1], false);
  EXPECT_EQ(show("r1")["state"], "running");
  update(split[0][2], false);
  json r = show("r1");
  EXPECT_EQ(r["state"], "paused_auto");
  const json& d = r["decisions"][0];
  EXPECT_EQ(d["kind"], "paused_auto");
  EXPECT_EQ(d["actor"], "policy");
  EXPECT_THAT(d["summary"].get<std::string>(), HasSubstr("max_failures"));
  const json& ev = d["evidence"][0];
  EXPECT_EQ(ev["rule"], "max_failures");
  EXPECT_EQ(ev["scope"], "stage 1");
  EXPECT_EQ(ev["failed"], 2);
  EXPECT_EQ(ev["succeeded"], 1);
  EXPECT_EQ(ev["reported"], 3);
  EXPECT_EQ(ev["fired"], true);
  const json& f = r["stage_list"][0]["funnel"];
  EXPECT_EQ(f["eligible"], split[0].size());
  EXPECT_EQ(f["offered"], 3);
  EXPECT_EQ(f["confirmed"], 1);
  EXPECT_EQ(f["failed"], 2);
  EXPECT_EQ(f["failed_by_reason"]["rolled_back"], 2);
  EXPECT_EQ(check(split[0][3]), "") << "paused: nothing new is offered";
  EXPECT_EQ(last_hold_, "r1 not_running");
  EXPECT_EQ(r["stage_list"][1]["funnel"]["offered"], 0) << "no device outside stage 1 got it";
}

// A good stage promotes once its soak time has passed - by the timer's sweep, with no report arriving -
// and the rollout completes when every device of the last stage confirmed.
TEST_F(RolloutApiTest, PromotesAfterSoakByTheSweepAndCompletes) {
  add_devices(12);
  upload("2.0");
  const std::vector<rollout::Stage> stages{{3000}, {10000}};
  create(json{{"id", "r2"},
              {"version", "2.0"},
              {"stages", {{{"percent", 30}, {"min_soak_s", 600}}, {{"percent", 100}}}}});
  auto split = by_stage("r2", 12, stages);
  ASSERT_FALSE(split[0].empty());
  for (const auto& id : split[0]) update(id, true);
  ASSERT_TRUE(sweep_rollouts(*api_->store, now_));
  EXPECT_EQ(show("r2")["stage"], 1) << "soak time not over";
  now_ += 600;
  ASSERT_TRUE(sweep_rollouts(*api_->store, now_));
  json r = show("r2");
  EXPECT_EQ(r["stage"], 2);
  EXPECT_EQ(r["decisions"][0]["kind"], "promoted");
  for (const auto& id : split[1]) update(id, true);
  ASSERT_TRUE(sweep_rollouts(*api_->store, now_));
  r = show("r2");
  EXPECT_EQ(r["state"], "completed");
  EXPECT_EQ(r["confirmed"], 12);
  // Completed: the release is the channel's like any other.
  EXPECT_EQ(check("late-device"), "2.0");
}

TEST_F(RolloutApiTest, CapTimeoutsRetriesAndRestart) {
  add_devices(6);
  upload("2.0");
  create(json{{"id", "r3"},
              {"version", "2.0"},
              {"stages", {{{"percent", 100}}}},
              {"policy",
               {{"max_in_flight", 2},
                {"confirm_timeout_s", 60},
                {"action_timeout_s", 120},
                {"retries", 1},
                {"retry_backoff_s", 10},
                {"max_failures", 0}}}});
  EXPECT_EQ(check("dev-0"), "2.0");
  EXPECT_EQ(check("dev-1"), "2.0");
  EXPECT_EQ(check("dev-2"), "");
  EXPECT_EQ(last_hold_, "r3 at_capacity");
  EXPECT_EQ(check("dev-0"), "2.0") << "a device holding the offer keeps it";
  report("dev-0", "installed", "1.0");
  EXPECT_EQ(check("dev-2"), "2.0") << "installed devices no longer count against the cap";
  // dev-0 never confirms: the sweep turns it into a timeout (not retried: confirm timeouts are timeouts,
  // which are retried once here).
  now_ += 61;
  auto expired = sweep_rollouts(*api_->store, now_);
  ASSERT_TRUE(expired);
  EXPECT_EQ(*expired, 1);
  auto a = api_->store->get_rollout_device("r3", "dev-0");
  ASSERT_TRUE(a && a->has_value());
  EXPECT_EQ((*a)->state, "retry_wait");
  EXPECT_EQ((*a)->reason, "timeout");
  // Restart: a new context on the same data directory sees the same counters and counts nothing twice.
  json before = show("r3");
  open();
  json after = show("r3");
  EXPECT_EQ(before["stage_list"], after["stage_list"]);
  EXPECT_EQ(before["decisions"], after["decisions"]);
  auto outcomes = api_->store->rollout_outcomes("r3", 0);
  ASSERT_TRUE(outcomes);
  EXPECT_EQ(outcomes->size(), 1u);
  ASSERT_TRUE(sweep_rollouts(*api_->store, now_));
  EXPECT_EQ(api_->store->rollout_outcomes("r3", 0)->size(), 1u) << "a second sweep expires nothing again";
  now_ += 10;
  EXPECT_EQ(check("dev-0"), "") << "dev-1 and dev-2 hold both places";
  report("dev-1", "booted", "2.0");
  EXPECT_EQ(check("dev-0"), "2.0") << "the retry after the backoff";
  EXPECT_EQ((*api_->store->get_rollout_device("r3", "dev-0"))->attempts, 2u);
  report("dev-0", "booted", "2.0");
  EXPECT_EQ(show("r3")["stage_list"][0]["funnel"]["confirmed"], 2);
}

TEST_F(RolloutApiTest, NewerRolloutSupersedesAndCommandsAreRecorded) {
  add_devices(2);
  upload("2.0");
  upload("3.0");
  create(json{{"id", "old"}, {"version", "2.0"}, {"stages", {{{"percent", 100}}}}});
  EXPECT_EQ(check("dev-0"), "2.0");
  create(json{{"id", "new"}, {"version", "3.0"}, {"stages", {{{"percent", 100}}}}});
  EXPECT_EQ(check("dev-0"), "2.0") << "an attempt under way keeps the device until it ends";
  EXPECT_EQ(check("dev-1"), "3.0") << "the newest rollout answers the others";
  report("dev-0", "booted", "2.0");
  EXPECT_EQ(check("dev-0", "2.0"), "3.0");
  ASSERT_EQ(call(http::verb::post, "/api/v1/rollouts/new/pause").result(), http::status::ok);
  json r = show("new");
  EXPECT_EQ(r["state"], "paused_manual");
  EXPECT_EQ(r["decisions"][0]["actor"], "admin");
  ASSERT_EQ(call(http::verb::post, "/api/v1/rollouts/new/abort").result(), http::status::ok);
  EXPECT_EQ(show("new")["state"], "aborted");
  EXPECT_EQ(check("dev-1", "1.0"), "2.0") << "the aborted rollout's 3.0 is withheld; old's 2.0 answers";
  auto list = body_of(call(http::verb::get, "/api/v1/rollouts"));
  ASSERT_EQ(list["rollouts"].size(), 2u);
  EXPECT_EQ(list["rollouts"][0]["id"], "old");
}

TEST_F(RolloutApiTest, ReportsWithAnUnknownReasonAreRefused) {
  add_devices(1);
  auto r = call(http::verb::post, "/api/v1/devices/dev-0/report",
                json{{"state", "failed"}, {"version", "1.0"}, {"reason", "gremlins"}}, false);
  EXPECT_EQ(r.result(), http::status::bad_request);
  EXPECT_THAT(body_of(r)["message"].get<std::string>(), HasSubstr("'gremlins' is not one of"));
}

// Concurrent update checks through the handlers (the server's threads share one store): the cap holds and
// every device that got an offer has exactly one action.
TEST_F(RolloutApiTest, ConcurrentChecksNeverExceedTheCap) {
  add_devices(16);
  upload("2.0");
  create(json{{"id", "r5"},
              {"version", "2.0"},
              {"stages", {{{"percent", 100}}}},
              {"policy", {{"max_in_flight", 3}}}});
  std::atomic<int> offered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = t; i < 16; i += 4) {
        HttpRequest req{http::verb::get,
                        "/api/v1/update?project=app&chip=esp32&version=1.0&device=dev-" + std::to_string(i),
                        11};
        req.set(http::field::host, "10.0.0.36:8070");
        auto r = router_.route(req, RequestContext{});
        if (std::get<HttpResponse>(r).result() == http::status::ok) ++offered;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(offered.load(), 3);
  auto counts = api_->store->rollout_state_counts("r5");
  ASSERT_TRUE(counts);
  ASSERT_EQ(counts->size(), 1u);
  EXPECT_EQ((*counts)[0].state, "offered");
  EXPECT_EQ((*counts)[0].count, 3);
}

}  // namespace
}  // namespace ota32::server
