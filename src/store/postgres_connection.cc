// PostgreSQL driver over libpq: text-format parameters and results. A statement that fails because the
// connection dropped is reported as `unavailable` (never silently re-run); the next statement reconnects.
#include <fmt/format.h>
#include <libpq-fe.h>

#include "store/sql_connection.h"

namespace ota32::store_detail {
namespace {

// Connection URIs may carry a password: never echo them.
std::string redact(const std::string& conninfo) {
  auto at = conninfo.find('@');
  auto scheme = conninfo.find("://");
  if (at == std::string::npos || scheme == std::string::npos || at < scheme) return conninfo;
  return conninfo.substr(0, scheme + 3) + "***" + conninfo.substr(at);
}

std::string one_line(const char* msg) {
  std::string s = msg != nullptr ? msg : "";
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (auto& c : s)
    if (c == '\n') c = ' ';
  return s;
}

class PgConnection final : public SqlConnection {
 public:
  PgConnection(PGconn* conn, std::string name) : conn_(conn), name_(std::move(name)) {}
  ~PgConnection() override { PQfinish(conn_); }

  Dialect dialect() const override { return Dialect::postgresql; }
  int64_t changes() const override { return changes_; }

  Result<std::vector<SqlRow>> query(std::string_view sql, const std::vector<SqlValue>& params) override {
    OTA32_TRY(ensure_connected());
    std::string text(sql);
    std::vector<std::string> storage(params.size());
    std::vector<const char*> values(params.size(), nullptr);
    for (size_t i = 0; i < params.size(); ++i) {
      if (const auto* v = std::get_if<int64_t>(&params[i])) {
        storage[i] = std::to_string(*v);
        values[i] = storage[i].c_str();
      } else if (const auto* s = std::get_if<std::string>(&params[i])) {
        storage[i] = *s;
        values[i] = storage[i].c_str();
      }
    }
    PGresult* res = PQexecParams(conn_, text.c_str(), static_cast<int>(params.size()), nullptr, values.data(),
                                 nullptr, nullptr, 0);
    struct Clear {
      PGresult* r;
      ~Clear() { PQclear(r); }
    } clear{res};
    auto status = PQresultStatus(res);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) return error("query", res);
    std::vector<SqlRow> rows;
    int nrows = PQntuples(res), ncols = PQnfields(res);
    rows.reserve(static_cast<size_t>(nrows));
    for (int r = 0; r < nrows; ++r) {
      SqlRow row(static_cast<size_t>(ncols));
      for (int c = 0; c < ncols; ++c) {
        if (PQgetisnull(res, r, c)) continue;
        row[static_cast<size_t>(c)] =
            std::string(PQgetvalue(res, r, c), static_cast<size_t>(PQgetlength(res, r, c)));
      }
      rows.push_back(std::move(row));
    }
    const char* affected = PQcmdTuples(res);
    changes_ = (affected != nullptr && *affected != '\0') ? std::stoll(affected) : 0;
    return rows;
  }

  Result<void> exec_script(std::string_view sql) override {
    OTA32_TRY(ensure_connected());
    std::string text(sql);
    PGresult* res = PQexec(conn_, text.c_str());
    struct Clear {
      PGresult* r;
      ~Clear() { PQclear(r); }
    } clear{res};
    auto status = PQresultStatus(res);
    if (status != PGRES_TUPLES_OK && status != PGRES_COMMAND_OK) return error("script", res);
    return {};
  }

 private:
  Result<void> ensure_connected() {
    if (PQstatus(conn_) == CONNECTION_OK) return {};
    PQreset(conn_);
    if (PQstatus(conn_) != CONNECTION_OK)
      return Error(ErrorCode::unavailable, fmt::format("postgresql store {}: connection lost: {}", name_,
                                                       one_line(PQerrorMessage(conn_))));
    return {};
  }

  Error error(std::string_view what, const PGresult* res) const {
    ErrorCode ec = ErrorCode::internal;
    if (PQstatus(conn_) != CONNECTION_OK) ec = ErrorCode::unavailable;
    const char* state = res != nullptr ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : nullptr;
    // 23505 unique_violation, 40001 serialization_failure, 40P01 deadlock_detected.
    if (state != nullptr && std::string_view(state) == "23505") ec = ErrorCode::already_exists;
    if (state != nullptr && (std::string_view(state) == "40001" || std::string_view(state) == "40P01"))
      ec = ErrorCode::unavailable;
    return Error(ec,
                 fmt::format("postgresql store {}: {} failed: {}", name_, what,
                             one_line(res != nullptr ? PQresultErrorMessage(res) : PQerrorMessage(conn_))));
  }

  PGconn* conn_;
  std::string name_;
  int64_t changes_ = 0;
};

}  // namespace

Result<std::unique_ptr<SqlConnection>> open_postgresql(const std::string& conninfo) {
  std::string name = redact(conninfo);
  PGconn* conn = PQconnectdb(conninfo.c_str());
  if (conn == nullptr)
    return Error(ErrorCode::internal, fmt::format("postgresql store {}: out of memory", name));
  if (PQstatus(conn) != CONNECTION_OK) {
    std::string msg = one_line(PQerrorMessage(conn));
    PQfinish(conn);
    return Error(ErrorCode::unavailable, fmt::format("postgresql store {}: cannot connect: {}", name, msg));
  }
  auto c = std::make_unique<PgConnection>(conn, name);
  // Keep server notices (e.g. "relation already exists, skipping") off stderr.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  return std::unique_ptr<SqlConnection>(std::move(c));
}

}  // namespace ota32::store_detail
