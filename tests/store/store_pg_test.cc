// PostgreSQL backend of the store suite: starts a real PostgreSQL server (postgres_test_server.h) once for
// this process and gives every test a fresh database. Skips with a message when the binaries are absent.
#include <gtest/gtest.h>

#include "store/postgres_test_server.h"
#include "store_suite.h"

namespace ota32::testing {
namespace {

PostgresTestServer* g_server = nullptr;
std::string g_skip_reason;

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    g_server = new PostgresTestServer();
    g_skip_reason = g_server->start();
  }
  void TearDown() override {
    g_server->stop();
    delete g_server;
    g_server = nullptr;
  }
};

const auto* const g_env = ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

}  // namespace

Result<std::string> test_store_url(const TempDir&) {
  if (!g_skip_reason.empty())
    return Error(ErrorCode::unavailable, "PostgreSQL not available: " + g_skip_reason);
  return g_server->fresh_database();
}

}  // namespace ota32::testing
