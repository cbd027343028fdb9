// SQLite backend of the store suite, plus the parts of src/store that need no database.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <string>

#include "core/file_io.h"
#include "core/hash.h"
#include "store/blob_store.h"
#include "store/store.h"
#include "store/version.h"
#include "store_suite.h"

namespace ota32 {
namespace testing {
Result<std::string> test_store_url(const TempDir& tmp) { return "sqlite://" + (tmp / "ota32.db").string(); }
}  // namespace testing

namespace {

// Runs sql on the SQLite database at path behind the store's back (to fake an older or newer store); the
// error text when it fails.
std::string exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  std::string err;
  if (sqlite3_open(path.c_str(), &db) != SQLITE_OK ||
      sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr))
    err = sqlite3_errmsg(db);
  sqlite3_close(db);
  return err;
}

TEST(OpenStore, DefaultUrlIsTheDataDirsDatabase) {
  testing::TempDir tmp;
  auto url = default_store_url(tmp.path());
  EXPECT_EQ(url, "sqlite://" + (tmp.path() / "ota32.db").string());
  auto s = open_store(url);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ((*s)->kind(), "sqlite");
  EXPECT_TRUE(std::filesystem::exists(tmp / "ota32.db"));
}

TEST(OpenStore, PlainPathMeansSqlite) {
  testing::TempDir tmp;
  auto s = open_store((tmp / "x.db").string());
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ((*s)->kind(), "sqlite");
}

TEST(OpenStore, RefusesUnknownSchemeAndEmptyPath) {
  auto s = open_store("mysql://localhost/x");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(s.error().message().find("mysql://localhost/x"), std::string::npos);
  auto e = open_store("sqlite://");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code(), ErrorCode::invalid_argument);
}

TEST(OpenStore, MissingDirectoryIsAnIoError) {
  testing::TempDir tmp;
  auto s = open_store("sqlite://" + (tmp / "no/such/dir/x.db").string());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::io_error);
}

TEST(OpenStore, NotADatabaseIsReported) {
  testing::TempDir tmp;
  ASSERT_TRUE(write_file_atomic(tmp / "junk.db", std::string(4096, 'x')));
  auto s = open_store("sqlite://" + (tmp / "junk.db").string());
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("junk.db"), std::string::npos) << s.error().message();
}

TEST(OpenStore, UnreachablePostgresqlIsUnavailableAndHidesThePassword) {
  auto s = open_store("postgresql://ota32:secret@127.0.0.1:1/ota32?connect_timeout=2");
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::unavailable);
  EXPECT_EQ(s.error().message().find("secret"), std::string::npos) << s.error().message();
}

TEST(OpenStore, RefusesASchemaNewerThanItKnows) {
  testing::TempDir tmp;
  auto path = (tmp / "ota32.db").string();
  ASSERT_TRUE(open_store("sqlite://" + path));
  ASSERT_EQ(exec_sql(path, "UPDATE schema_version SET version = 99"), "");
  auto s = open_store("sqlite://" + path);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().code(), ErrorCode::unsupported);
  EXPECT_NE(s.error().message().find("99"), std::string::npos) << s.error().message();
}

// A store made by an ota32 with schema 1 (no upload order): it migrates in place, keeps its rows and their
// former order (ties by SHA-256), and uploads made after the migration come first among their second.
TEST(OpenStore, MigratesASchemaOneStoreKeepingItsFirmware) {
  testing::TempDir tmp;
  auto path = (tmp / "ota32.db").string();
  ASSERT_TRUE(open_store("sqlite://" + path));
  const std::string to_v1 =
      "DROP TABLE rollout_decisions; DROP TABLE rollout_outcomes; DROP TABLE rollout_devices;"
      "DROP TABLE rollout_stages; DROP TABLE rollouts; DROP TABLE device_groups; DROP TABLE device_tags;"
      "DROP TABLE device_attributes; ALTER TABLE admin_tokens DROP COLUMN scope;"
      "ALTER TABLE devices DROP COLUMN token_sha256; ALTER TABLE devices DROP COLUMN auth_status;"
      "ALTER TABLE firmware DROP COLUMN upload_seq; UPDATE schema_version SET version = 1;"
      "INSERT INTO firmware (sha256, project, version, chip, size, uploaded_at) VALUES"
      " ('" +
      std::string(64, 'b') +
      "', 'blink', '1.0', 'esp32', 10, 700),"
      " ('" +
      std::string(64, 'a') + "', 'blink', '1.0', 'esp32', 10, 700);";
  ASSERT_EQ(exec_sql(path, to_v1), "");
  auto s = open_store("sqlite://" + path);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ((*s)->schema_version().value(), 4);
  FirmwareRecord f;
  f.sha256 = std::string(64, 'c');
  f.project = "blink";
  f.version = "1.0";
  f.chip = "esp32";
  f.uploaded_at = 700;
  ASSERT_TRUE((*s)->add_firmware(f).value());
  auto all = (*s)->list_firmware({}).value();
  ASSERT_EQ(all.size(), 3u);
  EXPECT_EQ(all[0].sha256[0], 'c');
  EXPECT_EQ(all[1].sha256[0], 'a');
  EXPECT_EQ(all[2].sha256[0], 'b');
}

