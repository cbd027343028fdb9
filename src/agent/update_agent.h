// The update lifecycle the OTA agent runs after every boot, as an explicit table: confirm the running image
// (or reject it and reboot into the previous one), tell the server what became of the last update, check
// for an update, download and install it, reboot. Shaped like mender-mcu's state transitions: a typed step,
// one row per (step, event) naming what the row writes to the agent's persisted record, the action, and
// the next step. The record is saved *before* the row's action, so a power cut between any two actions
// finds on the next boot what was under way (an update selected but not yet reported as installed is
// reported booted; a download cut short continues from its saved progress; an update whose otadata switch
// was torn is installed again, not taken for a rollback).
//
// Nothing global, no file paths: the caller hands in the flash, the partition table, where the record lives
// (StateStore: agent_state.json for a device directory, memory for a simulated fleet), the download's
// ProgressStore, the transport (HttpOptions::connect), the clock and the log. One UpdateAgent per boot.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/agent_log.h"
#include "agent/https_ota.h"
#include "agent/update_client.h"
#include "core/result.h"
#include "flash/flash.h"
#include "format/partition_table.h"
#include "ota_ops/ota_ops.h"

namespace ota32::agent {

// --- The persisted record (NVS on the chip) -----------------------------------------------------------

enum class Phase : uint8_t {
  idle,         // no update under way
  downloading,  // `version` was offered and is being downloaded (saved before the download starts)
  installed,    // `version` was written and selected for the next boot (saved before it is reported)
};
std::string_view to_string(Phase p);

struct AgentState {
  Phase phase = Phase::idle;
  std::string version;  // downloading / installed: the update's version ("" when the URL is fixed)
  // Versions that did not stay booted: never installed again (native_ota_example compares the offered
  // version with esp_ota_get_last_invalid_partition's).
  std::vector<std::string> rolled_back;

