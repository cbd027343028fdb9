// Store behaviour both backends must share. Runs against SQLite (store_test) and PostgreSQL (store_pg_test).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include "core/hash.h"
#include "store/blob_store.h"
#include "store/store.h"
#include "store_suite.h"

namespace ota32 {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;

class StoreSuite : public ::testing::Test {
 protected:
  void SetUp() override {
    auto url = testing::test_store_url(tmp_);
    if (!url) GTEST_SKIP() << url.error().message();
    url_ = *url;
    auto s = open_store(url_);
    ASSERT_TRUE(s) << s.error().message();
    store_ = std::move(*s);
  }

  static FirmwareRecord firmware(std::string sha_digit, std::string project, std::string version,
                                 std::string chip, int64_t at) {
    FirmwareRecord f;
    f.sha256 = std::string(64, sha_digit[0]);
    f.project = std::move(project);
    f.version = std::move(version);
    f.chip = std::move(chip);
    f.secure_version = 2;
    f.size = 123456;
    f.md5 = std::string(32, 'c');
    f.image_hash = std::string(64, 'd');
    f.idf_version = "v5.5.5";
    f.compile_date = "Nov 25 2026";
    f.compile_time = "04:00:00";
    f.elf_sha256 = std::string(64, 'e');
    f.file_name = "app.bin";
    f.uploaded_at = at;
    return f;
  }

  testing::TempDir tmp_;
  std::string url_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreSuite, MigratesToCurrentSchemaAndReopens) {
  auto v = store_->schema_version();
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(*v, 4);
  store_.reset();
  auto again = open_store(url_);
  ASSERT_TRUE(again) << again.error().message();
  EXPECT_EQ((*again)->schema_version().value(), 4);
}

TEST_F(StoreSuite, FirmwareRoundTripsEveryField) {
  auto f = firmware("a", "blink", "1.0.0", "esp32", 1000);
  f.channel = "beta";
  ASSERT_TRUE(store_->add_firmware(f).value());
  auto got = store_->get_firmware(f.sha256);
  ASSERT_TRUE(got) << got.error().message();
  ASSERT_TRUE(got->has_value());
  const auto& g = **got;
  EXPECT_EQ(g.sha256, f.sha256);
  EXPECT_EQ(g.project, "blink");
  EXPECT_EQ(g.version, "1.0.0");
  EXPECT_EQ(g.chip, "esp32");
  EXPECT_EQ(g.channel, "beta");
  EXPECT_EQ(g.secure_version, 2u);
  EXPECT_EQ(g.size, 123456u);
  EXPECT_EQ(g.md5, f.md5);
  EXPECT_EQ(g.image_hash, f.image_hash);
  EXPECT_EQ(g.idf_version, "v5.5.5");
  EXPECT_EQ(g.compile_date, "Nov 25 2026");
  EXPECT_EQ(g.compile_time, "04:00:00");
  EXPECT_EQ(g.elf_sha256, f.elf_sha256);
  EXPECT_EQ(g.file_name, "app.bin");
  EXPECT_EQ(g.uploaded_at, 1000);
  EXPECT_FALSE(store_->get_firmware(std::string(64, 'f')).value().has_value());
}

TEST_F(StoreSuite, SameSha256IsStoredOnce) {
  auto f = firmware("a", "blink", "1.0.0", "esp32", 1000);
  EXPECT_TRUE(store_->add_firmware(f).value());
  f.file_name = "renamed.bin";
  EXPECT_FALSE(store_->add_firmware(f).value());
  EXPECT_EQ(store_->get_firmware(f.sha256).value()->file_name, "app.bin");
  EXPECT_EQ(store_->list_firmware({}).value().size(), 1u);
}

TEST_F(StoreSuite, ListFiltersAndOrdersNewestFirst) {
  ASSERT_TRUE(store_->add_firmware(firmware("1", "blink", "1.0.0", "esp32", 100)));
  ASSERT_TRUE(store_->add_firmware(firmware("2", "blink", "1.1.0", "esp32", 300)));
  ASSERT_TRUE(store_->add_firmware(firmware("3", "blink", "1.1.0", "esp32c3", 200)));
  ASSERT_TRUE(store_->add_firmware(firmware("4", "other", "9.0", "esp32", 400)));
  auto all = store_->list_firmware({}).value();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].project, "other");
  auto blink32 = store_->list_firmware({"blink", "esp32", ""}).value();
  ASSERT_EQ(blink32.size(), 2u);
  EXPECT_EQ(blink32[0].version, "1.1.0");
  EXPECT_EQ(blink32[1].version, "1.0.0");
  EXPECT_EQ(store_->list_firmware({"", "esp32c3", ""}).value().size(), 1u);
  EXPECT_EQ(store_->list_firmware({"blink", "", "stable"}).value().size(), 3u);
  EXPECT_TRUE(store_->list_firmware({"blink", "", "beta"}).value().empty());
}

