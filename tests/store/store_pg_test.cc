// PostgreSQL backend of the store suite: a real PostgreSQL server (postgres_test_server.h) started once for
// this process, a fresh database for every test. Skips with a message when the binaries are absent.
#include <gtest/gtest.h>

#include "store/postgres_test_server.h"
#include "store_suite.h"

namespace ota32::testing {

Result<std::string> test_store_url(const TempDir&) {
  if (!shared_postgres_skip_reason().empty())
    return Error(ErrorCode::unavailable, "PostgreSQL not available: " + shared_postgres_skip_reason());
  return shared_postgres().fresh_database();
}

}  // namespace ota32::testing
