#include "agent/update_agent.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>

namespace ota32::agent {
namespace {

constexpr const char* kTag = "simple_ota_example";

using S = Step;
using E = Event;
using P = Persist;
using A = Action;

// clang-format off
constexpr std::array<Transition, 23> kTable = {{
    // The running image confirms itself, or rejects itself and reboots into the previous one.
    {S::boot,        E::powered_on,            P::keep,             A::self_test,          S::confirm},
    {S::confirm,     E::not_pending,           P::keep,             A::compare_installed,  S::outcome},
    {S::confirm,     E::self_test_passed,      P::keep,             A::mark_valid,         S::confirmed},
    {S::confirm,     E::self_test_failed,      P::keep,             A::mark_invalid,       S::rejecting},
    {S::confirmed,   E::done,                  P::keep,             A::compare_installed,  S::outcome},
    {S::rejecting,   E::marked_invalid,        P::reject_running,   A::none,               S::restarting},
    {S::rejecting,   E::mark_refused,          P::keep,             A::compare_installed,  S::outcome},
    // What became of the update installed before this boot.
    {S::outcome,     E::nothing_installed,     P::keep,             A::check,              S::checking},
    {S::outcome,     E::installed_booted,      P::clear,            A::report_booted,      S::reported},
    {S::outcome,     E::installed_rolled_back, P::reject_installed, A::report_rolled_back, S::reported},
    {S::outcome,     E::not_switched,          P::clear,            A::check,              S::checking},
    {S::reported,    E::done,                  P::keep,             A::check,              S::checking},
    // Is there an update?
    {S::checking,    E::no_source,             P::keep,             A::none,               S::halted},
    {S::checking,    E::fixed_url,             P::keep,             A::download,           S::downloading},
    {S::checking,    E::offer,                 P::downloading,      A::report_downloading, S::announced},
    {S::checking,    E::no_update,             P::keep,             A::none,               S::halted},
    {S::checking,    E::offer_rolled_back,     P::keep,             A::none,               S::halted},
    {S::checking,    E::check_failed,          P::keep,             A::none,               S::halted},
    {S::announced,   E::done,                  P::keep,             A::download,           S::downloading},
    // Install, then reboot into it; a failed download leaves the running image booting.
    {S::downloading, E::installed,             P::installed,        A::report_installed,   S::restarting},
    {S::downloading, E::same_version,          P::clear,            A::none,               S::halted},
    {S::downloading, E::refused,               P::clear,            A::report_failed,      S::halted},
    {S::downloading, E::failed,                P::clear,            A::report_failed,      S::halted},
}};
// clang-format on

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end()) v.push_back(s);
}

}  // namespace

std::string_view to_string(Phase p) {
  switch (p) {
    case Phase::idle:
      return "idle";
    case Phase::downloading:
      return "downloading";
    case Phase::installed:
      return "installed";
  }
  return "?";
}

std::string_view to_string(Step s) {
  constexpr std::array<std::string_view, 11> n = {"boot",     "confirm",  "confirmed", "rejecting",
                                                  "outcome",  "checking", "announced", "downloading",
                                                  "reported", "halted",   "restarting"};
  return n[static_cast<size_t>(s)];
}

std::string_view to_string(Event e) {
  constexpr std::array<std::string_view, 21> n = {"powered_on",
                                                  "not_pending",
                                                  "self_test_passed",
                                                  "self_test_failed",
                                                  "done",
                                                  "marked_invalid",
                                                  "mark_refused",
                                                  "nothing_installed",
                                                  "installed_booted",
                                                  "installed_rolled_back",
                                                  "not_switched",
                                                  "no_source",
                                                  "fixed_url",
                                                  "offer",
                                                  "no_update",
                                                  "offer_rolled_back",
                                                  "check_failed",
                                                  "installed",
                                                  "same_version",
                                                  "refused",
                                                  "failed"};
  return n[static_cast<size_t>(e)];
}

std::string_view to_string(Action a) {
  constexpr std::array<std::string_view, 12> n = {"none",
                                                  "self_test",
                                                  "mark_valid",
                                                  "mark_invalid",
                                                  "compare_installed",
                                                  "report_booted",
                                                  "report_rolled_back",
                                                  "check",
                                                  "report_downloading",
                                                  "download",
                                                  "report_installed",
                                                  "report_failed"};
  return n[static_cast<size_t>(a)];
}

std::string_view to_string(Persist p) {
  constexpr std::array<std::string_view, 6> n = {"keep",  "reject_running", "reject_installed",
                                                 "clear", "downloading",    "installed"};
  return n[static_cast<size_t>(p)];
}

bool AgentState::is_rolled_back(std::string_view v) const {
  return std::find(rolled_back.begin(), rolled_back.end(), v) != rolled_back.end();
}