// uploaded_at has whole seconds: uploads within one second list in upload order (newest first), not in
// SHA-256 order, so that "the newest upload wins" among equal versions holds for them too.
TEST_F(StoreSuite, UploadsWithinOneSecondListNewestUploadFirst) {
  for (const char* digit : {"5", "9", "1", "7"})
    ASSERT_TRUE(store_->add_firmware(firmware(digit, "blink", "2.0.0", "esp32", 500)).value());
  auto all = store_->list_firmware({}).value();
  ASSERT_EQ(all.size(), 4u);
  EXPECT_EQ(all[0].sha256[0], '7');
  EXPECT_EQ(all[1].sha256[0], '1');
  EXPECT_EQ(all[2].sha256[0], '9');
  EXPECT_EQ(all[3].sha256[0], '5');
  // A later second still comes first, and a deleted-and-uploaded-again image counts as a new upload.
  ASSERT_TRUE(store_->add_firmware(firmware("3", "blink", "2.0.0", "esp32", 501)).value());
  ASSERT_TRUE(store_->delete_firmware(std::string(64, '9')).value());
  ASSERT_TRUE(store_->add_firmware(firmware("9", "blink", "2.0.0", "esp32", 500)).value());
  all = store_->list_firmware({"blink", "esp32", "stable"}).value();
  ASSERT_EQ(all.size(), 5u);
  EXPECT_EQ(all[0].sha256[0], '3');
  EXPECT_EQ(all[1].sha256[0], '9');
  EXPECT_EQ(all[2].sha256[0], '7');
}

TEST_F(StoreSuite, DeleteFirmware) {
  auto f = firmware("a", "blink", "1.0.0", "esp32", 1);
  ASSERT_TRUE(store_->add_firmware(f));
  EXPECT_TRUE(store_->delete_firmware(f.sha256).value());
  EXPECT_FALSE(store_->delete_firmware(f.sha256).value());
  EXPECT_FALSE(store_->get_firmware(f.sha256).value().has_value());
  // Deleted firmware can be uploaded again.
  EXPECT_TRUE(store_->add_firmware(f).value());
}

TEST_F(StoreSuite, ReportCreatesDeviceAndKeepsHistoryNewestFirst) {
  ASSERT_TRUE(
      store_->record_report({"dev-1", 10, "downloading", "1.0.0", "", "127.0.0.1"}, "blink", "esp32"));
  ASSERT_TRUE(store_->record_report(
      {"dev-1", 20, "failed", "1.0.0", "ESP_ERR_OTA_VALIDATE_FAILED", "10.0.0.2"}, "", ""));
  auto d = store_->get_device("dev-1").value();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->project, "blink");  // kept: the second report named none
  EXPECT_EQ(d->chip, "esp32");
  EXPECT_EQ(d->channel, "stable");
  EXPECT_EQ(d->state, "failed");
  EXPECT_EQ(d->running_version, "1.0.0");
  EXPECT_EQ(d->last_error, "ESP_ERR_OTA_VALIDATE_FAILED");
  EXPECT_EQ(d->last_report_at, 20);
  EXPECT_EQ(d->address, "10.0.0.2");
  auto hist = store_->device_reports("dev-1", 10).value();
  ASSERT_EQ(hist.size(), 2u);
  EXPECT_EQ(hist[0].state, "failed");
  EXPECT_EQ(hist[1].state, "downloading");
  EXPECT_EQ(hist[1].address, "127.0.0.1");
  EXPECT_EQ(store_->device_reports("dev-1", 1).value().size(), 1u);
  EXPECT_TRUE(store_->device_reports("nobody", 10).value().empty());
}

