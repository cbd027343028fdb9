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
    "id, project, chip, channel, running_version, state, last_error, last_report_at, address, created_at";

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
  return d;
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
    return std::optional<DeviceRecord>(device_from_row(rows[0]));
  }

  Result<std::vector<DeviceRecord>> list_devices() override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query(fmt::format("SELECT {} FROM devices ORDER BY id", kDeviceColumns), {}));
    std::vector<DeviceRecord> out;
    out.reserve(rows.size());
    for (const auto& r : rows) out.push_back(device_from_row(r));
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
    OTA32_TRY(
        conn_->query("INSERT INTO admin_tokens (sha256, label, created_at) VALUES ($1, $2, $3) "
                     "ON CONFLICT DO NOTHING",
                     {std::string(token_sha256), std::string(label), unix_now()}));
    return conn_->changes() > 0;
  }

  Result<bool> admin_token_exists(std::string_view token_sha256) override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows,
                 conn_->query("SELECT 1 FROM admin_tokens WHERE sha256 = $1", {std::string(token_sha256)}));
    return !rows.empty();
  }

  Result<int64_t> admin_token_count() override {
    std::lock_guard lock(mu_);
    OTA32_ASSIGN(auto rows, conn_->query("SELECT COUNT(*) FROM admin_tokens", {}));
    return rows.empty() ? int64_t{0} : to_i64(rows[0][0]);
  }

 private:
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
