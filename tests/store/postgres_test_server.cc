#include "store/postgres_test_server.h"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>

namespace ota32::testing {
namespace {

const std::filesystem::path kPgBin = "/usr/lib/postgresql/15/bin";

// initdb refuses to run as root: then every server command runs as the `postgres` system user.
std::string as_server_user(const std::string& cmd) {
  if (::geteuid() != 0) return cmd;
  return "runuser -u postgres -- " + cmd;
}

}  // namespace

std::string PostgresTestServer::start() {
  if (!std::filesystem::exists(kPgBin / "initdb") || !std::filesystem::exists(kPgBin / "pg_ctl"))
    return "PostgreSQL 15 binaries not found in " + kPgBin.string() + " (Debian package postgresql-15)";
  dir_ = std::make_unique<TempDir>();
  if (::geteuid() == 0) {
    passwd* pw = ::getpwnam("postgres");
    if (pw == nullptr) return "running as root and there is no 'postgres' user to run initdb";
    if (::chown(dir_->path().c_str(), pw->pw_uid, pw->pw_gid) != 0) return "cannot chown the temp dir";
  }
  auto data = (dir_->path() / "data").string();
  auto log = (dir_->path() / "server.log").string();
  std::string initdb =
      as_server_user(fmt::format("{}/initdb -D {} -A trust -U ota32 -E UTF8 --no-sync >{}/initdb.log 2>&1",
                                 kPgBin.string(), data, dir_->path().string()));
  if (std::system(initdb.c_str()) != 0) return "initdb failed (see its log)";
  // A port picked free may be taken before the server binds it: try a few.
  for (int attempt = 0; attempt < 5; ++attempt) {
    port_ = free_port();
    std::string start = as_server_user(
        fmt::format("{}/pg_ctl -D {} -l {} -w -t 30 -o \"-k {} -h 127.0.0.1 -p {} -F\" start >/dev/null 2>&1",
                    kPgBin.string(), data, log, dir_->path().string(), port_));
    if (std::system(start.c_str()) == 0) {
      started_ = true;
      return "";
    }
  }
  return "pg_ctl start failed 5 times (see " + log + ")";
}

void PostgresTestServer::stop() {
  if (!started_) return;
  std::string cmd = as_server_user(fmt::format("{}/pg_ctl -D {} -m immediate -w stop >/dev/null 2>&1",
                                               kPgBin.string(), (dir_->path() / "data").string()));
  (void)std::system(cmd.c_str());
  started_ = false;
}

std::string PostgresTestServer::url(std::string_view db) const {
  return fmt::format("postgresql://ota32@127.0.0.1:{}/{}", port_, db);
}

Result<std::string> PostgresTestServer::fresh_database() {
  std::string name = fmt::format("t{}", ++counter_);
  PGconn* c = PQconnectdb(url("postgres").c_str());
  std::string err;
  if (PQstatus(c) != CONNECTION_OK)
    err = PQerrorMessage(c);
  else {
    PGresult* r = PQexec(c, ("CREATE DATABASE " + name).c_str());
    if (PQresultStatus(r) != PGRES_COMMAND_OK) err = PQresultErrorMessage(r);
    PQclear(r);
  }
  PQfinish(c);
  if (!err.empty()) return Error(ErrorCode::unavailable, "cannot create a test database: " + err);
  return url(name);
}

namespace {

class PostgresEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    server = std::make_unique<PostgresTestServer>();
    skip_reason = server->start();
  }
  void TearDown() override { server.reset(); }

  std::unique_ptr<PostgresTestServer> server;
  std::string skip_reason = "the test environment did not start";
};

PostgresEnvironment* const g_env =
    static_cast<PostgresEnvironment*>(::testing::AddGlobalTestEnvironment(new PostgresEnvironment));

}  // namespace

const std::string& shared_postgres_skip_reason() { return g_env->skip_reason; }

PostgresTestServer& shared_postgres() { return *g_env->server; }

}  // namespace ota32::testing