TEST(BlobStore, ContentAddressedAtomicFiles) {
  testing::TempDir tmp;
  BlobStore blobs(tmp / "blobs");
  Bytes data = {1, 2, 3, 4, 5};
  auto hex = blobs.put(data);
  ASSERT_TRUE(hex) << hex.error().message();
  EXPECT_EQ(*hex, to_hex(sha256(data)));
  EXPECT_EQ(blobs.path_for(*hex), tmp / "blobs" / hex->substr(0, 2) / *hex);
  EXPECT_TRUE(blobs.exists(*hex));
  EXPECT_EQ(read_file(blobs.path_for(*hex)).value(), data);
  // Same content again: same name, still one file in the shard directory.
  ASSERT_TRUE(blobs.put(data));
  size_t files = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(blobs.path_for(*hex).parent_path()))
    ++files;
  EXPECT_EQ(files, 1u);
  ASSERT_TRUE(blobs.remove(*hex));
  EXPECT_FALSE(blobs.exists(*hex));
  EXPECT_TRUE(blobs.remove(*hex));  // absent is fine
}

// Secrets at rest: the database (token hashes, device data), its WAL and the blobs are 0600
// whatever the umask.
TEST(OpenStore, DatabaseWalAndBlobsArePrivateWhateverTheUmask) {
  testing::TempDir tmp;
  mode_t old = ::umask(022);
  auto path = (tmp / "ota32.db").string();
  auto s = open_store("sqlite://" + path);
  ASSERT_TRUE(s) << s.error().message();
  ASSERT_TRUE((*s)->add_admin_token(std::string(64, 'a'), "t"));
  BlobStore blobs(tmp / "blobs");
  auto hex = blobs.put(as_bytes(std::string_view("firmware bytes")));
  ::umask(old);
  ASSERT_TRUE(hex) << hex.error().message();
  auto mode = [](const std::filesystem::path& p) {
    return static_cast<int>(std::filesystem::status(p).permissions() & std::filesystem::perms::mask);
  };
  EXPECT_EQ(mode(path), 0600);
  ASSERT_TRUE(std::filesystem::exists(path + "-wal"));
  EXPECT_EQ(mode(path + "-wal"), 0600);
  EXPECT_EQ(mode(blobs.path_for(*hex)), 0600);
  EXPECT_EQ(mode(blobs.path_for(*hex).parent_path()), 0700);
}

TEST(BlobStore, RejectsNamesThatAreNotDigests) {
  testing::TempDir tmp;
  BlobStore blobs(tmp.path());
  EXPECT_FALSE(blobs.exists("../../etc/passwd"));
  EXPECT_FALSE(blobs.exists(std::string(64, 'A')));  // upper case is not the canonical name
  auto r = blobs.remove("../x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_TRUE(is_sha256_hex(std::string(64, 'a')));
  EXPECT_FALSE(is_sha256_hex(std::string(63, 'a')));
}

TEST(CompareVersions, SemverPrecedenceWithEspIdfHabits) {
  EXPECT_EQ(compare_versions("1.0.0", "1.0.0"), 0);
  EXPECT_EQ(compare_versions("v1.2", "1.2.0"), 0);
  EXPECT_LT(compare_versions("1.2.9", "1.10.0"), 0);
  EXPECT_GT(compare_versions("2", "1.99.99"), 0);
  EXPECT_LT(compare_versions("1.0.0-beta", "1.0.0"), 0);
  EXPECT_LT(compare_versions("1.0.0-alpha", "1.0.0-beta"), 0);
  EXPECT_LT(compare_versions("1.0.0-rc.2", "1.0.0-rc.10"), 0);
  EXPECT_LT(compare_versions("1.0.0-rc", "1.0.0-rc.1"), 0);
  EXPECT_EQ(compare_versions("1.0.0+build5", "1.0.0+build7"), 0);
  EXPECT_LT(compare_versions("1.0-3-gabcdef", "1.0"), 0);
  EXPECT_LT(compare_versions("1.0.1", "1.0.x"), 0);  // numbers before text
  EXPECT_GT(compare_versions("1.0.0.1", "1.0.0"), 0);
  EXPECT_LT(compare_versions("", "0.0.1"), 0);
}

TEST(Esp32FotaVersion, AcceptsWhatEsp32FotaParses) {
  EXPECT_EQ(esp32fota_version("1.2.3"), "1.2.3");
  EXPECT_EQ(esp32fota_version("2"), "2.0.0");
  EXPECT_EQ(esp32fota_version(" 2.5"), "2.5.0");
  EXPECT_EQ(esp32fota_version("1.2.3.4"), "1.2.3");
  EXPECT_EQ(esp32fota_version("v1.2.3"), std::nullopt);
  EXPECT_EQ(esp32fota_version("1.2.3-beta"), std::nullopt);
  EXPECT_EQ(esp32fota_version("1.2.3+b1"), std::nullopt);
  EXPECT_EQ(esp32fota_version(""), std::nullopt);
  EXPECT_EQ(esp32fota_version("1..2"), std::nullopt);
}

}  // namespace
}  // namespace ota32
