// The catalog (firmware records) and the fleet (device records, report history, admin tokens) behind one
// interface, with two implementations chosen by URL: SQLite (default, embedded) and PostgreSQL (several
// ota32-serve processes sharing one database). Implementations keep no in-process cache: every call reads
// the database, and unique constraints arbitrate between processes.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace ota32 {

inline constexpr std::string_view kDefaultChannel = "stable";

// One uploaded app image, described by its esp_app_desc_t (format/app_image.h) and keyed by its SHA-256.
struct FirmwareRecord {
  std::string sha256;   // 64 lower-case hex digits of the whole file: the primary key and the blob's name
  std::string project;  // esp_app_desc_t.project_name
  std::string version;  // esp_app_desc_t.version
  std::string chip;     // chip name from the image header's chip id ("esp32", "esp32c3", ...)
  std::string channel = std::string(kDefaultChannel);  // release channel (rollouts build on it later)
  uint32_t secure_version = 0;                         // anti-rollback counter (esp_app_desc_t)
  uint64_t size = 0;                                   // file size in bytes
  std::string md5;         // MD5 hex of the whole file (Arduino's x-MD5 / x-ESP32-sketch-md5)
  std::string image_hash;  // the image's appended SHA-256 (hex; = esp_partition_get_sha256), empty if none
  std::string idf_version, compile_date, compile_time;  // esp_app_desc_t.idf_ver, date, time
  std::string elf_sha256;                               // esp_app_desc_t.app_elf_sha256 (hex)
  std::string file_name;                                // name given at upload (informational)
  int64_t uploaded_at = 0;                              // Unix seconds
};

// What a device last said about itself (POST /api/v1/devices/{id}/report) or what an admin registered.
struct DeviceRecord {
  std::string id;
  std::string project, chip;
  std::string channel = std::string(kDefaultChannel);
  std::string running_version;
  std::string state;           // free-form agent state ("idle", "downloading", "updated", "rolled_back", ...)
  std::string last_error;      // empty when the last report carried none
  int64_t last_report_at = 0;  // Unix seconds, 0 = never reported
  std::string address;         // peer address of the last report
  int64_t created_at = 0;
  // The device registry (Mender's accept flow): "pending" (seen, not yet accepted), "accepted" or
  // "rejected". Devices registered by an admin, or created by reports on an open server, are accepted.
  std::string auth_status = "accepted";
  std::string token_sha256;  // SHA-256 hex of its device token (hawkBit TargetToken); empty = none issued
  std::map<std::string, std::string> attributes;  // key -> value (set by the admin or the device's reports)
  std::vector<std::string> tags;                  // sorted
};

inline constexpr std::string_view kDevicePending = "pending";
inline constexpr std::string_view kDeviceAccepted = "accepted";
inline constexpr std::string_view kDeviceRejected = "rejected";

// A group is a saved filter over device attributes (its syntax is the server's, see docs/api.md).
struct GroupRecord {
  std::string name;
  std::string filter;
  int64_t created_at = 0;
};

// A staged rollout as stored: the definition (stages, policy as JSON text) and its status. The policy
// itself lives in src/rollout; the store only keeps its inputs and outputs.
struct RolloutStageRecord {
  uint32_t cumulative_bp = 10000;  // basis points
  int64_t min_soak_s = 0;
  double success_fraction = 0.9;
  int64_t max_devices = -1;  // -1 = no cap
};

struct RolloutRecord {
  std::string id;
  int64_t seq = 0;  // creation order, assigned by create_rollout (newer rollouts supersede older ones)
  std::string firmware_sha256, target_version, group_name;
  std::string policy_json;  // the rollout policy's knobs (caps, retries, timeouts, auto-pause rules)
  std::vector<RolloutStageRecord> stages;
  std::string state = "running";
  uint32_t stage = 0;
  int64_t stage_started_at = 0, counted_since = 0, created_at = 0;
  std::string created_by;
};

// One device's action in a rollout.
struct RolloutDeviceRecord {
  std::string rollout_id, device_id;
  uint32_t stage = 0;
  std::string state;
  uint32_t attempts = 0;
  int64_t offered_at = 0, updated_at = 0, retry_at = 0;
  std::string reason = "none";
  std::string from_version;
};

// A terminal result of one attempt (the auto-pause rules count these).
struct RolloutOutcomeRecord {
  std::string rollout_id, device_id;
  uint32_t stage = 0;
  int64_t at = 0;
  bool success = false;
  std::string reason = "none";
};

