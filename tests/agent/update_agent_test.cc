// The update agent's transition table, one test per row (what the row saves before its action, the action,
// the next step), the record's pure updates and its JSON, and the actions that decide on the record.
#include "agent/update_agent.h"

#include <gtest/gtest.h>

#include <set>

#include "flash/nor_flash.h"
#include "ota_ops/ota_test_layout.h"

namespace ota32::agent {
namespace {

// Records every action with the record as it was saved when the action started; returns the scripted
// events, then a power cut (so that a test sees one row and what a cut right after its action leaves).
class ScriptedActions final : public AgentActions {
 public:
  explicit ScriptedActions(StateStore& store) : store_(store) {}
  std::vector<Event> events;
  struct Call {
    Action action;
    AgentState saved;
  };
  std::vector<Call> calls;
  Result<Event> perform(Action a, Cycle&, const AgentState&) override {
    OTA32_ASSIGN(AgentState saved, store_.load());
    calls.push_back({a, saved});
    if (calls.size() > events.size()) return Error(ErrorCode::power_lost, "power cut after the action");
    return events[calls.size() - 1];
  }

 private:
  StateStore& store_;
};

AgentState record(Phase p, std::string v, std::vector<std::string> rb = {}) {
  AgentState s;
  s.phase = p;
  s.version = std::move(v);
  s.rolled_back = std::move(rb);
  return s;
}

struct Row {
  Step from;
  Event on;
  Action action;
  Step to;
  AgentState saved;  // the record before the action, starting from kStart below
};

// Every test starts from the record "installed 2, rolled back [1]" with running "3", offered "4",
// written "5".
const AgentState kStart = record(Phase::installed, "2", {"1"});

// The lifecycle, row by row (the specification the table must match).
const Row kRows[] = {
    {Step::boot, Event::powered_on, Action::self_test, Step::confirm, kStart},
    {Step::confirm, Event::not_pending, Action::compare_installed, Step::outcome, kStart},
    {Step::confirm, Event::self_test_passed, Action::mark_valid, Step::confirmed, kStart},
    {Step::confirm, Event::self_test_failed, Action::mark_invalid, Step::rejecting, kStart},
    {Step::confirmed, Event::done, Action::compare_installed, Step::outcome, kStart},
    // The rejected image is remembered before the reboot into the previous one.
    {Step::rejecting, Event::marked_invalid, Action::none, Step::restarting,
     record(Phase::installed, "2", {"1", "3"})},
    {Step::rejecting, Event::mark_refused, Action::compare_installed, Step::outcome, kStart},
    {Step::outcome, Event::nothing_installed, Action::check, Step::checking, kStart},
    // The record forgets the installed update before the report: at most one report per update.
    {Step::outcome, Event::installed_booted, Action::report_booted, Step::reported,
     record(Phase::idle, "", {"1"})},
    {Step::outcome, Event::installed_rolled_back, Action::report_rolled_back, Step::reported,
     record(Phase::idle, "", {"1", "2"})},
    // The switch to the update was torn before it ever ran: forget it, check again (and reinstall).
    {Step::outcome, Event::not_switched, Action::check, Step::checking, record(Phase::idle, "", {"1"})},
    {Step::reported, Event::done, Action::check, Step::checking, kStart},
    {Step::checking, Event::no_source, Action::none, Step::halted, kStart},
    {Step::checking, Event::fixed_url, Action::download, Step::downloading, kStart},
    // The offered version is saved before anything is downloaded.
    {Step::checking, Event::offer, Action::report_downloading, Step::announced,
     record(Phase::downloading, "4", {"1"})},
    {Step::checking, Event::no_update, Action::none, Step::halted, kStart},
    {Step::checking, Event::offer_rolled_back, Action::none, Step::halted, kStart},
    {Step::checking, Event::check_failed, Action::none, Step::halted, kStart},
    {Step::announced, Event::done, Action::download, Step::downloading, kStart},
    // Installed: saved before it is reported and the device reboots.
    {Step::downloading, Event::installed, Action::report_installed, Step::restarting,
     record(Phase::installed, "5", {"1"})},
    {Step::downloading, Event::same_version, Action::none, Step::halted, record(Phase::idle, "", {"1"})},
    {Step::downloading, Event::refused, Action::report_failed, Step::halted, record(Phase::idle, "", {"1"})},
    {Step::downloading, Event::failed, Action::report_failed, Step::halted, record(Phase::idle, "", {"1"})},
};

class TransitionRow : public ::testing::TestWithParam<Row> {};

TEST_P(TransitionRow, SavesThenActsThenMovesOn) {
  const Row& row = GetParam();
  const Transition* t = find_transition(row.from, row.on);
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->action, row.action);
  EXPECT_EQ(t->to, row.to);