TEST_F(StoreSuite, PruneReportsKeepsTheNewestPerDeviceAndDropsOldOnes) {
  for (int64_t at = 1; at <= 5; ++at) {
    ASSERT_TRUE(
        store_->record_report({"dev-1", at * 100, "idle", "1.0." + std::to_string(at), "", "a"}, "", ""));
    ASSERT_TRUE(
        store_->record_report({"dev-2", at * 100, "idle", "2.0." + std::to_string(at), "", "a"}, "", ""));
  }
  EXPECT_EQ(store_->device_count().value(), 2);
  // Nothing to do without limits.
  EXPECT_EQ(store_->prune_reports("dev-1", {}, 1000).value(), 0);
  // The newest 2 of dev-1 stay; dev-2 is untouched by the count limit.
  EXPECT_EQ(store_->prune_reports("dev-1", {2, 0}, 1000).value(), 3);
  auto hist = store_->device_reports("dev-1", 10).value();
  ASSERT_EQ(hist.size(), 2u);
  EXPECT_EQ(hist[0].running_version, "1.0.5");
  EXPECT_EQ(hist[1].running_version, "1.0.4");
  EXPECT_EQ(store_->device_reports("dev-2", 10).value().size(), 5u);
  EXPECT_EQ(store_->prune_reports("dev-1", {2, 0}, 1000).value(), 0);  // already within the limit
  // Age: at now = 600, a 250 s limit drops everything reported before 350, on every device.
  EXPECT_EQ(store_->prune_reports("dev-1", {0, 250}, 600).value(), 3);
  EXPECT_EQ(store_->device_reports("dev-1", 10).value().size(), 2u);
  hist = store_->device_reports("dev-2", 10).value();
  ASSERT_EQ(hist.size(), 2u);
  EXPECT_EQ(hist.back().reported_at, 400);
  // The device records themselves stay.
  EXPECT_EQ(store_->device_count().value(), 2);
}

TEST_F(StoreSuite, RegisterKeepsReportedStateAndOnlyOverwritesGivenFields) {
  DeviceRecord reg;
  reg.id = "aa:bb";
  reg.project = "blink";
  reg.chip = "esp32";
  reg.channel = "";
  ASSERT_TRUE(store_->register_device(reg));
  auto d = store_->get_device("aa:bb").value();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->channel, "stable");
  EXPECT_EQ(d->last_report_at, 0);
  EXPECT_GT(d->created_at, 0);
  ASSERT_TRUE(store_->record_report({"aa:bb", 50, "idle", "2.0", "", "1.2.3.4"}, "", ""));
  reg.project = "";
  reg.chip = "";
  reg.channel = "beta";
  ASSERT_TRUE(store_->register_device(reg));
  d = store_->get_device("aa:bb").value();
  EXPECT_EQ(d->project, "blink");
  EXPECT_EQ(d->channel, "beta");
  EXPECT_EQ(d->running_version, "2.0");
  EXPECT_THAT(store_->list_devices().value(), ElementsAre(Field(&DeviceRecord::id, "aa:bb")));
}

TEST_F(StoreSuite, DeleteDeviceRemovesItsHistory) {
  ASSERT_TRUE(store_->record_report({"d", 1, "idle", "1", "", ""}, "p", "esp32"));
  ASSERT_TRUE(store_->record_report({"e", 1, "idle", "1", "", ""}, "p", "esp32"));
  EXPECT_TRUE(store_->delete_device("d").value());
  EXPECT_FALSE(store_->delete_device("d").value());
  EXPECT_TRUE(store_->device_reports("d", 10).value().empty());
  EXPECT_EQ(store_->list_devices().value().size(), 1u);
  // A new report recreates it with a fresh history.
  ASSERT_TRUE(store_->record_report({"d", 2, "idle", "1", "", ""}, "p", "esp32"));
  EXPECT_EQ(store_->device_reports("d", 10).value().size(), 1u);
}