Result<AgentState> parse_agent_state(std::string_view text, std::string_view name) {
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(ErrorCode::corrupt, fmt::format("{}: not a JSON object", name));
  }
  AgentState s;
  for (auto [key, phase] : {std::pair{"installed", Phase::installed}, {"downloading", Phase::downloading}}) {
    if (!j.contains(key)) continue;
    if (!j[key].is_string()) return Error(ErrorCode::corrupt, fmt::format("{}: {}: not a string", name, key));
    s.phase = phase;
    s.version = j[key].get<std::string>();
  }
  if (j.contains("rolled_back")) {
    if (!j["rolled_back"].is_array()) {
      return Error(ErrorCode::corrupt, fmt::format("{}: rolled_back: not an array", name));
    }
    for (const auto& v : j["rolled_back"]) {
      if (v.is_string()) add_unique(s.rolled_back, v.get<std::string>());
    }
  }
  return s;
}

std::string agent_state_json(const AgentState& s) {
  nlohmann::json j = nlohmann::json::object();
  if (s.phase != Phase::idle) j[std::string(to_string(s.phase))] = s.version;
  if (!s.rolled_back.empty()) j["rolled_back"] = s.rolled_back;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

std::span<const Transition> transitions() { return kTable; }

const Transition* find_transition(Step from, Event on) {
  for (const auto& t : kTable) {
    if (t.from == from && t.on == on) return &t;
  }
  return nullptr;
}

bool is_final(Step s) { return s == Step::halted || s == Step::restarting; }

AgentState apply(Persist p, AgentState s, const Cycle& c) {
  switch (p) {
    case Persist::keep:
      break;
    case Persist::reject_running:
      add_unique(s.rolled_back, c.running);
      break;
    case Persist::reject_installed:
      if (!s.version.empty()) add_unique(s.rolled_back, s.version);
      s.phase = Phase::idle;
      s.version.clear();
      break;
    case Persist::clear:
      s.phase = Phase::idle;
      s.version.clear();
      break;
    case Persist::downloading:
      s.phase = Phase::downloading;
      s.version = c.offer ? c.offer->version : "";
      break;
    case Persist::installed:
      s.phase = Phase::installed;
      s.version = c.written;
      break;
  }
  return s;
}

Result<AgentExit> run_transitions(StateStore& store, AgentActions& actions, Cycle& cycle, Step from,
                                  Event on) {
  OTA32_ASSIGN(AgentState state, store.load());
  for (size_t rows = 0; rows <= kTable.size(); ++rows) {
    const Transition* t = find_transition(from, on);
    if (t == nullptr) {
      return Error(ErrorCode::internal, fmt::format("update agent: no transition from step {} on event {}",
                                                    to_string(from), to_string(on)));
    }
    AgentState next = apply(t->persist, state, cycle);
    if (next != state) {  // saved before the action: a power cut during it finds the record
      OTA32_TRY(store.save(next));
      state = std::move(next);
    }
    Event result = Event::done;
    if (t->action != Action::none) {
      OTA32_ASSIGN(result, actions.perform(t->action, cycle, state));
    }
    if (is_final(t->to)) return t->to == Step::restarting ? AgentExit::reboot : AgentExit::halt;
    from = t->to;
    on = result;
  }
  return Error(ErrorCode::internal, "update agent: the transitions did not end");
}

UpdateAgent::UpdateAgent(UpdateAgentConfig config, const AppOtaContext& ota, StateStore& store, EspLog& log)
    : cfg_(std::move(config)), ota_(ota), store_(store), log_(log), client_(cfg_.ota.http) {}

Result<AgentExit> UpdateAgent::run(const RunningApp& app) {
  Cycle c;
  c.running = app.desc ? app.desc->version : "";
  c.project = app.desc ? app.desc->project_name : "";
  if (app.desc) c.secure_version = app.desc->secure_version;
  c.chip = app.chip;
  return run_transitions(store_, *this, c);
}

void UpdateAgent::report(const Cycle& c, ReportState st, std::string error) {
  if (cfg_.update_server.empty()) return;
  DeviceReport rep{st, c.running, std::move(error), c.project, c.chip};
  auto r = report_state(client_, cfg_.update_server, cfg_.device_id, rep, cfg_.credential);
  if (!r) log_.warn(kTag, fmt::format("report to {} failed: {}", cfg_.update_server, r.error().message()));
}

Result<Event> UpdateAgent::perform(Action a, Cycle& c, const AgentState& state) {
  switch (a) {
    case Action::none:
      return Event::done;
    case Action::self_test: {
      if (ota_.running == nullptr) return Event::not_pending;
      auto st = get_state_partition(ota_.flash, ota_.table, *ota_.running);
      if (!st) {
        if (st.error().code() == ErrorCode::power_lost) return st.error();
        return Event::not_pending;  // factory / test app, or no otadata: nothing to confirm
      }
      if (*st != kOtaStatePendingVerify) return Event::not_pending;
      return !cfg_.self_test || cfg_.self_test(c.running) ? Event::self_test_passed : Event::self_test_failed;
    }
    case Action::mark_valid: {
      log_.info("app_model", fmt::format("self-test of version {} passed: "
                                         "esp_ota_mark_app_valid_cancel_rollback()",
                                         c.running));
      auto r = mark_app_valid_cancel_rollback(ota_, log_);
      if (!r && r.error().code() == ErrorCode::power_lost) return r.error();
      return Event::done;
    }
    case Action::mark_invalid: {
      log_.error("app_model", fmt::format("self-test of version {} failed: "
                                          "esp_ota_mark_app_invalid_rollback_and_reboot()",
                                          c.running));
      auto r = mark_app_invalid_rollback(ota_, log_);
      if (!r) {
        if (r.error().code() == ErrorCode::power_lost) return r.error();
        return Event::mark_refused;  // the call returned an error: the firmware keeps running
      }
      return Event::marked_invalid;
    }
    case Action::compare_installed: {
      c.previous = state.version;
      if (state.phase == Phase::installed) {
        if (state.version == c.running) return Event::installed_booted;
        // Rolled back only when its slot's otadata entry says so (ABORTED by the bootloader, INVALID by
        // its self-test), as esp_ota_get_last_invalid_partition sees it. Otherwise the switch never took
        // effect (a power cut tore the otadata write before the image ever ran): not a rejection.
        const PartitionEntry* slot = next_update_partition(ota_.table, ota_.running);
        if (slot == nullptr) return Event::installed_rolled_back;
        auto st = get_state_partition(ota_.flash, ota_.table, *slot);
        if (!st && st.error().code() == ErrorCode::power_lost) return st.error();
        if (st && (*st == kOtaStateAborted || *st == kOtaStateInvalid)) return Event::installed_rolled_back;
        return Event::not_switched;
      }
      // A power cut after the boot partition was set, before `installed` was saved: the update is running.
      if (state.phase == Phase::downloading && !state.version.empty() && state.version == c.running) {
        return Event::installed_booted;
      }
      return Event::nothing_installed;
    }
    case Action::report_booted:
      report(c, ReportState::booted, "");
      return Event::done;
    case Action::report_rolled_back:
      report(c, ReportState::rolled_back,
             fmt::format("version {} did not stay booted; running {} again", c.previous, c.running));
      return Event::done;
    case Action::check: {
      if (cfg_.update_server.empty() && cfg_.ota_url.empty()) return Event::no_source;
      log_.info(kTag, "Starting OTA example");
      if (cfg_.update_server.empty()) return Event::fixed_url;
      UpdateQuery q{cfg_.update_server, c.project, c.running, c.chip, cfg_.device_id, cfg_.credential};
      q.secure_version = c.secure_version;
      auto offer = check_for_update(client_, q);
      if (!offer) {
        log_.error(kTag, fmt::format("update check failed: {}", offer.error().message()));
        return Event::check_failed;
      }
      if (!*offer) {
        log_.info(kTag, fmt::format("no update for {} version {}", q.project, c.running));
        return Event::no_update;
      }
      if (state.is_rolled_back((*offer)->version)) {
        log_.warn(kTag,
                  fmt::format("New version is the same as invalid version. Previously, there was an attempt "
                              "to launch the firmware with {} version, but it failed. The firmware has been "
                              "rolled back to the previous version.",
                              (*offer)->version));
        return Event::offer_rolled_back;
      }
      c.offer = **offer;
      return Event::offer;
    }
    case Action::report_downloading:
      report(c, ReportState::downloading, "");
      return Event::done;
    case Action::download: {
      HttpsOtaConfig o = cfg_.ota;
      o.url = c.offer ? c.offer->url : cfg_.ota_url;
      if (c.offer) {
        o.expected_size = c.offer->size ? std::optional<uint64_t>(c.offer->size) : std::nullopt;
        o.expected_sha256 = c.offer->sha256;
      }
      o.writer.invalid_versions = state.rolled_back;
      auto done = https_ota(ota_.flash, ota_.table, ota_.running, o, log_);
      if (!done) {
        c.error = done.error().message();
        switch (done.error().code()) {
          case ErrorCode::power_lost:
            return done.error();
          case ErrorCode::already_exists:  // advanced_https_ota_example's version check
            log_.warn(kTag, "Current running version is the same as a new. We will not continue the update.");
            return Event::same_version;
          case ErrorCode::rollback_refused:  // refusals the agent logged (version checks)
            return Event::refused;
          default:
            log_.error(kTag, fmt::format("Firmware upgrade failed: {}", done.error().message()));
            return Event::failed;
        }
      }
      c.written = done->image.desc ? done->image.desc->version : (c.offer ? c.offer->version : "");
      download_ = std::move(*done);
      return Event::installed;
    }
    case Action::report_installed:
      report(c, ReportState::installed, "");
      log_.info(kTag, "Prepare to restart system!");
      return Event::done;
    case Action::report_failed:
      report(c, ReportState::failed, c.error);
      return Event::done;
  }
  return Error(ErrorCode::internal, "update agent: unknown action");
}

}  // namespace ota32::agent
