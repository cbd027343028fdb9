// The Store written once over SqlConnection; the two dialects differ only in the migration DDL and in how a
// write transaction starts. One connection per store, guarded by a mutex: the server's threads share it.
#include <fmt/format.h>

#include <chrono>
#include <mutex>

#include "store/sql_connection.h"
#include "store/store.h"

namespace ota32 {
namespace store_detail {
namespace {

// Migration N brings the schema from version N-1 to N. Append only; never edit a released migration.
std::vector<std::string> migrations(Dialect d) {
  const char* serial = d == Dialect::sqlite ? "INTEGER PRIMARY KEY AUTOINCREMENT" : "BIGSERIAL PRIMARY KEY";
  return {
      fmt::format(R"sql(
CREATE TABLE firmware (
  sha256 TEXT PRIMARY KEY,
  project TEXT NOT NULL,
  version TEXT NOT NULL,
  chip TEXT NOT NULL,
  channel TEXT NOT NULL DEFAULT 'stable',
  secure_version BIGINT NOT NULL DEFAULT 0,
  size BIGINT NOT NULL,
  md5 TEXT NOT NULL DEFAULT '',
  image_hash TEXT NOT NULL DEFAULT '',
  idf_version TEXT NOT NULL DEFAULT '',
  compile_date TEXT NOT NULL DEFAULT '',
  compile_time TEXT NOT NULL DEFAULT '',
  elf_sha256 TEXT NOT NULL DEFAULT '',
  file_name TEXT NOT NULL DEFAULT '',
  uploaded_at BIGINT NOT NULL
);
CREATE INDEX firmware_by_target ON firmware (project, chip, channel);
CREATE TABLE devices (
  id TEXT PRIMARY KEY,
  project TEXT NOT NULL DEFAULT '',
  chip TEXT NOT NULL DEFAULT '',
  channel TEXT NOT NULL DEFAULT 'stable',
  running_version TEXT NOT NULL DEFAULT '',
  state TEXT NOT NULL DEFAULT '',
  last_error TEXT NOT NULL DEFAULT '',
  last_report_at BIGINT NOT NULL DEFAULT 0,
  address TEXT NOT NULL DEFAULT '',
  created_at BIGINT NOT NULL
);
CREATE TABLE device_reports (
  id {serial},
  device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  reported_at BIGINT NOT NULL,
  state TEXT NOT NULL DEFAULT '',
  running_version TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  address TEXT NOT NULL DEFAULT ''
);
CREATE INDEX device_reports_by_device ON device_reports (device_id, id);
CREATE TABLE admin_tokens (
  sha256 TEXT PRIMARY KEY,
  label TEXT NOT NULL UNIQUE,
  created_at BIGINT NOT NULL
);
)sql",
                  fmt::arg("serial", serial)),
      // 2: the order of uploads. uploaded_at has whole seconds, so images uploaded within one second tied
      // and "the newest upload wins" fell to the SHA-256 order. Each new record gets MAX + 1; rows from
      // before keep 0, and so their former order (ties by SHA-256).
      "ALTER TABLE firmware ADD COLUMN upload_seq BIGINT NOT NULL DEFAULT 0",
      // 3: report retention by age (Store::prune_reports) deletes by time across every device.
      "CREATE INDEX IF NOT EXISTS device_reports_by_time ON device_reports (reported_at)",
      // 4: device identity (registry status, device token, attributes, tags), gateway tokens, groups and
      // staged rollouts (definition, per-device actions, the outcome log, the decision log).
      fmt::format(R"sql(
ALTER TABLE devices ADD COLUMN auth_status TEXT NOT NULL DEFAULT 'accepted';
ALTER TABLE devices ADD COLUMN token_sha256 TEXT NOT NULL DEFAULT '';
ALTER TABLE admin_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';
CREATE TABLE device_attributes (
  device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  key TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (device_id, key)
);
CREATE TABLE device_tags (
  device_id TEXT NOT NULL REFERENCES devices (id) ON DELETE CASCADE,
  tag TEXT NOT NULL,
  PRIMARY KEY (device_id, tag)
);
CREATE TABLE device_groups (
  name TEXT PRIMARY KEY,
  filter TEXT NOT NULL,
  created_at BIGINT NOT NULL
);
CREATE TABLE rollouts (
  id TEXT PRIMARY KEY,
  seq BIGINT NOT NULL UNIQUE,
  firmware_sha256 TEXT NOT NULL,
  target_version TEXT NOT NULL,
  group_name TEXT NOT NULL DEFAULT '',
  policy TEXT NOT NULL DEFAULT '{{}}',
  state TEXT NOT NULL,
  stage BIGINT NOT NULL DEFAULT 0,
  stage_started_at BIGINT NOT NULL,
  counted_since BIGINT NOT NULL,
  created_at BIGINT NOT NULL,
  created_by TEXT NOT NULL DEFAULT ''
);
CREATE TABLE rollout_stages (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  idx BIGINT NOT NULL,
  cumulative_bp BIGINT NOT NULL,
  min_soak_s BIGINT NOT NULL DEFAULT 0,
  success_fraction DOUBLE PRECISION NOT NULL DEFAULT 0.9,
  max_devices BIGINT NOT NULL DEFAULT -1,
  PRIMARY KEY (rollout_id, idx)
);
CREATE TABLE rollout_devices (
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,
  stage BIGINT NOT NULL,
  state TEXT NOT NULL,
  attempts BIGINT NOT NULL DEFAULT 0,
  offered_at BIGINT NOT NULL DEFAULT 0,
  updated_at BIGINT NOT NULL DEFAULT 0,
  retry_at BIGINT NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT 'none',
  from_version TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (rollout_id, device_id)
);
CREATE INDEX rollout_devices_by_state ON rollout_devices (rollout_id, state);
CREATE INDEX rollout_devices_by_device ON rollout_devices (device_id);
CREATE TABLE rollout_outcomes (
  id {serial},
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  device_id TEXT NOT NULL,
  stage BIGINT NOT NULL,
  at BIGINT NOT NULL,
  success BIGINT NOT NULL,
  reason TEXT NOT NULL DEFAULT 'none'
);
CREATE INDEX rollout_outcomes_by_rollout ON rollout_outcomes (rollout_id, at);
CREATE TABLE rollout_decisions (
  id {serial},
  rollout_id TEXT NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  at BIGINT NOT NULL,
  kind TEXT NOT NULL,
  actor TEXT NOT NULL DEFAULT '',
  stage BIGINT NOT NULL DEFAULT 0,
  summary TEXT NOT NULL DEFAULT '',
  evidence TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX rollout_decisions_by_rollout ON rollout_decisions (rollout_id, id);
)sql",
                  fmt::arg("serial", serial)),
  };
}

int64_t to_i64(const std::optional<std::string>& v) {
  if (!v || v->empty()) return 0;
  return std::stoll(*v);
}
std::string to_str(const std::optional<std::string>& v) { return v.value_or(""); }

constexpr const char* kFirmwareColumns =
    "sha256, project, version, chip, channel, secure_version, size, md5, image_hash, idf_version, "
    "compile_date, "
    "compile_time, elf_sha256, file_name, uploaded_at";

FirmwareRecord firmware_from_row(const SqlRow& r) {
  FirmwareRecord f;
  f.sha256 = to_str(r[0]);
  f.project = to_str(r[1]);
  f.version = to_str(r[2]);
  f.chip = to_str(r[3]);
  f.channel = to_str(r[4]);
  f.secure_version = static_cast<uint32_t>(to_i64(r[5]));
  f.size = static_cast<uint64_t>(to_i64(r[6]));
  f.md5 = to_str(r[7]);
  f.image_hash = to_str(r[8]);
  f.idf_version = to_str(r[9]);
  f.compile_date = to_str(r[10]);
  f.compile_time = to_str(r[11]);
  f.elf_sha256 = to_str(r[12]);
  f.file_name = to_str(r[13]);
  f.uploaded_at = to_i64(r[14]);
  return f;
}

constexpr const char* kDeviceColumns =
    "id, project, chip, channel, running_version, state, last_error, last_report_at, address, created_at, "
    "auth_status, token_sha256";

DeviceRecord device_from_row(const SqlRow& r) {
  DeviceRecord d;
  d.id = to_str(r[0]);
  d.project = to_str(r[1]);
  d.chip = to_str(r[2]);
  d.channel = to_str(r[3]);
  d.running_version = to_str(r[4]);
  d.state = to_str(r[5]);
  d.last_error = to_str(r[6]);
  d.last_report_at = to_i64(r[7]);
  d.address = to_str(r[8]);
  d.created_at = to_i64(r[9]);
  d.auth_status = to_str(r[10]);
  d.token_sha256 = to_str(r[11]);
  return d;
}

double to_double(const std::optional<std::string>& v) {
  if (!v || v->empty()) return 0;
  return std::stod(*v);
}
std::string double_text(double v) { return fmt::format("{:.17g}", v); }

constexpr const char* kRolloutColumns =
    "id, seq, firmware_sha256, target_version, group_name, policy, state, stage, stage_started_at, "
    "counted_since, created_at, created_by";

RolloutRecord rollout_from_row(const SqlRow& r) {
  RolloutRecord o;
  o.id = to_str(r[0]);
  o.seq = to_i64(r[1]);
  o.firmware_sha256 = to_str(r[2]);
  o.target_version = to_str(r[3]);
  o.group_name = to_str(r[4]);
  o.policy_json = to_str(r[5]);
  o.state = to_str(r[6]);
  o.stage = static_cast<uint32_t>(to_i64(r[7]));
  o.stage_started_at = to_i64(r[8]);
  o.counted_since = to_i64(r[9]);
  o.created_at = to_i64(r[10]);
  o.created_by = to_str(r[11]);
  return o;
}

constexpr const char* kRolloutDeviceColumns =
    "rollout_id, device_id, stage, state, attempts, offered_at, updated_at, retry_at, reason, from_version";

RolloutDeviceRecord rollout_device_from_row(const SqlRow& r) {
  RolloutDeviceRecord a;
  a.rollout_id = to_str(r[0]);
  a.device_id = to_str(r[1]);
  a.stage = static_cast<uint32_t>(to_i64(r[2]));
  a.state = to_str(r[3]);
  a.attempts = static_cast<uint32_t>(to_i64(r[4]));
  a.offered_at = to_i64(r[5]);
  a.updated_at = to_i64(r[6]);
  a.retry_at = to_i64(r[7]);
  a.reason = to_str(r[8]);
  a.from_version = to_str(r[9]);
  return a;
}

class SqlStore final : public Store {
 public:
  explicit SqlStore(std::unique_ptr<SqlConnection> conn) : conn_(std::move(conn)) {}