TEST_F(StoreSuite, AdminTokenLabelsAreUnique) {
  EXPECT_EQ(store_->admin_token_count().value(), 0);
  EXPECT_TRUE(store_->add_admin_token(std::string(64, '1'), "initial").value());
  EXPECT_FALSE(store_->add_admin_token(std::string(64, '2'), "initial").value());
  EXPECT_TRUE(store_->add_admin_token(std::string(64, '3'), "ci").value());
  EXPECT_EQ(store_->admin_token_count().value(), 2);
  EXPECT_TRUE(store_->admin_token_exists(std::string(64, '1')).value());
  EXPECT_FALSE(store_->admin_token_exists(std::string(64, '2')).value());
}

TEST_F(StoreSuite, TwoStoresOnOneDatabaseSeeEachOthersWrites) {
  auto other = open_store(url_);
  ASSERT_TRUE(other) << other.error().message();
  auto f = firmware("b", "blink", "3.0", "esp32", 5);
  ASSERT_TRUE(store_->add_firmware(f).value());
  EXPECT_TRUE((*other)->get_firmware(f.sha256).value().has_value());
  EXPECT_FALSE((*other)->add_firmware(f).value());
  ASSERT_TRUE((*other)->delete_firmware(f.sha256).value());
  EXPECT_FALSE(store_->get_firmware(f.sha256).value().has_value());
  ASSERT_TRUE((*other)->record_report({"x", 1, "idle", "1", "", ""}, "p", "esp32"));
  EXPECT_TRUE(store_->get_device("x").value().has_value());
}

