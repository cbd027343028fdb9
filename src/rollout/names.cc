// The stable names of the rollout enums (API, store and CLI use them).
#include <fmt/format.h>

#include <array>
#include <utility>

#include "rollout/rollout.h"

namespace ota32::rollout {
namespace {

template <class E, size_t N>
Result<E> parse(const std::array<std::pair<E, std::string_view>, N>& table, std::string_view s,
                std::string_view what) {
  for (const auto& [e, name] : table)
    if (name == s) return e;
  std::string all;
  for (const auto& [e, name] : table) all += (all.empty() ? "" : ", ") + std::string(name);
  return Error(ErrorCode::invalid_argument, fmt::format("{}: '{}' is not one of {}", what, s, all));
}

template <class E, size_t N>
std::string_view name(const std::array<std::pair<E, std::string_view>, N>& table, E e) {
  for (const auto& [v, n] : table)
    if (v == e) return n;
  return "?";
}

constexpr std::array kReasons{
    std::pair{FailureReason::none, std::string_view("none")},
    std::pair{FailureReason::download_failed, std::string_view("download_failed")},
    std::pair{FailureReason::verify_failed, std::string_view("verify_failed")},
    std::pair{FailureReason::install_failed, std::string_view("install_failed")},
    std::pair{FailureReason::rolled_back, std::string_view("rolled_back")},
    std::pair{FailureReason::timeout, std::string_view("timeout")},
    std::pair{FailureReason::rejected, std::string_view("rejected")},
};
constexpr std::array kRolloutStates{
    std::pair{RolloutState::running, std::string_view("running")},
    std::pair{RolloutState::paused_manual, std::string_view("paused_manual")},
    std::pair{RolloutState::paused_auto, std::string_view("paused_auto")},
    std::pair{RolloutState::aborted, std::string_view("aborted")},
    std::pair{RolloutState::completed, std::string_view("completed")},
};
constexpr std::array kActionStates{
    std::pair{ActionState::offered, std::string_view("offered")},
    std::pair{ActionState::downloading, std::string_view("downloading")},
    std::pair{ActionState::installed, std::string_view("installed")},
    std::pair{ActionState::succeeded, std::string_view("succeeded")},
    std::pair{ActionState::retry_wait, std::string_view("retry_wait")},
    std::pair{ActionState::failed, std::string_view("failed")},
    std::pair{ActionState::canceled, std::string_view("canceled")},
};
constexpr std::array kOffers{
    std::pair{OfferKind::offer, std::string_view("offer")},
    std::pair{OfferKind::not_in_stage, std::string_view("not_in_stage")},
    std::pair{OfferKind::not_running, std::string_view("not_running")},
    std::pair{OfferKind::at_capacity, std::string_view("at_capacity")},
    std::pair{OfferKind::stage_full, std::string_view("stage_full")},
    std::pair{OfferKind::backing_off, std::string_view("backing_off")},
    std::pair{OfferKind::finished, std::string_view("finished")},
    std::pair{OfferKind::already_current, std::string_view("already_current")},
};
constexpr std::array kDecisions{
    std::pair{DecisionKind::none, std::string_view("none")},
    std::pair{DecisionKind::paused_auto, std::string_view("paused_auto")},
    std::pair{DecisionKind::promoted, std::string_view("promoted")},
    std::pair{DecisionKind::completed, std::string_view("completed")},
    std::pair{DecisionKind::paused, std::string_view("paused")},
    std::pair{DecisionKind::resumed, std::string_view("resumed")},
    std::pair{DecisionKind::aborted, std::string_view("aborted")},
};
constexpr std::array kReports{
    std::pair{ReportKind::downloading, std::string_view("downloading")},
    std::pair{ReportKind::installed, std::string_view("installed")},
    std::pair{ReportKind::booted, std::string_view("booted")},
    std::pair{ReportKind::rolled_back, std::string_view("rolled_back")},
    std::pair{ReportKind::failed, std::string_view("failed")},
};
constexpr std::array kCommands{
    std::pair{Command::pause, std::string_view("pause")},
    std::pair{Command::resume, std::string_view("resume")},
    std::pair{Command::abort, std::string_view("abort")},
    std::pair{Command::promote, std::string_view("promote")},
};

}  // namespace

std::string_view to_string(FailureReason r) { return name(kReasons, r); }
Result<FailureReason> failure_reason_from_string(std::string_view s) { return parse(kReasons, s, "reason"); }
std::string_view to_string(RolloutState s) { return name(kRolloutStates, s); }
Result<RolloutState> rollout_state_from_string(std::string_view s) {
  return parse(kRolloutStates, s, "rollout state");
}
std::string_view to_string(ActionState s) { return name(kActionStates, s); }
Result<ActionState> action_state_from_string(std::string_view s) {
  return parse(kActionStates, s, "action state");
}
std::string_view to_string(OfferKind k) { return name(kOffers, k); }
std::string_view to_string(DecisionKind k) { return name(kDecisions, k); }
Result<ReportKind> report_kind_from_string(std::string_view s) { return parse(kReports, s, "report state"); }
Result<Command> command_from_string(std::string_view s) { return parse(kCommands, s, "command"); }

bool is_terminal(ActionState s) {
  return s == ActionState::succeeded || s == ActionState::failed || s == ActionState::canceled;
}
bool is_in_flight(ActionState s) { return s == ActionState::offered || s == ActionState::downloading; }

}  // namespace ota32::rollout