  bool is_rolled_back(std::string_view v) const;
  friend bool operator==(const AgentState&, const AgentState&) = default;
};

// agent_state.json: {"installed": V} or {"downloading": V}, and "rolled_back": [V...] (a file without
// either key is idle). `name` goes into the error ("agent_state.json: not a JSON object").
Result<AgentState> parse_agent_state(std::string_view text, std::string_view name);
std::string agent_state_json(const AgentState& s);

class StateStore {
 public:
  virtual ~StateStore() = default;
  virtual Result<AgentState> load() = 0;  // nothing stored yet = AgentState{}
  virtual Result<void> save(const AgentState& s) = 0;
};

// The record in memory (an in-memory device, a simulated fleet, tests).
class MemoryStateStore final : public StateStore {
 public:
  AgentState state;
  Result<AgentState> load() override { return state; }
  Result<void> save(const AgentState& s) override {
    state = s;
    return {};
  }
};

// --- The transition table ----------------------------------------------------------------------------

enum class Step : uint8_t {
  boot,         // the app started
  confirm,      // the running image's self-test verdict is known
  confirmed,    // it marked itself valid
  rejecting,    // the running image marked itself invalid (or could not)
  outcome,      // what became of the update installed before this boot is known
  checking,     // asked the server (or the URL is fixed)
  announced,    // reported "downloading"
  downloading,  // the download ended
  reported,     // sent what became of the last update / of a download
  halted,       // end: the firmware keeps running the current image
  restarting,   // end: esp_restart()
};
enum class Event : uint8_t {
  powered_on,
  not_pending,       // no PENDING_VERIFY image (confirmed already, factory app, rollback disabled)
  self_test_passed,  // PENDING_VERIFY, self-test passed
  self_test_failed,  // PENDING_VERIFY, self-test failed
  done,              // the action finished (nothing to choose)
  marked_invalid,    // esp_ota_mark_app_invalid_rollback succeeded: the previous image boots next
  mark_refused,      // ... refused (no other image could boot): keep running this one
  nothing_installed,
  installed_booted,       // the update installed before this boot is the one running
  installed_rolled_back,  // it is not: it did not stay booted (its otadata entry is ABORTED / INVALID)
  not_switched,           // it is not, and it never ran: a power cut tore the otadata switch
  no_source,              // neither an update server nor a fixed URL
  fixed_url,              // no server: download the fixed URL
  offer,                  // the server offered an update
  no_update,
  offer_rolled_back,  // offered a version that was rolled back here before
  check_failed,
  installed,     // written, verified, selected for the next boot
  same_version,  // the image has the running version: not installed
  refused,       // the image was refused by a version check (logged there)
  failed,        // the download or the image failed
};
enum class Action : uint8_t {
  none,
  self_test,           // is the running image PENDING_VERIFY, and does its self-test pass?
  mark_valid,          // esp_ota_mark_app_valid_cancel_rollback
  mark_invalid,        // esp_ota_mark_app_invalid_rollback_and_reboot
  compare_installed,   // the record against the running version
  report_booted,       // report "booted"
  report_rolled_back,  // report "rolled_back"
  check,               // GET /api/v1/update (or take the fixed URL)
  report_downloading,  // report "downloading"
  download,            // esp_https_ota: download, verify, set the boot partition
  report_installed,    // report "installed"
  report_failed,       // report "failed"
};
// What a row writes to the record before its action.
enum class Persist : uint8_t {
  keep,
  reject_running,    // rolled_back += the running version
  reject_installed,  // rolled_back += the record's version; phase idle
  clear,             // phase idle
  downloading,       // phase downloading, version = the offered one
  installed,         // phase installed, version = the one written
};
std::string_view to_string(Step s);
std::string_view to_string(Event e);
std::string_view to_string(Action a);
std::string_view to_string(Persist p);

struct Transition {
  Step from;
  Event on;
  Persist persist;
  Action action;
  Step to;
};
std::span<const Transition> transitions();
// The row for (from, on); nullptr when there is none (a programming error of the caller).
const Transition* find_transition(Step from, Event on);
bool is_final(Step s);

// The values the rows' Persist and the actions work with during one boot.
struct Cycle {
  std::string running;                     // the running app's version
  std::string project;                     // its project_name
  std::string chip;                        // "esp32"
  std::optional<uint32_t> secure_version;  // its secure_version (the server's anti-rollback)
  std::string previous;                    // compare_installed: the record's version
  std::optional<UpdateOffer> offer;        // check: what the server offered
  std::string written;                     // download: the version written
  std::string error;                       // download: why it failed
};
// The record after `p` (pure).
AgentState apply(Persist p, AgentState s, const Cycle& c);

// Performs one action and returns the event it led to; errors abort the boot (a power cut: power_lost).
class AgentActions {
 public:
  virtual ~AgentActions() = default;
  virtual Result<Event> perform(Action a, Cycle& c, const AgentState& state) = 0;
};

enum class AgentExit { halt, reboot };

// Runs the table from (from, on): each row's Persist is saved to `store` (when it changes the record)
// before its action; ends at a final step. Bounded: more rows than the table has is an internal error.
// Errors: the store's, the actions' (power_lost); internal for an event without a row.
Result<AgentExit> run_transitions(StateStore& store, AgentActions& actions, Cycle& cycle,
                                  Step from = Step::boot, Event on = Event::powered_on);

// --- The agent on a device ---------------------------------------------------------------------------

struct UpdateAgentConfig {
  std::string update_server;  // "https://127.0.0.1:8443": check and report; or
  std::string ota_url;        // a fixed firmware URL (simple_ota_example); neither = confirm only
  std::string device_id;
  DeviceCredential credential;
  // The download: http (TLS, timeout, transport), writer (the firmware build's checks), backoff, sleep
  // (the clock), progress (resume after a reboot). url / expected_* / invalid_versions are set per update.
  HttpsOtaConfig ota;
  // The self-test of a PENDING_VERIFY image; empty = passes.
  std::function<bool(std::string_view version)> self_test;
};

// The running firmware, as the bootloader started it.
struct RunningApp {
  PartitionEntry partition;
  std::optional<AppDescription> desc;
  std::string chip;  // "esp32"
};

class UpdateAgent final : public AgentActions {
 public:
  // `ota` is esp_ota_ops on this device (flash, table, eFuse anti-rollback); `ota.running` must be the
  // running partition. All references must outlive the agent.
  UpdateAgent(UpdateAgentConfig config, const AppOtaContext& ota, StateStore& store, EspLog& log);

  // One boot's lifecycle: reboot when an update was installed or the running image rejected itself.
  Result<AgentExit> run(const RunningApp& app);

  // The last download's result (after an `installed` event).
  const std::optional<HttpsOtaResult>& last_download() const { return download_; }

  Result<Event> perform(Action a, Cycle& c, const AgentState& state) override;

 private:
  void report(const Cycle& c, ReportState st, std::string error);

  UpdateAgentConfig cfg_;
  const AppOtaContext& ota_;
  StateStore& store_;
  EspLog& log_;
  HttpClient client_;
  std::optional<HttpsOtaResult> download_;
};

}  // namespace ota32::agent