// Several servers uploading the same image at once: the unique key decides, exactly one insert wins, and
// concurrent first starts create exactly one "initial" admin token.
TEST_F(StoreSuite, ConcurrentWritersAreArbitratedByUniqueKeys) {
  constexpr int kWriters = 4;
  std::vector<std::unique_ptr<Store>> stores;
  for (int i = 0; i < kWriters; ++i) {
    auto s = open_store(url_);
    ASSERT_TRUE(s) << s.error().message();
    stores.push_back(std::move(*s));
  }
  std::vector<int> fw_wins(kWriters, 0), token_wins(kWriters, 0), failures(kWriters, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kWriters; ++i) {
    threads.emplace_back([&, i] {
      for (int n = 0; n < 5; ++n) {
        auto f = firmware(std::string(1, static_cast<char>('0' + n)), "blink", "1.0", "esp32", n);
        auto r = stores[i]->add_firmware(f);
        if (!r)
          ++failures[i];
        else if (*r)
          ++fw_wins[i];
        auto report = stores[i]->record_report({"dev", n, "idle", "1", "", ""}, "blink", "esp32");
        if (!report) ++failures[i];
      }
      auto t = stores[i]->add_admin_token(std::string(64, static_cast<char>('a' + i)), "initial");
      if (!t)
        ++failures[i];
      else if (*t)
        ++token_wins[i];
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kWriters; ++i) EXPECT_EQ(failures[i], 0) << "writer " << i;
  int total_fw = 0, total_tokens = 0;
  for (int i = 0; i < kWriters; ++i) {
    total_fw += fw_wins[i];
    total_tokens += token_wins[i];
  }
  EXPECT_EQ(total_fw, 5);
  EXPECT_EQ(total_tokens, 1);
  EXPECT_EQ(store_->admin_token_count().value(), 1);
  EXPECT_EQ(store_->device_reports("dev", 100).value().size(), static_cast<size_t>(5 * kWriters));
}

// A record and its content-addressed file: an upload and a delete of the same image on two
// connections (two servers) are serialised by the blob lock, so whatever the order, a record that exists
// has its file. The callbacks hold the lock while the other side is started and must wait.
class BlobLockSuite : public StoreSuite {
 protected:
  void SetUp() override {
    StoreSuite::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    auto s = open_store(url_);
    ASSERT_TRUE(s) << s.error().message();
    other_ = std::move(*s);
    fw_ = firmware("0", "blink", "1.0", "esp32", 1);
    fw_.sha256 = to_hex(sha256(as_bytes(std::string_view(kData))));
  }
  Result<void> put() {
    OTA32_TRY(blobs_.put(as_bytes(std::string_view(kData))));
    return {};
  }
  Result<void> remove() { return blobs_.remove(fw_.sha256); }
  // After both finished: a record has its file.
  void expect_consistent() {
    bool record = store_->get_firmware(fw_.sha256).value().has_value();
    if (record) {
      EXPECT_TRUE(blobs_.exists(fw_.sha256)) << "a record without its file";
    }
  }

  static constexpr const char* kData = "not really an image, but content-addressed all the same";
  BlobStore blobs_{tmp_ / "blobs"};
  std::unique_ptr<Store> other_;
  FirmwareRecord fw_;
};

TEST_F(BlobLockSuite, AddWritesTheFileAndDeleteRemovesIt) {
  ASSERT_TRUE(store_->add_firmware_with_blob(fw_, [&] { return put(); }).value());
  EXPECT_TRUE(blobs_.exists(fw_.sha256));
  EXPECT_FALSE(other_->add_firmware_with_blob(fw_, [&] { return put(); }).value());
  ASSERT_TRUE(other_->delete_firmware_with_blob(fw_.sha256, [&] { return remove(); }).value());
  EXPECT_FALSE(store_->get_firmware(fw_.sha256).value().has_value());
  EXPECT_FALSE(blobs_.exists(fw_.sha256));
  bool called = false;
  EXPECT_FALSE(store_
                   ->delete_firmware_with_blob(fw_.sha256,
                                               [&]() -> Result<void> {
                                                 called = true;
                                                 return {};
                                               })
                   .value());
  EXPECT_FALSE(called) << "no record: the file is not touched";
  // A failing file step leaves no record behind.
  auto failed = store_->add_firmware_with_blob(
      fw_, [] { return Result<void>(Error(ErrorCode::io_error, "disk full")); });
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error().message(), "disk full");
  EXPECT_FALSE(store_->get_firmware(fw_.sha256).value().has_value());
}

TEST_F(BlobLockSuite, DeleteWaitsForAnUploadThatHoldsTheLock) {
  ASSERT_TRUE(store_->add_firmware_with_blob(fw_, [&] { return put(); }).value());
  std::atomic<bool> delete_done{false};
  Result<bool> deleted = false;
  std::thread deleter;
  auto added = store_->add_firmware_with_blob(fw_, [&]() -> Result<void> {
    OTA32_TRY(put());
    deleter = std::thread([&] {
      deleted = other_->delete_firmware_with_blob(fw_.sha256, [&] { return remove(); });
      delete_done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(delete_done.load()) << "the delete did not wait for the upload's lock";
    return {};
  });
  deleter.join();
  ASSERT_TRUE(added) << added.error().message();
  ASSERT_TRUE(deleted) << deleted.error().message();
  EXPECT_TRUE(*deleted);
  expect_consistent();
}

TEST_F(BlobLockSuite, UploadWaitsForADeleteThatHoldsTheLock) {
  ASSERT_TRUE(store_->add_firmware_with_blob(fw_, [&] { return put(); }).value());
  std::atomic<bool> upload_done{false};
  Result<bool> added = false;
  std::thread uploader;
  auto deleted = store_->delete_firmware_with_blob(fw_.sha256, [&]() -> Result<void> {
    uploader = std::thread([&] {
      added = other_->add_firmware_with_blob(fw_, [&] { return put(); });
      upload_done = true;
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_FALSE(upload_done.load()) << "the upload did not wait for the delete's lock";
    return remove();
  });
  uploader.join();
  ASSERT_TRUE(deleted) << deleted.error().message();
  EXPECT_TRUE(*deleted);
  ASSERT_TRUE(added) << added.error().message();
  EXPECT_TRUE(*added);
  EXPECT_TRUE(store_->get_firmware(fw_.sha256).value().has_value());
  EXPECT_TRUE(blobs_.exists(fw_.sha256));
}

TEST_F(StoreSuite, TextIsStoredVerbatim) {
  // Quotes, SQL metacharacters and UTF-8 travel as parameters, never as SQL text.
  std::string nasty = "it's \"quoted\"; DROP TABLE firmware; -- \xc3\xa9";
  ASSERT_TRUE(store_->record_report({"dev'1", 1, nasty, nasty, nasty, ""}, nasty, "esp32"));
  auto d = store_->get_device("dev'1").value();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->state, nasty);
  EXPECT_EQ(d->project, nasty);
  EXPECT_EQ(store_->list_firmware({}).value().size(), 0u);
}

TEST_F(StoreSuite, DeviceRegistryPendingAcceptRejectAndTokens) {
  EXPECT_TRUE(store_->add_pending_device("new-1", "blink", "esp32", "10.0.0.9").value());
  EXPECT_FALSE(store_->add_pending_device("new-1", "other", "esp32c3", "10.0.0.8").value());
  auto d = store_->get_device("new-1").value();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->auth_status, "pending");
  EXPECT_EQ(d->project, "blink");
  EXPECT_EQ(d->address, "10.0.0.9");
  EXPECT_TRUE(d->token_sha256.empty());
  EXPECT_TRUE(store_->set_device_auth_status("new-1", "rejected").value());
  EXPECT_EQ(store_->get_device("new-1").value()->auth_status, "rejected");
  EXPECT_FALSE(store_->set_device_auth_status("nobody", "accepted").value());
  // Issuing a token accepts (or pre-authorises an unknown id).
  ASSERT_TRUE(store_->issue_device_token("new-1", std::string(64, '1')));
  d = store_->get_device("new-1").value();
  EXPECT_EQ(d->auth_status, "accepted");
  EXPECT_EQ(d->token_sha256, std::string(64, '1'));
  ASSERT_TRUE(store_->issue_device_token("pre-1", std::string(64, '2')));
  d = store_->get_device("pre-1").value();
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->auth_status, "accepted");
  EXPECT_EQ(d->last_report_at, 0);
  // A report keeps the registry fields.
  ASSERT_TRUE(store_->record_report({"pre-1", 5, "booted", "1.0", "", ""}, "blink", "esp32"));
  EXPECT_EQ(store_->get_device("pre-1").value()->token_sha256, std::string(64, '2'));
  // Reports create accepted devices (an open server).
  ASSERT_TRUE(store_->record_report({"open-1", 5, "booted", "1.0", "", ""}, "", ""));
  EXPECT_EQ(store_->get_device("open-1").value()->auth_status, "accepted");
}

TEST_F(StoreSuite, GatewayTokensAreNotAdminTokens) {
  ASSERT_TRUE(store_->add_admin_token(std::string(64, 'a'), "initial").value());
  ASSERT_TRUE(store_->add_gateway_token(std::string(64, 'b'), "gw").value());
  EXPECT_FALSE(store_->add_gateway_token(std::string(64, 'c'), "gw").value());
  EXPECT_TRUE(store_->gateway_token_exists(std::string(64, 'b')).value());
  EXPECT_FALSE(store_->gateway_token_exists(std::string(64, 'a')).value());
  EXPECT_FALSE(store_->admin_token_exists(std::string(64, 'b')).value());
  EXPECT_EQ(store_->admin_token_count().value(), 1);
}

TEST_F(StoreSuite, AttributesAndTagsReplaceAndCascade) {
  ASSERT_TRUE(store_->record_report({"d1", 1, "idle", "1", "", ""}, "p", "esp32"));
  ASSERT_TRUE(store_->record_report({"d2", 1, "idle", "1", "", ""}, "p", "esp32"));
  EXPECT_TRUE(store_->set_device_attributes("d1", {{"board", "devkit"}, {"site", "lab"}}).value());
  EXPECT_TRUE(store_->set_device_tags("d1", {"canary", "lab"}).value());
  EXPECT_TRUE(store_->set_device_tags("d2", {"field"}).value());
  EXPECT_FALSE(store_->set_device_tags("nobody", {"x"}).value());
  auto d = store_->get_device("d1").value();
  EXPECT_EQ(d->attributes.at("board"), "devkit");
  EXPECT_THAT(d->tags, ElementsAre("canary", "lab"));
  EXPECT_TRUE(store_->set_device_attributes("d1", {{"board", "s3box"}}).value());
  auto all = store_->list_devices().value();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].attributes.size(), 1u);
  EXPECT_EQ(all[0].attributes.at("board"), "s3box");
  EXPECT_THAT(all[1].tags, ElementsAre("field"));
  ASSERT_TRUE(store_->delete_device("d1").value());
  ASSERT_TRUE(store_->record_report({"d1", 2, "idle", "1", "", ""}, "p", "esp32"));
  EXPECT_TRUE(store_->get_device("d1").value()->tags.empty());
}

