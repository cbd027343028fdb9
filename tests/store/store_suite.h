// The store test suite, compiled into one executable per backend (store_test: SQLite, store_pg_test: a real
// PostgreSQL server). Each executable defines test_store_url() for its backend.
#pragma once

#include <string>

#include "core/result.h"
#include "test_support.h"

namespace ota32::testing {

// A URL of a fresh, empty store for one test (tmp is that test's directory). An error skips the test with
// its message (e.g. PostgreSQL binaries absent).
Result<std::string> test_store_url(const TempDir& tmp);

}  // namespace ota32::testing