// A decision about a rollout (automatic or an operator's), with its evidence as JSON text.
struct RolloutDecisionRecord {
  int64_t id = 0;  // assigned by the store
  std::string rollout_id;
  int64_t at = 0;
  std::string kind, actor;
  uint32_t stage = 0;
  std::string summary, evidence_json;
};

// How many of a rollout's actions are in each (stage, state).
struct RolloutStateCount {
  uint32_t stage = 0;
  std::string state;
  int64_t count = 0;
};

// One entry of a device's report history.
struct DeviceReport {
  std::string device_id;
  int64_t reported_at = 0;
  std::string state, running_version, error, address;
};

// How much report history the store keeps (Store::prune_reports). 0 = no limit on that axis.
struct ReportRetention {
  int64_t max_per_device = 0;   // newest N reports of each device
  int64_t max_age_seconds = 0;  // reports older than this are dropped (every device)
};

struct FirmwareFilter {
  std::string project, chip, channel;  // empty = any
};

class Store {
 public:
  virtual ~Store() = default;

  // "sqlite" or "postgresql".
  virtual std::string_view kind() const = 0;
  // The schema version after migrations (schema_version table).
  virtual Result<int> schema_version() = 0;

  // Inserts the record; returns false (and changes nothing) when a record with that sha256 already exists.
  virtual Result<bool> add_firmware(const FirmwareRecord& fw) = 0;
  virtual Result<std::optional<FirmwareRecord>> get_firmware(std::string_view sha256) = 0;
  // Newest upload first.
  virtual Result<std::vector<FirmwareRecord>> list_firmware(const FirmwareFilter& filter) = 0;
  // Returns false when there was no such record.
  virtual Result<bool> delete_firmware(std::string_view sha256) = 0;

  // The catalog's rule for records and their content-addressed files (BlobStore): a visible record always
  // has its file. An upload and a delete of the same SHA-256 take a lock that every process sharing the
  // database respects (PostgreSQL: pg_advisory_xact_lock on the SHA-256; SQLite: the database write lock of
  // BEGIN IMMEDIATE) and do their file step while holding it.
  // Runs write_blob, then inserts the record, in one transaction: the record becomes visible only once its
  // file is complete, and no delete can remove the file in between. Returns false when a record with that
  // sha256 already existed (write_blob ran anyway: rewriting the file repairs one that went missing).
  virtual Result<bool> add_firmware_with_blob(const FirmwareRecord& fw,
                                              const std::function<Result<void>()>& write_blob) = 0;
  // Deletes the record (invisible at once), then, under the lock, runs remove_blob unless a record with that
  // sha256 exists again (an upload that won the lock meanwhile wrote the file for its record). Returns false,
  // and leaves the file alone, when there was no record. A failed remove_blob leaves an unreferenced file
  // (harmless; a later upload of the same image reuses it), never a record without its file.
  virtual Result<bool> delete_firmware_with_blob(std::string_view sha256,
                                                 const std::function<Result<void>()>& remove_blob) = 0;

  // Creates the device if needed, overwriting project/chip/channel when non-empty; the other fields are kept.
  virtual Result<void> register_device(const DeviceRecord& device) = 0;
  // Upserts the device's current state from the report and appends it to the history, atomically.
  // project/chip update the record when non-empty.
  virtual Result<void> record_report(const DeviceReport& report, std::string_view project,
                                     std::string_view chip) = 0;
  virtual Result<std::optional<DeviceRecord>> get_device(std::string_view id) = 0;
  virtual Result<std::vector<DeviceRecord>> list_devices() = 0;
  // Newest first, at most `limit` entries.
  virtual Result<std::vector<DeviceReport>> device_reports(std::string_view id, int limit) = 0;
  virtual Result<bool> delete_device(std::string_view id) = 0;
  // How many device records exist (the server's cap on devices it has never seen).
  virtual Result<int64_t> device_count() = 0;
  // Drops the reports of `device_id` beyond its newest retention.max_per_device, and every device's reports
  // older than retention.max_age_seconds before `now`. Returns how many were removed.
  virtual Result<int64_t> prune_reports(std::string_view device_id, const ReportRetention& retention,
                                        int64_t now) = 0;

  // Admin bearer tokens, stored only as SHA-256 hex. `label` is unique: add_admin_token returns false when
  // a token with that label exists, so concurrent first starts create exactly one "initial" token.
  virtual Result<bool> add_admin_token(std::string_view token_sha256, std::string_view label) = 0;
  virtual Result<bool> admin_token_exists(std::string_view token_sha256) = 0;
  virtual Result<int64_t> admin_token_count() = 0;