TEST_F(StoreSuite, Groups) {
  EXPECT_TRUE(store_->add_group({"lab", "tag:lab", 10}).value());
  EXPECT_FALSE(store_->add_group({"lab", "chip=esp32", 11}).value());
  EXPECT_TRUE(store_->add_group({"all-c3", "chip=esp32c3", 12}).value());
  EXPECT_EQ(store_->get_group("lab").value()->filter, "tag:lab");
  auto all = store_->list_groups().value();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "all-c3");
  EXPECT_TRUE(store_->delete_group("lab").value());
  EXPECT_FALSE(store_->get_group("lab").value().has_value());
}

class RolloutStore : public StoreSuite {
 protected:
  RolloutRecord rollout(std::string id) {
    RolloutRecord r;
    r.id = std::move(id);
    r.firmware_sha256 = std::string(64, 'a');
    r.target_version = "2.0.0";
    r.group_name = "lab";
    r.policy_json = R"({"max_in_flight":2})";
    r.stages = {{100, 3600, 0.9, -1}, {10000, 0, 0.75, 50}};
    r.stage_started_at = r.counted_since = r.created_at = 1000;
    r.created_by = "admin";
    return r;
  }
  RolloutDeviceRecord offered(std::string device, uint32_t stage = 0) {
    return RolloutDeviceRecord{"r1", std::move(device), stage, "offered", 1, 1000, 1000, 0, "none", "1.0.0"};
  }
};