  std::string_view kind() const override {
    return conn_->dialect() == Dialect::sqlite ? "sqlite" : "postgresql";
  }

  Result<void> migrate() {
    std::lock_guard lock(mu_);
    return in_transaction([&]() -> Result<void> {
      if (conn_->dialect() == Dialect::postgresql) {
        // Serialises concurrent first starts of several servers on one database.
        OTA32_TRY(conn_->query("SELECT pg_advisory_xact_lock(7403861337)", {}));
      }
      OTA32_TRY(conn_->exec_script("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)"));
      OTA32_ASSIGN(int current, current_version());
      auto all = migrations(conn_->dialect());
      if (current > static_cast<int>(all.size()))
        return Error(ErrorCode::unsupported,
                     fmt::format("store schema version {} is newer than this ota32 (knows up to {})", current,
                                 all.size()));
      for (int v = current + 1; v <= static_cast<int>(all.size()); ++v) {
        OTA32_TRY(conn_->exec_script(all[static_cast<size_t>(v - 1)]));
        OTA32_TRY(conn_->query("DELETE FROM schema_version", {}));
        OTA32_TRY(conn_->query("INSERT INTO schema_version (version) VALUES ($1)", {int64_t{v}}));
      }
      return {};
    });
  }

  Result<int> schema_version() override {
    std::lock_guard lock(mu_);
    return current_version();
  }