  MemoryStateStore store;
  store.state = kStart;
  ScriptedActions actions(store);
  Cycle c;
  c.running = "3";
  c.offer = UpdateOffer{"https://h/4.bin", 10, {}, "4", 0};
  c.written = "5";
  auto r = run_transitions(store, actions, c, row.from, row.on);
  if (row.action == Action::none) {
    // Only final steps have no action.
    ASSERT_TRUE(r) << r.error().message();
    EXPECT_EQ(*r, row.to == Step::restarting ? AgentExit::reboot : AgentExit::halt);
    EXPECT_TRUE(actions.calls.empty());
  } else {
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code(), ErrorCode::power_lost);
    ASSERT_EQ(actions.calls.size(), 1u);
    EXPECT_EQ(actions.calls[0].action, row.action);
  }
  // What the row saved before its action (and what a power cut during it leaves).
  EXPECT_EQ(store.state, row.saved) << to_string(store.state.phase) << " " << store.state.version;
  if (!actions.calls.empty()) {
    EXPECT_EQ(actions.calls[0].saved, row.saved);
  }
}

std::string row_name(const ::testing::TestParamInfo<Row>& i) {
  return std::string(to_string(i.param.from)) + "_" + std::string(to_string(i.param.on));
}

INSTANTIATE_TEST_SUITE_P(Table, TransitionRow, ::testing::ValuesIn(kRows), row_name);

TEST(TransitionTable, HasExactlyTheSpecifiedRows) {
  EXPECT_EQ(transitions().size(), std::size(kRows));
  std::set<std::pair<Step, Event>> seen;
  for (const auto& t : transitions()) {
    EXPECT_TRUE(seen.insert({t.from, t.on}).second)
        << "two rows for " << to_string(t.from) << " x " << to_string(t.on);
    EXPECT_FALSE(is_final(t.from)) << to_string(t.from);
  }
}

// Every event an action can lead to has a row from the step the action leads to.
TEST(TransitionTable, EveryOutcomeOfEveryActionHasARow) {
  auto outcomes = [](Action a) -> std::vector<Event> {
    switch (a) {
      case Action::self_test:
        return {Event::not_pending, Event::self_test_passed, Event::self_test_failed};
      case Action::mark_invalid:
        return {Event::marked_invalid, Event::mark_refused};
      case Action::compare_installed:
        return {Event::nothing_installed, Event::installed_booted, Event::installed_rolled_back,
                Event::not_switched};
      case Action::check:
        return {Event::no_source, Event::fixed_url,         Event::offer,
                Event::no_update, Event::offer_rolled_back, Event::check_failed};
      case Action::download:
        return {Event::installed, Event::same_version, Event::refused, Event::failed};
      default:
        return {Event::done};
    }
  };
  for (const auto& t : transitions()) {
    if (is_final(t.to)) continue;
    for (Event e : outcomes(t.action)) {
      EXPECT_NE(find_transition(t.to, e), nullptr)
          << to_string(t.action) << " from " << to_string(t.from) << " leads to " << to_string(t.to)
          << " with " << to_string(e) << ": no row";
    }
  }
}

TEST(TransitionTable, AWholeUpdateBootAndTheBootAfterIt) {
  MemoryStateStore store;
  ScriptedActions first(store);
  first.events = {Event::not_pending, Event::nothing_installed, Event::offer,
                  Event::done,        Event::installed,         Event::done};
  Cycle c;
  c.running = "1";
  c.offer = UpdateOffer{"https://h/2.bin", 10, {}, "2", 0};
  c.written = "2";
  auto r = run_transitions(store, first, c);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, AgentExit::reboot);
  std::vector<Action> did;
  for (const auto& call : first.calls) did.push_back(call.action);
  EXPECT_EQ(did,
            (std::vector<Action>{Action::self_test, Action::compare_installed, Action::check,
                                 Action::report_downloading, Action::download, Action::report_installed}));
  EXPECT_EQ(first.calls[4].saved, record(Phase::downloading, "2"));  // before the download
  EXPECT_EQ(store.state, record(Phase::installed, "2"));

  ScriptedActions second(store);
  second.events = {Event::self_test_passed, Event::done, Event::installed_booted, Event::done,
                   Event::no_update};
  Cycle c2;
  c2.running = "2";
  r = run_transitions(store, second, c2);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(*r, AgentExit::halt);
  EXPECT_EQ(second.calls[3].action, Action::report_booted);
  EXPECT_EQ(store.state, AgentState{});
}

TEST(TransitionTable, AnEventWithoutARowIsAnInternalError) {
  MemoryStateStore store;
  ScriptedActions a(store);
  a.events = {Event::offer};  // self_test cannot lead to an offer
  Cycle c;
  auto r = run_transitions(store, a, c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::internal);
  EXPECT_NE(r.error().message().find("confirm"), std::string::npos) << r.error().message();
}