TEST_F(RolloutStore, CreateListAndSequence) {
  auto a = rollout("r1");
  ASSERT_TRUE(store_->create_rollout(a).value());
  auto b = rollout("r2");
  ASSERT_TRUE(store_->create_rollout(b).value());
  EXPECT_GT(b.seq, a.seq);
  auto dup = rollout("r1");
  EXPECT_FALSE(store_->create_rollout(dup).value());
  auto got = store_->get_rollout("r1").value();
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->policy_json, R"({"max_in_flight":2})");
  ASSERT_EQ(got->stages.size(), 2u);
  EXPECT_EQ(got->stages[0].cumulative_bp, 100u);
  EXPECT_EQ(got->stages[0].min_soak_s, 3600);
  EXPECT_DOUBLE_EQ(got->stages[1].success_fraction, 0.75);
  EXPECT_EQ(got->stages[1].max_devices, 50);
  EXPECT_EQ(got->state, "running");
  auto all = store_->list_rollouts().value();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].id, "r1");
}

TEST_F(RolloutStore, DecisionChangesTheStatusOnlyFromTheExpectedOne) {
  auto r = rollout("r1");
  ASSERT_TRUE(store_->create_rollout(r).value());
  auto next = r;
  next.state = "paused_auto";
  RolloutDecisionRecord d{0,
                          "r1",
                          2000,
                          "paused_auto",
                          "policy",
                          0,
                          "paused by rule max_failures",
                          R"([{"rule":"max_failures"}])"};
  EXPECT_TRUE(store_->record_rollout_decision(d, &r, &next).value());
  // A second server evaluating from the same old status loses: nothing is counted twice.
  EXPECT_FALSE(store_->record_rollout_decision(d, &r, &next).value());
  EXPECT_EQ(store_->get_rollout("r1").value()->state, "paused_auto");
  RolloutDecisionRecord note{0, "r1", 2100, "note", "alice", 0, "checked", "[]"};
  EXPECT_TRUE(store_->record_rollout_decision(note, nullptr, nullptr).value());
  auto log = store_->rollout_decisions("r1", 10).value();
  ASSERT_EQ(log.size(), 2u);
  EXPECT_EQ(log[0].kind, "note");
  EXPECT_EQ(log[1].evidence_json, R"([{"rule":"max_failures"}])");
  EXPECT_EQ(store_->rollout_decisions("r1", 1).value().size(), 1u);
}

