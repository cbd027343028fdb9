// A minimal driver interface shared by the SQLite and PostgreSQL stores: the store's SQL is written once,
// with PostgreSQL-style positional parameters ($1, $2, ...), and each driver runs it. Values travel as text
// (both engines convert), so rows are vectors of optional strings. Internal to src/store.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/result.h"

namespace ota32::store_detail {

using SqlValue = std::variant<std::nullptr_t, int64_t, std::string>;
using SqlRow = std::vector<std::optional<std::string>>;

enum class Dialect { sqlite, postgresql };

class SqlConnection {
 public:
  virtual ~SqlConnection() = default;
  virtual Dialect dialect() const = 0;
  // Runs one statement with $N parameters; returns the result rows (empty for statements without).
  virtual Result<std::vector<SqlRow>> query(std::string_view sql, const std::vector<SqlValue>& params) = 0;
  // Number of rows the last query() changed (INSERT / UPDATE / DELETE).
  virtual int64_t changes() const = 0;
  // Runs a script of several statements without parameters (migrations).
  virtual Result<void> exec_script(std::string_view sql) = 0;
};

// `path` is the database file; its directory must exist.
Result<std::unique_ptr<SqlConnection>> open_sqlite(const std::string& path);
// `conninfo` is a libpq connection URI or keyword string.
Result<std::unique_ptr<SqlConnection>> open_postgresql(const std::string& conninfo);

}  // namespace ota32::store_detail
