// A real PostgreSQL 15 server for tests (Debian's postgresql package): initdb in a private temporary
// directory, listening on 127.0.0.1 (a free port) and a private socket directory, trust authentication for
// the user `ota32`. Used by store_pg_test (one server per process, a fresh database per test) and by the
// multi-server e2e test. Tests skip with start()'s message when the binaries are absent.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "core/result.h"
#include "test_support.h"

namespace ota32::testing {

class PostgresTestServer {
 public:
  ~PostgresTestServer() { stop(); }

  // Returns an empty string on success, else why the server could not be started.
  std::string start();
  void stop();
  bool started() const { return started_; }

  // postgresql://ota32@127.0.0.1:<port>/<db>
  std::string url(std::string_view db) const;
  // A new empty database; its URL.
  Result<std::string> fresh_database();

 private:
  std::unique_ptr<TempDir> dir_;
  int port_ = 0;
  bool started_ = false;
  std::atomic<int> counter_{0};
};

// The test binary's one server: a gtest global environment starts it before the first test and stops it
// after the last (one server per process, a fresh database per test). Empty = running, else why it could
// not be started; tests skip with that reason.
const std::string& shared_postgres_skip_reason();
PostgresTestServer& shared_postgres();  // only when the skip reason is empty

}  // namespace ota32::testing