TEST_F(RolloutStore, DeviceActionsCompareAndSetWithOutcomes) {
  auto r = rollout("r1");
  ASSERT_TRUE(store_->create_rollout(r).value());
  Store::DeviceActionWrite w{offered("d1"), std::nullopt, std::nullopt, 2, -1};
  EXPECT_TRUE(store_->write_rollout_device(w).value());
  EXPECT_FALSE(store_->write_rollout_device(w).value());  // it exists now
  auto done = offered("d1");
  done.state = "succeeded";
  done.updated_at = 1500;
  Store::DeviceActionWrite fin{done, offered("d1"), RolloutOutcomeRecord{"r1", "d1", 0, 1500, true, "none"},
                               -1, -1};
  EXPECT_TRUE(store_->write_rollout_device(fin).value());
  EXPECT_FALSE(
      store_->write_rollout_device(fin).value());  // stale expectation: the outcome is not logged twice
  auto a = store_->get_rollout_device("r1", "d1").value();
  ASSERT_TRUE(a.has_value());
  EXPECT_EQ(a->state, "succeeded");
  EXPECT_EQ(a->from_version, "1.0.0");
  auto outcomes = store_->rollout_outcomes("r1", 0).value();
  ASSERT_EQ(outcomes.size(), 1u);
  EXPECT_TRUE(outcomes[0].success);
  EXPECT_TRUE(store_->rollout_outcomes("r1", 1501).value().empty());
}

TEST_F(RolloutStore, CapsAreCountedInsideTheTransaction) {
  auto r = rollout("r1");
  ASSERT_TRUE(store_->create_rollout(r).value());
  EXPECT_TRUE(store_->write_rollout_device({offered("d1"), std::nullopt, std::nullopt, 2, -1}).value());
  EXPECT_TRUE(store_->write_rollout_device({offered("d2"), std::nullopt, std::nullopt, 2, -1}).value());
  EXPECT_FALSE(store_->write_rollout_device({offered("d3"), std::nullopt, std::nullopt, 2, -1}).value());
  // Moving an in-flight action along does not need a free place.
  auto dl = offered("d1");
  dl.state = "downloading";
  dl.updated_at = 1100;
  EXPECT_TRUE(store_->write_rollout_device({dl, offered("d1"), std::nullopt, 2, -1}).value());
  // Stage cap.
  // Stage cap: one place in stage 2.
  EXPECT_TRUE(store_->write_rollout_device({offered("d4", 1), std::nullopt, std::nullopt, -1, 1}).value());
  EXPECT_FALSE(store_->write_rollout_device({offered("d5", 1), std::nullopt, std::nullopt, -1, 1}).value());
  auto counts = store_->rollout_state_counts("r1").value();
  ASSERT_EQ(counts.size(), 3u);
  EXPECT_EQ(counts[0].stage, 0u);
  EXPECT_EQ(counts[0].state, "downloading");
  EXPECT_EQ(counts[0].count, 1);
  EXPECT_EQ(counts[1].state, "offered");
  EXPECT_EQ(counts[1].count, 1);
  EXPECT_EQ(counts[2].stage, 1u);
  EXPECT_EQ(store_->list_rollout_devices("r1").value().size(), 3u);
}

TEST_F(RolloutStore, ConcurrentOffersNeverExceedTheCap) {
  auto r = rollout("r1");
  ASSERT_TRUE(store_->create_rollout(r).value());
  auto other = open_store(url_);
  ASSERT_TRUE(other);
  std::atomic<int> won{0};
  auto run = [&](Store& s, int base) {
    for (int i = 0; i < 20; ++i) {
      auto w = s.write_rollout_device(
          {offered("d" + std::to_string(base + i)), std::nullopt, std::nullopt, 5, -1});
      if (w && *w) ++won;
    }
  };
  std::thread t1([&] { run(*store_, 0); });
  std::thread t2([&] { run(**other, 100); });
  t1.join();
  t2.join();
  EXPECT_EQ(won.load(), 5);
  EXPECT_EQ(store_->list_rollout_devices("r1").value().size(), 5u);
}

}  // namespace
}  // namespace ota32