TEST(AgentStateRecord, ApplyKeepsRolledBackVersionsOnce) {
  Cycle c;
  c.running = "1";
  AgentState s = apply(Persist::reject_running, record(Phase::idle, "", {"1"}), c);
  EXPECT_EQ(s.rolled_back, std::vector<std::string>{"1"});
  s = apply(Persist::reject_installed, record(Phase::installed, "", {}), c);
  EXPECT_TRUE(s.rolled_back.empty());  // a fixed-URL update has no version to refuse
  c.offer.reset();
  s = apply(Persist::downloading, AgentState{}, c);
  EXPECT_EQ(s, record(Phase::downloading, ""));
}

TEST(AgentStateRecord, JsonRoundTripAndTheOlderFileWithoutPhase) {
  for (const AgentState& s : {AgentState{}, record(Phase::installed, "2", {"1"}),
                              record(Phase::downloading, "3", {}), record(Phase::idle, "", {"4", "5"})}) {
    auto back = parse_agent_state(agent_state_json(s), "agent_state.json");
    ASSERT_TRUE(back) << back.error().message();
    EXPECT_EQ(*back, s);
  }
  auto old = parse_agent_state(R"({"installed": "7", "rolled_back": ["6", 3, "6"]})", "f");
  ASSERT_TRUE(old);
  EXPECT_EQ(*old, record(Phase::installed, "7", {"6"}));
  for (const char* bad : {"[]", "{", R"({"installed": 7})", R"({"rolled_back": "x"})"}) {
    auto r = parse_agent_state(bad, "agent_state.json");
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().code(), ErrorCode::corrupt);
    EXPECT_EQ(r.error().message().rfind("agent_state.json: ", 0), 0u) << r.error().message();
  }
}

// The actions that decide on the record, on a device with the seed's layout and blank otadata.
class AgentActionsTest : public ::testing::Test {
 protected:
  AgentActionsTest()
      : flash_(4u << 20),
        table_(ota32::testing::seed_layout()),
        ctx_{flash_, table_, [](const PartitionEntry&) -> Result<bool> { return true; }},
        agent_({}, ctx_, store_, log_) {
    for (const auto& e : table_.entries) {
      if (e.name == "ota_0") ctx_.running = &e;
    }
  }
  MemFlash flash_;
  PartitionTable table_;
  AppOtaContext ctx_;
  MemoryStateStore store_;
  NullLog log_;
  UpdateAgent agent_;
};

TEST_F(AgentActionsTest, CompareInstalled) {
  Cycle c;
  c.running = "2";
  struct Case {
    AgentState s;
    Event want;
  } cases[] = {
      {AgentState{}, Event::nothing_installed},
      {record(Phase::installed, "2"), Event::installed_booted},
      // Not running, and its slot (ota_1 after the running ota_0) has no ABORTED / INVALID entry: the
      // switch never happened.
      {record(Phase::installed, "3"), Event::not_switched},
      // A power cut after the boot partition was set, before "installed" was saved: it is running.
      {record(Phase::downloading, "2"), Event::installed_booted},
      // A download cut short: the next check offers it again and the download resumes.
      {record(Phase::downloading, "3"), Event::nothing_installed},
      {record(Phase::downloading, ""), Event::nothing_installed},
  };
  for (const auto& k : cases) {
    auto e = agent_.perform(Action::compare_installed, c, k.s);
    ASSERT_TRUE(e);
    EXPECT_EQ(*e, k.want) << to_string(k.s.phase) << " " << k.s.version;
    EXPECT_EQ(c.previous, k.s.version);
  }
}

TEST_F(AgentActionsTest, AnInstalledUpdateIsRolledBackOnlyWhenItsSlotSaysSo) {
  Cycle c;
  c.running = "2";
  const AgentState s = record(Phase::installed, "3");
  for (uint32_t st : {kOtaStateAborted, kOtaStateInvalid, kOtaStateNew, kOtaStatePendingVerify}) {
    // ota_1 (seq 2) with state `st`, as the bootloader / the rejected image left it.
    ASSERT_TRUE(flash_.erase(0xd000, 0x2000));
    ASSERT_TRUE(ota32::testing::put_seed_otadata(flash_, 0, make_ota_select_entry(2, st)));
    auto ev = agent_.perform(Action::compare_installed, c, s);
    ASSERT_TRUE(ev);
    const bool rejected = st == kOtaStateAborted || st == kOtaStateInvalid;
    EXPECT_EQ(*ev, rejected ? Event::installed_rolled_back : Event::not_switched) << st;
  }
}

TEST_F(AgentActionsTest, WithoutOtadataNothingIsPendingAndWithoutASourceNothingIsChecked) {
  Cycle c;
  auto e = agent_.perform(Action::self_test, c, {});
  ASSERT_TRUE(e);
  EXPECT_EQ(*e, Event::not_pending);
  e = agent_.perform(Action::check, c, {});
  ASSERT_TRUE(e);
  EXPECT_EQ(*e, Event::no_source);
}

}  // namespace
}  // namespace ota32::agent