  Result<bool> add_firmware(const FirmwareRecord& f) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(insert_firmware(f));
    return conn_->changes() > 0;
  }

  Result<std::optional<FirmwareRecord>> get_firmware(std::string_view sha256) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query(fmt::format("SELECT {} FROM firmware WHERE sha256 = $1", kFirmwareColumns),
                              {std::string(sha256)}));
    if (rows.empty()) return std::optional<FirmwareRecord>();
    return std::optional<FirmwareRecord>(firmware_from_row(rows[0]));
  }

  Result<std::vector<FirmwareRecord>> list_firmware(const FirmwareFilter& filter) override {
    std::lock_guard lock(mu_);
    // An empty filter value matches everything.
    OTA32_ASSIGN(auto rows,
                 conn_->query(fmt::format("SELECT {} FROM firmware WHERE ($1 = '' OR project = $1) AND "
                                          "($2 = '' OR chip = $2) AND ($3 = '' OR channel = $3) "
                                          "ORDER BY uploaded_at DESC, upload_seq DESC, sha256",
                                          kFirmwareColumns),
                              {filter.project, filter.chip, filter.channel}));
    std::vector<FirmwareRecord> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(firmware_from_row(r));
    return out;
  }

  Result<bool> delete_firmware(std::string_view sha256) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query("DELETE FROM firmware WHERE sha256 = $1", {std::string(sha256)}));
    return conn_->changes() > 0;
  }

  Result<bool> add_firmware_with_blob(const FirmwareRecord& f,
                                      const std::function<Result<void>()>& write_blob) override {
    std::lock_guard lock(mu_);
    bool added = false;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      OTA32_TRY(lock_blob(f.sha256));
      OTA32_TRY(write_blob());
      OTA32_TRY(insert_firmware(f));
      added = conn_->changes() > 0;
      return {};
    }));
    return added;
  }

  Result<bool> delete_firmware_with_blob(std::string_view sha256,
                                         const std::function<Result<void>()>& remove_blob) override {
    std::lock_guard lock(mu_);
    // The record goes first, in its own transaction: once it commits no reader can find it, so the file can
    // go. Removing the file inside this transaction instead would let readers (who see the old snapshot
    // until the commit) find a record whose file is already gone.
    OTA32_TRY(conn_->query("DELETE FROM firmware WHERE sha256 = $1", {std::string(sha256)}));
    if (conn_->changes() == 0) return false;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      OTA32_TRY(lock_blob(sha256));
      // Read after the lock is granted (READ COMMITTED: a fresh snapshot), so an upload that held the lock
      // and committed its record is seen here.
      OTA32_ASSIGN(auto rows,
                   conn_->query("SELECT 1 FROM firmware WHERE sha256 = $1", {std::string(sha256)}));
      if (!rows.empty()) return {};
      return remove_blob();
    }));
    return true;
  }

  Result<void> register_device(const DeviceRecord& d) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(
        conn_->query("INSERT INTO devices (id, project, chip, channel, created_at) "
                     "VALUES ($1, $2, $3, CASE WHEN $4 = '' THEN 'stable' ELSE $4 END, $5) "
                     "ON CONFLICT (id) DO UPDATE SET "
                     "project = CASE WHEN $2 = '' THEN devices.project ELSE $2 END, "
                     "chip = CASE WHEN $3 = '' THEN devices.chip ELSE $3 END, "
                     "channel = CASE WHEN $4 = '' THEN devices.channel ELSE $4 END",
                     {d.id, d.project, d.chip, d.channel, unix_now()}));
    return {};
  }

  Result<void> record_report(const DeviceReport& r, std::string_view project,
                             std::string_view chip) override {
    std::lock_guard lock(mu_);
    return in_transaction([&]() -> Result<void> {
      OTA32_TRY(conn_->query(
          "INSERT INTO devices (id, project, chip, running_version, state, last_error, last_report_at, "
          "address, "
          "created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $7) "
          "ON CONFLICT (id) DO UPDATE SET "
          "project = CASE WHEN excluded.project = '' THEN devices.project ELSE excluded.project END, "
          "chip = CASE WHEN excluded.chip = '' THEN devices.chip ELSE excluded.chip END, "
          "running_version = excluded.running_version, state = excluded.state, "
          "last_error = excluded.last_error, last_report_at = excluded.last_report_at, "
          "address = excluded.address",
          {r.device_id, std::string(project), std::string(chip), r.running_version, r.state, r.error,
           r.reported_at, r.address}));
      OTA32_TRY(conn_->query(
          "INSERT INTO device_reports (device_id, reported_at, state, running_version, error, address) "
          "VALUES ($1, $2, $3, $4, $5, $6)",
          {r.device_id, r.reported_at, r.state, r.running_version, r.error, r.address}));
      return {};
    });
  }

  Result<std::optional<DeviceRecord>> get_device(std::string_view id) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query(fmt::format("SELECT {} FROM devices WHERE id = $1", kDeviceColumns),
                                         {std::string(id)}));
    if (rows.empty()) return std::optional<DeviceRecord>();
    std::vector<DeviceRecord> one{device_from_row(rows[0])};
    OTA32_TRY(load_attributes_and_tags(one, "WHERE device_id = $1", {std::string(id)}));
    return std::optional<DeviceRecord>(std::move(one[0]));
  }

  Result<std::vector<DeviceRecord>> list_devices() override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query(fmt::format("SELECT {} FROM devices ORDER BY id", kDeviceColumns), {}));
    std::vector<DeviceRecord> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(device_from_row(r));
    OTA32_TRY(load_attributes_and_tags(out, "", {}));
    return out;
  }

  Result<bool> add_pending_device(std::string_view id, std::string_view project, std::string_view chip,
                                  std::string_view address) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query(
        "INSERT INTO devices (id, project, chip, address, created_at, last_report_at, auth_status) "
        "VALUES ($1, $2, $3, $4, $5, $5, 'pending') ON CONFLICT (id) DO NOTHING",
        {std::string(id), std::string(project), std::string(chip), std::string(address), unix_now()}));
    return conn_->changes() > 0;
  }

  Result<bool> set_device_auth_status(std::string_view id, std::string_view status) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query("UPDATE devices SET auth_status = $2 WHERE id = $1",
                           {std::string(id), std::string(status)}));
    return conn_->changes() > 0;
  }

  Result<void> issue_device_token(std::string_view id, std::string_view token_sha256) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query(
        "INSERT INTO devices (id, created_at, auth_status, token_sha256) VALUES ($1, $2, 'accepted', $3) "
        "ON CONFLICT (id) DO UPDATE SET auth_status = 'accepted', token_sha256 = excluded.token_sha256",
        {std::string(id), unix_now(), std::string(token_sha256)}));
    return {};
  }

  Result<bool> set_device_attributes(std::string_view id,
                                     const std::map<std::string, std::string>& attributes) override {
    std::lock_guard lock(mu_);
    bool found = false;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      OTA32_ASSIGN(auto rows, conn_->query("SELECT 1 FROM devices WHERE id = $1", {std::string(id)}));
      if (rows.empty()) return {};
      found = true;
      OTA32_TRY(conn_->query("DELETE FROM device_attributes WHERE device_id = $1", {std::string(id)}));
      for (const auto& [k, v] : attributes)
        OTA32_TRY(conn_->query("INSERT INTO device_attributes (device_id, key, value) VALUES ($1, $2, $3)",
                               {std::string(id), k, v}));
      return {};
    }));
    return found;
  }

  Result<bool> set_device_tags(std::string_view id, const std::vector<std::string>& tags) override {
    std::lock_guard lock(mu_);
    bool found = false;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      OTA32_ASSIGN(auto rows, conn_->query("SELECT 1 FROM devices WHERE id = $1", {std::string(id)}));
      if (rows.empty()) return {};
      found = true;
      OTA32_TRY(conn_->query("DELETE FROM device_tags WHERE device_id = $1", {std::string(id)}));
      for (const auto& t : tags)
        OTA32_TRY(
            conn_->query("INSERT INTO device_tags (device_id, tag) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                         {std::string(id), t}));
      return {};
    }));
    return found;
  }

  Result<bool> add_group(const GroupRecord& g) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(
        conn_->query("INSERT INTO device_groups (name, filter, created_at) VALUES ($1, $2, $3) "
                     "ON CONFLICT DO NOTHING",
                     {g.name, g.filter, g.created_at ? g.created_at : unix_now()}));
    return conn_->changes() > 0;
  }

  Result<std::optional<GroupRecord>> get_group(std::string_view name) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query("SELECT name, filter, created_at FROM device_groups WHERE name = $1",
                                         {std::string(name)}));
    if (rows.empty()) return std::optional<GroupRecord>();
    return std::optional<GroupRecord>(
        GroupRecord{to_str(rows[0][0]), to_str(rows[0][1]), to_i64(rows[0][2])});
  }

  Result<std::vector<GroupRecord>> list_groups() override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query("SELECT name, filter, created_at FROM device_groups ORDER BY name", {}));
    std::vector<GroupRecord> out;
    for (const auto& r : rows) out.push_back(GroupRecord{to_str(r[0]), to_str(r[1]), to_i64(r[2])});
    return out;
  }

  Result<bool> delete_group(std::string_view name) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query("DELETE FROM device_groups WHERE name = $1", {std::string(name)}));
    return conn_->changes() > 0;
  }

  Result<bool> create_rollout(RolloutRecord& o) override {
    std::lock_guard lock(mu_);
    bool created = false;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      if (conn_->dialect() == Dialect::postgresql)
        OTA32_TRY(conn_->query("LOCK TABLE rollouts IN SHARE ROW EXCLUSIVE MODE", {}));
      OTA32_ASSIGN(auto seq, conn_->query("SELECT COALESCE(MAX(seq), 0) + 1 FROM rollouts", {}));
      o.seq = to_i64(seq[0][0]);
      OTA32_TRY(conn_->query(
          fmt::format("INSERT INTO rollouts ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
                      "ON CONFLICT (id) DO NOTHING",
                      kRolloutColumns),
          {o.id, o.seq, o.firmware_sha256, o.target_version, o.group_name, o.policy_json, o.state,
           int64_t{o.stage}, o.stage_started_at, o.counted_since, o.created_at, o.created_by}));
      if (conn_->changes() == 0) return {};
      created = true;
      for (size_t k = 0; k < o.stages.size(); ++k) {
        const auto& st = o.stages[k];
        OTA32_TRY(conn_->query(
            "INSERT INTO rollout_stages (rollout_id, idx, cumulative_bp, min_soak_s, success_fraction, "
            "max_devices) VALUES ($1, $2, $3, $4, $5, $6)",
            {o.id, static_cast<int64_t>(k), int64_t{st.cumulative_bp}, st.min_soak_s,
             double_text(st.success_fraction), st.max_devices}));
      }
      return {};
    }));
    return created;
  }

  Result<std::optional<RolloutRecord>> get_rollout(std::string_view id) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query(fmt::format("SELECT {} FROM rollouts WHERE id = $1", kRolloutColumns),
                              {std::string(id)}));
    if (rows.empty()) return std::optional<RolloutRecord>();
    std::vector<RolloutRecord> one{rollout_from_row(rows[0])};
    OTA32_TRY(load_stages(one));
    return std::optional<RolloutRecord>(std::move(one[0]));
  }

  Result<std::vector<RolloutRecord>> list_rollouts() override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query(fmt::format("SELECT {} FROM rollouts ORDER BY seq", kRolloutColumns), {}));
    std::vector<RolloutRecord> out;
    for (const auto& r : rows) out.push_back(rollout_from_row(r));
    OTA32_TRY(load_stages(out));
    return out;
  }

  Result<bool> record_rollout_decision(const RolloutDecisionRecord& d, const RolloutRecord* expected,
                                       const RolloutRecord* next) override {
    std::lock_guard lock(mu_);
    bool done = false;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      if (next != nullptr) {
        const RolloutRecord& e = expected != nullptr ? *expected : *next;
        OTA32_TRY(conn_->query(
            "UPDATE rollouts SET state = $2, stage = $3, stage_started_at = $4, counted_since = $5 "
            "WHERE id = $1 AND state = $6 AND stage = $7 AND stage_started_at = $8 AND counted_since = $9",
            {next->id, next->state, int64_t{next->stage}, next->stage_started_at, next->counted_since,
             e.state, int64_t{e.stage}, e.stage_started_at, e.counted_since}));
        if (conn_->changes() == 0) return {};
      }
      OTA32_TRY(conn_->query(
          "INSERT INTO rollout_decisions (rollout_id, at, kind, actor, stage, summary, evidence) "
          "VALUES ($1, $2, $3, $4, $5, $6, $7)",
          {d.rollout_id, d.at, d.kind, d.actor, int64_t{d.stage}, d.summary, d.evidence_json}));
      done = true;
      return {};
    }));
    return done;
  }

  Result<std::vector<RolloutDecisionRecord>> rollout_decisions(std::string_view rollout_id,
                                                               int limit) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query("SELECT id, rollout_id, at, kind, actor, stage, summary, evidence "
                              "FROM rollout_decisions WHERE rollout_id = $1 ORDER BY id DESC LIMIT $2",
                              {std::string(rollout_id), int64_t{limit}}));
    std::vector<RolloutDecisionRecord> out;
    for (const auto& r : rows)
      out.push_back(RolloutDecisionRecord{to_i64(r[0]), to_str(r[1]), to_i64(r[2]), to_str(r[3]),
                                          to_str(r[4]), static_cast<uint32_t>(to_i64(r[5])), to_str(r[6]),
                                          to_str(r[7])});
    return out;
  }

  Result<std::optional<RolloutDeviceRecord>> get_rollout_device(std::string_view rollout_id,
                                                                std::string_view device_id) override {
    std::lock_guard lock(mu_);
    return read_rollout_device(rollout_id, device_id);
  }

  Result<std::vector<RolloutDeviceRecord>> list_rollout_devices(std::string_view rollout_id) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query(fmt::format("SELECT {} FROM rollout_devices WHERE rollout_id = $1 "
                                                     "ORDER BY device_id",
                                                     kRolloutDeviceColumns),
                                         {std::string(rollout_id)}));
    std::vector<RolloutDeviceRecord> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(rollout_device_from_row(r));
    return out;
  }

  Result<std::vector<RolloutStateCount>> rollout_state_counts(std::string_view rollout_id) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query("SELECT stage, state, COUNT(*) FROM rollout_devices WHERE rollout_id = $1 "
                              "GROUP BY stage, state ORDER BY stage, state",
                              {std::string(rollout_id)}));
    std::vector<RolloutStateCount> out;
    for (const auto& r : rows)
      out.push_back(RolloutStateCount{static_cast<uint32_t>(to_i64(r[0])), to_str(r[1]), to_i64(r[2])});
    return out;
  }

  Result<bool> write_rollout_device(const DeviceActionWrite& w) override {
    std::lock_guard lock(mu_);
    bool written = false;
    const auto& a = w.action;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      // Serialises the writers of one rollout (PostgreSQL; SQLite's BEGIN IMMEDIATE already does), so
      // that the cap counts below are exact.
      if (conn_->dialect() == Dialect::postgresql)
        OTA32_TRY(conn_->query("SELECT 1 FROM rollouts WHERE id = $1 FOR UPDATE", {a.rollout_id}));
      OTA32_ASSIGN(auto current, read_rollout_device(a.rollout_id, a.device_id));
      if (current.has_value() != w.expected.has_value()) return {};
      if (current && (current->state != w.expected->state || current->attempts != w.expected->attempts ||
                      current->updated_at != w.expected->updated_at))
        return {};
      const bool was_in_flight = current && (current->state == "offered" || current->state == "downloading");
      const bool in_flight = a.state == "offered" || a.state == "downloading";
      if (in_flight && !was_in_flight && w.max_in_flight >= 0) {
        OTA32_ASSIGN(auto n, conn_->query("SELECT COUNT(*) FROM rollout_devices WHERE rollout_id = $1 AND "
                                          "state IN ('offered', 'downloading')",
                                          {a.rollout_id}));
        if (to_i64(n[0][0]) >= w.max_in_flight) return {};
      }
      if (!current && w.max_stage_devices >= 0) {
        OTA32_ASSIGN(auto n, conn_->query("SELECT COUNT(*) FROM rollout_devices WHERE rollout_id = $1 AND "
                                          "stage = $2 AND state <> 'canceled'",
                                          {a.rollout_id, int64_t{a.stage}}));
        if (to_i64(n[0][0]) >= w.max_stage_devices) return {};
      }
      OTA32_TRY(conn_->query(
          fmt::format(
              "INSERT INTO rollout_devices ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) "
              "ON CONFLICT (rollout_id, device_id) DO UPDATE SET stage = excluded.stage, "
              "state = excluded.state, attempts = excluded.attempts, offered_at = excluded.offered_at, "
              "updated_at = excluded.updated_at, retry_at = excluded.retry_at, "
              "reason = excluded.reason, from_version = excluded.from_version",
              kRolloutDeviceColumns),
          {a.rollout_id, a.device_id, int64_t{a.stage}, a.state, int64_t{a.attempts}, a.offered_at,
           a.updated_at, a.retry_at, a.reason, a.from_version}));
      if (w.outcome) {
        const auto& o = *w.outcome;
        OTA32_TRY(conn_->query(
            "INSERT INTO rollout_outcomes (rollout_id, device_id, stage, at, success, reason) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            {o.rollout_id, o.device_id, int64_t{o.stage}, o.at, int64_t{o.success ? 1 : 0}, o.reason}));
      }
      written = true;
      return {};
    }));
    return written;
  }

  Result<std::vector<RolloutOutcomeRecord>> rollout_outcomes(std::string_view rollout_id,
                                                             int64_t since) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query("SELECT rollout_id, device_id, stage, at, success, reason FROM "
                                         "rollout_outcomes WHERE rollout_id = $1 AND at >= $2 ORDER BY id",
                                         {std::string(rollout_id), since}));
    std::vector<RolloutOutcomeRecord> out;
    out.reserve(rows.size());
    for (const auto& r : rows)
      out.push_back(RolloutOutcomeRecord{to_str(r[0]), to_str(r[1]), static_cast<uint32_t>(to_i64(r[2])),
                                         to_i64(r[3]), to_i64(r[4]) != 0, to_str(r[5])});
    return out;
  }

  Result<std::vector<DeviceReport>> device_reports(std::string_view id, int limit) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query("SELECT device_id, reported_at, state, running_version, error, address "
                              "FROM device_reports WHERE device_id = $1 ORDER BY id DESC LIMIT $2",
                              {std::string(id), int64_t{limit}}));
    std::vector<DeviceReport> out;
    out.reserve(rows.size());
    for (const auto& r : rows)
      out.push_back(
          DeviceReport{to_str(r[0]), to_i64(r[1]), to_str(r[2]), to_str(r[3]), to_str(r[4]), to_str(r[5])});
    return out;
  }

  Result<bool> delete_device(std::string_view id) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query("DELETE FROM devices WHERE id = $1", {std::string(id)}));
    return conn_->changes() > 0;
  }

  Result<int64_t> device_count() override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query("SELECT COUNT(*) FROM devices", {}));
    return rows.empty() ? int64_t{0} : to_i64(rows[0][0]);
  }

  Result<int64_t> prune_reports(std::string_view device_id, const ReportRetention& keep,
                                int64_t now) override {
    std::lock_guard lock(mu_);
    int64_t removed = 0;
    OTA32_TRY(in_transaction([&]() -> Result<void> {
      if (keep.max_per_device > 0) {
        // Everything at or below the id of the first report past the newest N.
        OTA32_TRY(conn_->query(
            "DELETE FROM device_reports WHERE device_id = $1 AND id <= (SELECT id FROM device_reports "
            "WHERE device_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
            {std::string(device_id), keep.max_per_device}));
        removed += conn_->changes();
      }
      if (keep.max_age_seconds > 0) {
        OTA32_TRY(
            conn_->query("DELETE FROM device_reports WHERE reported_at < $1", {now - keep.max_age_seconds}));
        removed += conn_->changes();
      }
      return {};
    }));
    return removed;
  }

  Result<bool> add_admin_token(std::string_view token_sha256, std::string_view label) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query(
        "INSERT INTO admin_tokens (sha256, label, created_at, scope) VALUES ($1, $2, $3, 'admin') "
        "ON CONFLICT DO NOTHING",
        {std::string(token_sha256), std::string(label), unix_now()}));
    return conn_->changes() > 0;
  }

  Result<bool> add_gateway_token(std::string_view token_sha256, std::string_view label) override {
    std::lock_guard lock(mu_);
    OTA32_TRY(conn_->query(
        "INSERT INTO admin_tokens (sha256, label, created_at, scope) VALUES ($1, $2, $3, 'gateway') "
        "ON CONFLICT DO NOTHING",
        {std::string(token_sha256), std::string(label), unix_now()}));
    return conn_->changes() > 0;
  }

  Result<bool> gateway_token_exists(std::string_view token_sha256) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query("SELECT 1 FROM admin_tokens WHERE sha256 = $1 AND scope = 'gateway'",
                                         {std::string(token_sha256)}));
    return !rows.empty();
  }

  Result<bool> admin_token_exists(std::string_view token_sha256) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query("SELECT 1 FROM admin_tokens WHERE sha256 = $1 AND scope = 'admin'",
                                         {std::string(token_sha256)}));
    return !rows.empty();
  }

  Result<int64_t> admin_token_count() override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query("SELECT COUNT(*) FROM admin_tokens WHERE scope = 'admin'", {}));
    return rows.empty() ? int64_t{0} : to_i64(rows[0][0]);
  }

 private:
  // Fills attributes and tags of `devices` (sorted by id) from one query each; `where` filters device_id.
  Result<void> load_attributes_and_tags(std::vector<DeviceRecord>& devices, const std::string& where,
                                        const std::vector<SqlValue>& params) {
    if (devices.empty()) return {};
    std::map<std::string_view, DeviceRecord*> by_id;
    for (auto& d : devices) by_id[d.id] = &d;
    OTA32_ASSIGN(auto attrs, conn_->query("SELECT device_id, key, value FROM device_attributes " + where +
                                              " ORDER BY device_id, key",
                                          params));
    for (const auto& r : attrs)
      if (auto it = by_id.find(to_str(r[0])); it != by_id.end())
        it->second->attributes[to_str(r[1])] = to_str(r[2]);
    OTA32_ASSIGN(
        auto tags,
        conn_->query("SELECT device_id, tag FROM device_tags " + where + " ORDER BY device_id, tag", params));
    for (const auto& r : tags)
      if (auto it = by_id.find(to_str(r[0])); it != by_id.end()) it->second->tags.push_back(to_str(r[1]));
    return {};
  }

  Result<void> load_stages(std::vector<RolloutRecord>& rollouts) {
    for (auto& o : rollouts) {
      OTA32_ASSIGN(auto rows,
                   conn_->query("SELECT cumulative_bp, min_soak_s, success_fraction, max_devices FROM "
                                "rollout_stages WHERE rollout_id = $1 ORDER BY idx",
                                {o.id}));
      o.stages.clear();
      for (const auto& r : rows)
        o.stages.push_back(RolloutStageRecord{static_cast<uint32_t>(to_i64(r[0])), to_i64(r[1]),
                                              to_double(r[2]), to_i64(r[3])});
    }
    return {};
  }

  Result<std::optional<RolloutDeviceRecord>> read_rollout_device(std::string_view rollout_id,
                                                                 std::string_view device_id) {
    OTA32_ASSIGN(
        auto rows,
        conn_->query(fmt::format("SELECT {} FROM rollout_devices WHERE rollout_id = $1 AND device_id = $2",
                                 kRolloutDeviceColumns),
                     {std::string(rollout_id), std::string(device_id)}));
    if (rows.empty()) return std::optional<RolloutDeviceRecord>();
    return std::optional<RolloutDeviceRecord>(rollout_device_from_row(rows[0]));
  }

  Result<int> current_version() {
    OTA32_ASSIGN(auto rows, conn_->query("SELECT MAX(version) FROM schema_version", {}));
    return rows.empty() ? 0 : static_cast<int>(to_i64(rows[0][0]));
  }

  Result<void> insert_firmware(const FirmwareRecord& f) {
    // upload_seq: one more than any before. Writes are serialised (SQLite: BEGIN IMMEDIATE); two servers
    // inserting at the same instant on one PostgreSQL may draw the same number: such uploads have no order.
    OTA32_TRY(
        conn_->query(fmt::format("INSERT INTO firmware ({}, upload_seq) VALUES ($1, $2, $3, $4, $5, $6, "
                                 "$7, $8, $9, $10, $11, $12, $13, $14, $15, "
                                 "(SELECT COALESCE(MAX(upload_seq), 0) + 1 FROM firmware)) "
                                 "ON CONFLICT (sha256) DO NOTHING",
                                 kFirmwareColumns),
                     {f.sha256, f.project, f.version, f.chip, f.channel, int64_t{f.secure_version},
                      static_cast<int64_t>(f.size), f.md5, f.image_hash, f.idf_version, f.compile_date,
                      f.compile_time, f.elf_sha256, f.file_name, f.uploaded_at}));
    return {};
  }

  // The lock of one firmware file, held until the end of the current transaction (see
  // add_firmware_with_blob). PostgreSQL: an advisory lock keyed (kBlobLockClass, first 32 bits of the
  // SHA-256); a rare collision only serialises two unrelated uploads. SQLite: BEGIN IMMEDIATE already holds
  // the database's write lock.
  Result<void> lock_blob(std::string_view sha256) {
    if (conn_->dialect() != Dialect::postgresql) return {};
    uint32_t key = 0;
    for (size_t i = 0; i < 8 && i < sha256.size(); ++i) {
      char c = sha256[i];
      key = key << 4 | static_cast<uint32_t>(c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10);
    }
    constexpr int64_t kBlobLockClass = 0x07a32b;
    OTA32_TRY(conn_->query("SELECT pg_advisory_xact_lock($1::int, $2::int)",
                           {kBlobLockClass, static_cast<int64_t>(static_cast<int32_t>(key))}));
    return {};
  }

  // Runs fn inside a write transaction; rolls back when it fails. SQLite needs BEGIN IMMEDIATE so that
  // two processes never both hold a read lock and then deadlock upgrading it (the busy timeout applies).
  template <class Fn>
  Result<void> in_transaction(Fn&& fn) {
    OTA32_TRY(conn_->exec_script(conn_->dialect() == Dialect::sqlite ? "BEGIN IMMEDIATE" : "BEGIN"));
    auto r = fn();
    if (!r) {
      (void)conn_->exec_script("ROLLBACK");
      return r;
    }
    return conn_->exec_script("COMMIT");
  }

  std::mutex mu_;
  std::unique_ptr<SqlConnection> conn_;
};

}  // namespace
}  // namespace store_detail

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string default_store_url(const std::filesystem::path& data_dir) {
  return "sqlite://" + std::filesystem::absolute(data_dir / "ota32.db").lexically_normal().string();
}

Result<std::unique_ptr<Store>> open_store(std::string_view url) {
  using namespace store_detail;
  std::unique_ptr<SqlConnection> conn;
  if (url.starts_with("postgresql://") || url.starts_with("postgres://")) {
    OTA32_ASSIGN(conn, open_postgresql(std::string(url)));
  } else {
    std::string_view path = url;
    if (url.starts_with("sqlite://")) {
      path = url.substr(9);
    } else if (url.find("://") != std::string_view::npos) {
      return Error(
          ErrorCode::invalid_argument,
          fmt::format("--store {}: unknown store URL scheme (use sqlite:///path or postgresql://...)", url));
    }
    if (path.empty())
      return Error(ErrorCode::invalid_argument, fmt::format("--store {}: no database path", url));
    OTA32_ASSIGN(conn, open_sqlite(std::string(path)));
  }
  auto store = std::make_unique<SqlStore>(std::move(conn));
  if (auto m = store->migrate(); !m) return m.error().with_context("store migration");
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace ota32
