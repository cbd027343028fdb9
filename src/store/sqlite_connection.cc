// SQLite driver: WAL journal (readers never block the writer), a busy timeout so that several processes
// sharing the file wait for each other instead of failing, foreign keys on.
#include <fcntl.h>
#include <fmt/format.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "store/sql_connection.h"

namespace ota32::store_detail {
namespace {

// SQLite numbers "?NNN" parameters exactly; "$N" would be a *named* parameter numbered by first appearance.
std::string to_sqlite_params(std::string_view sql) {
  std::string out;
  out.reserve(sql.size());
  for (size_t i = 0; i < sql.size(); ++i) {
    if (sql[i] == '$' && i + 1 < sql.size() && sql[i + 1] >= '0' && sql[i + 1] <= '9') {
      out += '?';
    } else {
      out += sql[i];
    }
  }
  return out;
}

class SqliteConnection final : public SqlConnection {
 public:
  SqliteConnection(sqlite3* db, std::string path) : db_(db), path_(std::move(path)) {}
  ~SqliteConnection() override { sqlite3_close_v2(db_); }

  Dialect dialect() const override { return Dialect::sqlite; }
  int64_t changes() const override { return changes_; }

  Result<std::vector<SqlRow>> query(std::string_view sql, const std::vector<SqlValue>& params) override {
    std::string text = to_sqlite_params(sql);
    sqlite3_stmt* stmt = nullptr;
    if (sqlite3_prepare_v2(db_, text.c_str(), static_cast<int>(text.size()), &stmt, nullptr) != SQLITE_OK)
      return error("prepare");
    struct Finalize {
      sqlite3_stmt* s;
      ~Finalize() { sqlite3_finalize(s); }
    } finalize{stmt};
    for (size_t i = 0; i < params.size(); ++i) {
      int idx = static_cast<int>(i + 1);
      int rc = SQLITE_OK;
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        rc = sqlite3_bind_int64(stmt, idx, *v);
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        rc = sqlite3_bind_text(stmt, idx, s->data(), static_cast<int>(s->size()), SQLITE_TRANSIENT);
      } else {
        rc = sqlite3_bind_null(stmt, idx);
      }
      if (rc != SQLITE_OK) return error("bind");
    }
    std::vector<SqlRow> rows;
    for (;;) {
      int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc != SQLITE_ROW) return error("step");
      int n = sqlite3_column_count(stmt);
      SqlRow row(static_cast<size_t>(n));
      for (int c = 0; c < n; ++c) {
        if (sqlite3_column_type(stmt, c) == SQLITE_NULL) continue;
        const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
        row[static_cast<size_t>(c)] = std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt, c)));
      }
      rows.push_back(std::move(row));
    }
    changes_ = sqlite3_changes64(db_);
    return rows;
  }

  Result<void> exec_script(std::string_view sql) override {
    std::string text(sql);
    if (sqlite3_exec(db_, text.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) return error("exec");
    return {};
  }

 private:
  Error error(std::string_view what) const {
    int code = sqlite3_errcode(db_);
    ErrorCode ec = ErrorCode::internal;
    if (code == SQLITE_BUSY || code == SQLITE_LOCKED) ec = ErrorCode::unavailable;
    if (code == SQLITE_IOERR || code == SQLITE_FULL || code == SQLITE_CANTOPEN || code == SQLITE_READONLY)
      ec = ErrorCode::io_error;
    if (code == SQLITE_CORRUPT || code == SQLITE_NOTADB) ec = ErrorCode::corrupt;
    return Error(ec, fmt::format("sqlite store {}: {} failed: {}", path_, what, sqlite3_errmsg(db_)));
  }

  sqlite3* db_;
  std::string path_;
  int64_t changes_ = 0;
};

}  // namespace

Result<std::unique_ptr<SqlConnection>> open_sqlite(const std::string& path) {
  // The database holds token hashes and device data: 0600 whatever the umask. SQLite gives its -wal and
  // -shm files the database file's mode, so the file is made (or tightened) before SQLite opens it; files
  // left by an older version are tightened too.
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0)
    return Error(ErrorCode::io_error,
                 fmt::format("sqlite store {}: cannot open: {}", path, std::strerror(errno)));
  bool private_mode = ::fchmod(fd, 0600) == 0;
  int err = errno;
  ::close(fd);
  if (!private_mode)
    return Error(ErrorCode::io_error,
                 fmt::format("sqlite store {}: cannot chmod 0600: {}", path, std::strerror(err)));
  for (const char* suffix : {"-wal", "-shm", "-journal"}) ::chmod((path + suffix).c_str(), 0600);
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(path.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);
    return Error(ErrorCode::io_error, fmt::format("sqlite store {}: cannot open: {}", path, msg));
  }
  auto conn = std::make_unique<SqliteConnection>(db, path);
  sqlite3_busy_timeout(db, 10000);
  // journal_mode returns a row; run it through query().
  OTA32_TRY(conn->query("PRAGMA journal_mode=WAL", {}));
  OTA32_TRY(conn->exec_script("PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL;"));
  return std::unique_ptr<SqlConnection>(std::move(conn));
}

}  // namespace ota32::store_detail