  // Gateway tokens (hawkBit GatewayToken: one credential that may act for every accepted device), stored
  // hashed like admin tokens; labels are unique among all tokens.
  virtual Result<bool> add_gateway_token(std::string_view token_sha256, std::string_view label) = 0;
  virtual Result<bool> gateway_token_exists(std::string_view token_sha256) = 0;

  // ---- the device registry ----
  // Records a device seen without a valid credential as pending (nothing changes when it exists).
  // Returns true when it was added.
  virtual Result<bool> add_pending_device(std::string_view id, std::string_view project,
                                          std::string_view chip, std::string_view address) = 0;
  // Sets the registry status; false when there is no such device.
  virtual Result<bool> set_device_auth_status(std::string_view id, std::string_view status) = 0;
  // Accepts the device (creating it when unknown: a pre-authorisation) with a new token hash.
  virtual Result<void> issue_device_token(std::string_view id, std::string_view token_sha256) = 0;
  // Replaces the device's attributes (all of them) / tags; false when there is no such device.
  virtual Result<bool> set_device_attributes(std::string_view id,
                                             const std::map<std::string, std::string>& attributes) = 0;
  virtual Result<bool> set_device_tags(std::string_view id, const std::vector<std::string>& tags) = 0;

  // ---- groups ----
  // false when a group with that name exists.
  virtual Result<bool> add_group(const GroupRecord& group) = 0;
  virtual Result<std::optional<GroupRecord>> get_group(std::string_view name) = 0;
  virtual Result<std::vector<GroupRecord>> list_groups() = 0;
  virtual Result<bool> delete_group(std::string_view name) = 0;

  // ---- rollouts ----
  // Inserts the rollout and its stages, assigning seq; false when the id exists.
  virtual Result<bool> create_rollout(RolloutRecord& rollout) = 0;
  virtual Result<std::optional<RolloutRecord>> get_rollout(std::string_view id) = 0;
  // Oldest first.
  virtual Result<std::vector<RolloutRecord>> list_rollouts() = 0;
  // Stores a decision and, when `next` is given, the rollout's new status - only if the stored status still
  // equals `expected` (state, stage, stage_started_at, counted_since): several servers evaluating at once
  // decide once. Returns false (and stores nothing) when another writer got there first.
  virtual Result<bool> record_rollout_decision(const RolloutDecisionRecord& decision,
                                               const RolloutRecord* expected, const RolloutRecord* next) = 0;
  // Newest first, at most `limit`.
  virtual Result<std::vector<RolloutDecisionRecord>> rollout_decisions(std::string_view rollout_id,
                                                                       int limit) = 0;

  virtual Result<std::optional<RolloutDeviceRecord>> get_rollout_device(std::string_view rollout_id,
                                                                        std::string_view device_id) = 0;
  virtual Result<std::vector<RolloutDeviceRecord>> list_rollout_devices(std::string_view rollout_id) = 0;
  virtual Result<std::vector<RolloutStateCount>> rollout_state_counts(std::string_view rollout_id) = 0;
  // Writes one device's action (and the outcome of an attempt that ended) in one transaction, if the stored
  // action still equals `expected` (nullopt = there must be none; compared on state, attempts, updated_at).
  // With `max_in_flight`, a write that puts the action in flight also needs fewer than that many actions of
  // the rollout in offered / downloading (and `max_stage_devices` >= 0 caps the stage's actions), counted
  // inside the transaction: concurrent update checks never exceed the cap. Returns false when the action
  // changed meanwhile or a cap is reached (nothing is written).
  struct DeviceActionWrite {
    RolloutDeviceRecord action;
    std::optional<RolloutDeviceRecord> expected;
    std::optional<RolloutOutcomeRecord> outcome;
    int64_t max_in_flight = -1;
    int64_t max_stage_devices = -1;
  };
  virtual Result<bool> write_rollout_device(const DeviceActionWrite& write) = 0;
  // Outcomes with at >= since, oldest first.
  virtual Result<std::vector<RolloutOutcomeRecord>> rollout_outcomes(std::string_view rollout_id,
                                                                     int64_t since) = 0;
};

// Opens (creating and migrating as needed) the store named by `url`:
//   sqlite:///abs/path/ota32.db, sqlite://relative/path.db (also a plain path), postgresql://... or
//   postgres://... (libpq connection URI). Errors: invalid_argument (bad URL), unavailable (cannot connect),
//   io_error / internal (database errors), each naming the store.
Result<std::unique_ptr<Store>> open_store(std::string_view url);

// sqlite:// URL of the default store inside a data directory (DATA/ota32.db).
std::string default_store_url(const std::filesystem::path& data_dir);

// Current time in Unix seconds (the clock every record uses).
int64_t unix_now();

}  // namespace ota32
