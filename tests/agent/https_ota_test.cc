#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "agent/https_ota.h"
#include "core/file_io.h"
#include "flash/budget_flash.h"
#include "flash/fault_flash.h"
#include "flash/nor_flash.h"
#include "format/image_make.h"
#include "ota_ops/ota_test_layout.h"
#include "scripted_server.h"
#include "test_support.h"
#include "tls_fixture.h"

namespace ota32::agent {
namespace {

using ota32::testing::CollectLog;
using ota32::testing::http_response;
using ota32::testing::OpensslServer;
using ota32::testing::ScriptedReply;
using ota32::testing::ScriptedServer;
using ota32::testing::TempDir;
using ota32::testing::TestPki;

Bytes image(std::string_view chip, std::string version, uint32_t size) {
  MakeImageOptions o;
  o.chip = find_chip(chip);
  o.project = "simple_ota";
  o.version = std::move(version);
  o.size = size;
  return *make_app_image(o);
}

// "Range: bytes=N-" of a request head, or -1.
long range_start(const std::string& head) {
  auto at = head.find("Range: bytes=");
  return at == std::string::npos ? -1 : std::stol(head.substr(at + 13));
}

// A server with Content-Length and Range (206 + Content-Range), optionally cutting the first connection.
ScriptedReply ranged_reply(const std::string& body, const std::string& head, size_t cut_first, int index) {
  long start = range_start(head);
  std::string reply;
  if (start > 0) {
    reply = "HTTP/1.1 206 Partial Content\r\nContent-Length: " + std::to_string(body.size() - start) +
            "\r\nContent-Range: bytes " + std::to_string(start) + "-" + std::to_string(body.size() - 1) +
            "/" + std::to_string(body.size()) + "\r\n\r\n" + body.substr(start);
  } else {
    reply = http_response(200, body, "Content-Length: " + std::to_string(body.size()) + "\r\n");
  }
  ScriptedReply r{reply};
  if (index == 0 && cut_first > 0) r.cut_after = cut_first;
  return r;
}

class HttpsOtaTest : public ::testing::Test {
 protected:
  HttpsOtaTest() : flash_(4u << 20), table_(ota32::testing::seed_layout()) {}

  HttpsOtaConfig config(const std::string& url) {
    HttpsOtaConfig c;
    c.url = url;
    c.http.timeout = std::chrono::milliseconds(3000);
    c.writer.chip = find_chip("esp32");
    c.writer.running_version = "1";
    c.writer.old_log_format = true;
    c.sleep = [this](std::chrono::milliseconds d) { sleeps_.push_back(d.count()); };  // never really waits
    return c;
  }
  Result<HttpsOtaResult> ota(const HttpsOtaConfig& c) {
    return https_ota(flash_, table_, table_.factory(), c, log_);
  }
  Bytes otadata() {
    Bytes b(0x2000);
    EXPECT_TRUE(flash_.read(0xd000, b));
    return b;
  }
  Bytes slot0(size_t n) {
    Bytes b(n);
    EXPECT_TRUE(flash_.read(0x110000, b));
    return b;
  }

  MemFlash flash_;
  PartitionTable table_;
  CollectLog log_;
  TempDir dir_;
  std::vector<long> sleeps_;  // the waits between connections, in ms
};

TEST_F(HttpsOtaTest, SeedFlowAgainstOpensslSServer) {
  TestPki pki;
  ASSERT_TRUE(pki.create(dir_.path() / "pki"));
  std::filesystem::create_directories(dir_.path() / "www");
  Bytes img = image("esp32", "2", 200 * 1024);
  ASSERT_TRUE(write_file_atomic(dir_.path() / "www" / "simple_ota.bin", img));
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_.path() / "www", pki.seed_cert, pki.seed_key));
  auto c = config("https://127.0.0.1:" + std::to_string(server.port()) + "/simple_ota.bin");
  c.http.tls.ca_pem = *read_text_file(pki.seed_cert);
  c.http.tls.ca_name = "ca_cert.pem";
  auto r = ota(c);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->slot.name, "ota_0");
  EXPECT_EQ(r->image.size, img.size());
  EXPECT_EQ(r->connections, 1);
  EXPECT_EQ(slot0(img.size()), img);
  EXPECT_TRUE(log_.has("I esp_https_ota: Starting OTA..."));
  EXPECT_TRUE(log_.has("I esp_https_ota: Writing to partition subtype 16 at offset 0x110000"));
  EXPECT_TRUE(log_.has("I esp_https_ota: Connection closed"));
  // esp_ota_end and esp_ota_set_boot_partition each verify: the segment lines appear twice.
  EXPECT_EQ(log_.count("segment 0: paddr=0x00110020"), 2u);
  // otadata: entry 0 = seq 1, state UNDEFINED, CRC of seq 1 (spec §1.3 example).
  Bytes od = otadata();
  EXPECT_EQ(load_le32(od.data()), 1u);
  EXPECT_EQ(load_le32(od.data() + 24), 0xFFFFFFFFu);
  EXPECT_EQ(load_le32(od.data() + 28), 0x4743989Au);
}

TEST_F(HttpsOtaTest, WrongFileNameOnSServerIsFirmwareNotFound) {
  TestPki pki;
  ASSERT_TRUE(pki.create(dir_.path() / "pki"));
  std::filesystem::create_directories(dir_.path() / "www");
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_.path() / "www", pki.ip_cert, pki.ip_key));
  auto c = config("https://127.0.0.1:" + std::to_string(server.port()) + "/hello-world.bin");
  c.http.tls.ca_pem = *read_text_file(pki.ca_cert);
  auto r = ota(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(r.error().message().find("firmware not found at https://127.0.0.1:"), std::string::npos);
  EXPECT_NE(r.error().message().find("Error opening"), std::string::npos) << r.error().message();
  EXPECT_EQ(otadata(), Bytes(0x2000, 0xFF));
}

TEST_F(HttpsOtaTest, Http404IsFirmwareNotFound) {
  ScriptedServer server(
      [](const std::string&, int) { return ScriptedReply{http_response(404, "", "Content-Length: 0\r\n")}; });
  auto r = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/x.bin"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(r.error().message().find("firmware not found at http://127.0.0.1:"), std::string::npos);
  EXPECT_NE(r.error().message().find("(HTTP 404)"), std::string::npos);
}

TEST_F(HttpsOtaTest, ResumesWithRangeAfterACutConnection) {
  Bytes img = image("esp32", "2", 100 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) { return ranged_reply(body, head, 50000, i); });
  auto r = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->connections, 2);
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(range_start(reqs[0]), -1);
  EXPECT_GT(range_start(reqs[1]), 40000);
  EXPECT_EQ(slot0(img.size()), img);
}

TEST_F(HttpsOtaTest, ServerIgnoringRangeStillWorks) {
  Bytes img = image("esp32", "2", 100 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string&, int i) {
    ScriptedReply r{http_response(200, body, "Content-Length: " + std::to_string(body.size()) + "\r\n")};
    if (i == 0) r.cut_after = 30000;
    return r;
  });
  auto r = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_TRUE(log_.has("W esp_https_ota: Server ignored the requested Range header"));
  EXPECT_EQ(slot0(img.size()), img);
}

TEST_F(HttpsOtaTest, ResumesAfterARebootFromSavedProgress) {
  Bytes img = image("esp32", "2", 100 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) { return ranged_reply(body, head, 0, i); });
  FileProgressStore progress(dir_.path() / "ota_progress.json");
  auto c = config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin");
  c.progress = &progress;
  c.cadence.sectors = 4;  // a save at every 16 KiB boundary the writes cross
  // The power goes once 70000 image bytes are in ota_0 (the Flash's doing, not the agent's).
  const PartitionEntry& slot = *table_.find("ota_0");
  BudgetFlash cut_flash(flash_, slot.offset, slot.size, 70000);
  auto cut = https_ota(cut_flash, table_, table_.factory(), c, log_);
  ASSERT_FALSE(cut);
  EXPECT_EQ(cut.error().code(), ErrorCode::power_lost);
  auto saved = progress.load();
  ASSERT_TRUE(saved && *saved);
  // The last save before the cut: the write that crossed 65536 (writes are at most 1 KiB).
  EXPECT_GE((*saved)->written, 65536u);
  EXPECT_LT((*saved)->written, 65536u + 1024);
  auto r = ota(c);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->resumed_from, 65536u);  // the sector holding the saved byte is written again
  EXPECT_EQ(range_start(server.requests().back()), 65536);
  EXPECT_EQ(slot0(img.size()), img);
  EXPECT_FALSE(*progress.load());  // cleared after success
}

// On the chip nothing runs after a power cut: the progress saved before it is what the next boot resumes
// from, so the agent must not clear it on the way out of a power_lost error.
TEST_F(HttpsOtaTest, APowerCutKeepsTheSavedProgress) {
  Bytes img = image("esp32", "2", 200 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) { return ranged_reply(body, head, 0, i); });
  FileProgressStore progress(dir_.path() / "ota_progress.json");
  auto c = config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin");
  c.progress = &progress;
  c.cadence.sectors = 16;  // 64 KiB
  uint64_t clean_ops = 0;
  {
    MemFlash clean(4u << 20);
    FaultFlash counting(clean);
    auto r = https_ota(counting, table_, table_.factory(), c, log_);
    ASSERT_TRUE(r) << r.error().message();
    clean_ops = counting.mutations();
  }
  ASSERT_FALSE(*progress.load());  // cleared after success
  FaultFlash cut(flash_);
  cut.cut_power_at(clean_ops * 3 / 4);  // well past the first save at 64 KiB, before otadata
  auto r = https_ota(cut, table_, table_.factory(), c, log_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::power_lost);
  auto saved = progress.load();
  ASSERT_TRUE(saved && *saved) << "the progress saved before the cut was cleared";
  EXPECT_GE((*saved)->written, 64u * 1024);
}

TEST_F(HttpsOtaTest, ImageForAnotherChipLeavesOtadataAlone) {
  Bytes img = image("esp32c3", "2", 96 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) { return ranged_reply(body, head, 0, i); });
  auto r = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::unsupported);
  EXPECT_EQ(otadata(), Bytes(0x2000, 0xFF));
}

TEST_F(HttpsOtaTest, TooLargeForTheSlotIsRefusedBeforeWriting) {
  table_.entries[4].size = 64 * 1024;
  Bytes img = image("esp32", "2", 100 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) { return ranged_reply(body, head, 0, i); });
  auto r = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::out_of_range);
  EXPECT_NE(r.error().message().find("larger than the ota_0 partition (64K"), std::string::npos)
      << r.error().message();
  EXPECT_EQ(slot0(4096), Bytes(4096, 0xFF));
}

TEST_F(HttpsOtaTest, TruncatedCloseDelimitedDownloadFailsVerification) {
  Bytes img = image("esp32", "2", 100 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string&, int) {
    ScriptedReply r{"HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n" + body};
    r.cut_after = 60000;
    return r;
  });
  auto r = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::corrupt);
  EXPECT_NE(r.error().message().find("truncated"), std::string::npos) << r.error().message();
  EXPECT_EQ(otadata(), Bytes(0x2000, 0xFF));
}

TEST_F(HttpsOtaTest, GivesUpAfterMaxConnectionsAndKeepsProgress) {
  Bytes img = image("esp32", "2", 100 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int) {
    ScriptedReply r = ranged_reply(body, head, 0, 1);
    r.cut_after = std::min<size_t>(r.bytes.size(), 20000);
    return r;
  });
  FileProgressStore progress(dir_.path() / "p.json");
  auto c = config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin");
  c.progress = &progress;
  c.cadence.sectors = 1;
  c.max_connections = 3;
  auto r = ota(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::unavailable);
  EXPECT_NE(r.error().message().find("after 3 connections"), std::string::npos) << r.error().message();
  ASSERT_TRUE(*progress.load());
  EXPECT_GT((*progress.load())->written, 40000u);
  // Every connection brought bytes, so the wait never grew; none after the last connection.
  EXPECT_EQ(sleeps_, (std::vector<long>{500, 500}));
}

TEST_F(HttpsOtaTest, ExpectedShaMismatchIsCorrupt) {
  Bytes img = image("esp32", "2", 96 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) { return ranged_reply(body, head, 0, i); });
  auto c = config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin");
  c.expected_sha256 = Sha256Digest{};
  auto r = ota(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::corrupt);
  EXPECT_NE(r.error().message().find("does not match the expected"), std::string::npos);
}

TEST(ReconnectDelay, DoublesUpToTheCap) {
  ReconnectBackoff b;
  std::vector<long> got;
  for (int n : {1, 2, 3, 4, 5, 6, 7, 1000}) got.push_back(reconnect_delay(b, n).count());
  EXPECT_EQ(got, (std::vector<long>{500, 1000, 2000, 4000, 8000, 8000, 8000, 8000}));
  b.initial = std::chrono::milliseconds(300);
  b.max = std::chrono::milliseconds(1000);
  EXPECT_EQ(reconnect_delay(b, 1).count(), 300);
  EXPECT_EQ(reconnect_delay(b, 2).count(), 600);
  EXPECT_EQ(reconnect_delay(b, 3).count(), 1000);
  b.initial = std::chrono::milliseconds(0);
  EXPECT_EQ(reconnect_delay(b, 9).count(), 0);
}

TEST(ReconnectDelay, JitterSpreadsDevicesButRepeatsForOne) {
  ReconnectBackoff a, b;
  a.jitter_seed = 1;
  b.jitter_seed = 2;
  int differ = 0;
  for (int n = 1; n <= 8; ++n) {
    auto full = reconnect_delay(ReconnectBackoff{}, n).count();
    auto da = reconnect_delay(a, n).count();
    EXPECT_GE(da, full / 2) << n;
    EXPECT_LE(da, full) << n;
    EXPECT_EQ(da, reconnect_delay(a, n).count()) << n;  // the same device waits the same in a replay
    differ += da != reconnect_delay(b, n).count();
  }
  EXPECT_GE(differ, 6);  // two devices rarely wait alike
  // Over many devices the waits cover the range instead of piling on one value.
  std::set<long> seen;
  for (uint64_t seed = 0; seed < 200; ++seed) {
    ReconnectBackoff c;
    c.jitter_seed = seed;
    seen.insert(reconnect_delay(c, 1).count());
  }
  EXPECT_GT(seen.size(), 100u);
  EXPECT_GE(*seen.begin(), 250);
  EXPECT_LE(*seen.rbegin(), 500);
}

TEST_F(HttpsOtaTest, ServerErrorsBackOffThenSucceed) {
  Bytes img = image("esp32", "2", 96 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) {
    if (i < 3) return ScriptedReply{http_response(503, "", "Content-Length: 0\r\n")};
    return ranged_reply(body, head, 0, i);
  });
  auto r = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin"));
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->connections, 4);
  EXPECT_EQ(sleeps_, (std::vector<long>{500, 1000, 2000}));
  EXPECT_TRUE(log_.has("I esp_https_ota: Reconnecting in 1000 ms (connection 3 of 5)"));
  EXPECT_EQ(slot0(img.size()), img);
}

TEST_F(HttpsOtaTest, GivingUpWaitsOnlyBetweenConnections) {
  ScriptedServer server(
      [](const std::string&, int) { return ScriptedReply{http_response(503, "", "Content-Length: 0\r\n")}; });
  auto c = config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin");
  c.max_connections = 4;
  c.backoff.initial = std::chrono::milliseconds(100);
  c.backoff.max = std::chrono::milliseconds(250);
  auto r = ota(c);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::unavailable);
  EXPECT_NE(r.error().message().find("after 4 connections"), std::string::npos) << r.error().message();
  EXPECT_EQ(sleeps_, (std::vector<long>{100, 200, 250}));
}

TEST_F(HttpsOtaTest, RefusedConnectionsBackOff) {
  int port = 0;
  {
    ScriptedServer gone([](const std::string&, int) { return ScriptedReply{}; }, 0);
    port = gone.port();
  }  // closed: connections to it are refused
  auto c = config("http://127.0.0.1:" + std::to_string(port) + "/fw.bin");
  c.max_connections = 3;
  auto r = ota(c);
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().code() == ErrorCode::unavailable || r.error().code() == ErrorCode::timeout)
      << r.error().message();
  EXPECT_EQ(sleeps_, (std::vector<long>{500, 1000}));
}

TEST_F(HttpsOtaTest, ErrorsThatRetryingCannotFixDoNotWait) {
  Bytes c3 = image("esp32c3", "2", 96 * 1024);
  std::string c3_body(as_chars(c3));
  ScriptedServer server([&](const std::string& head, int i) {
    if (head.starts_with("GET /missing.bin")) {
      return ScriptedReply{http_response(404, "", "Content-Length: 0\r\n")};
    }
    return ranged_reply(c3_body, head, 0, i);
  });
  auto missing = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/missing.bin"));
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), ErrorCode::not_found);
  auto wrong_chip = ota(config("http://127.0.0.1:" + std::to_string(server.port()) + "/c3.bin"));
  ASSERT_FALSE(wrong_chip);
  EXPECT_EQ(wrong_chip.error().code(), ErrorCode::unsupported);
  EXPECT_TRUE(sleeps_.empty());
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST_F(HttpsOtaTest, UnconfirmedRunningAppIsRefusedAtBegin) {
  // ota_0 runs, booted once and not yet confirmed (rollback build).
  ASSERT_TRUE(flash_.erase(0xd000, 0x1000));
  ASSERT_TRUE(
      flash_.program(0xd000, serialize_ota_select_entry(make_ota_select_entry(1, kOtaStatePendingVerify))));
  Bytes img = image("esp32", "2", 96 * 1024);
  std::string body(as_chars(img));
  ScriptedServer server([&](const std::string& head, int i) { return ranged_reply(body, head, 0, i); });
  auto c = config("http://127.0.0.1:" + std::to_string(server.port()) + "/fw.bin");
  c.writer.rollback_enabled = true;
  Bytes before = otadata();
  auto r = https_ota(flash_, table_, table_.find("ota_0"), c, log_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::rollback_refused);
  EXPECT_TRUE(log_.has("E esp_ota_ops: Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)"));
  EXPECT_TRUE(log_.has("E esp_https_ota: esp_ota_begin failed (ESP_ERR_OTA_ROLLBACK_INVALID_STATE)"));
  EXPECT_EQ(otadata(), before);
  EXPECT_TRUE(sleeps_.empty());
}

}  // namespace
}  // namespace ota32::agent

namespace ota32::agent {
namespace {

// The status table, row by row: what esp_https_ota does with each status (and ota32's reconnects).
TEST(HttpsOtaStatus, EachRowOfTheTable) {
  struct Case {
    int status;
    bool ranged;
    StatusAction action;
    std::optional<ErrorCode> code;
  } cases[] = {
      {200, false, StatusAction::stream, std::nullopt},
      {206, true, StatusAction::stream, std::nullopt},
      {403, false, StatusAction::abort, ErrorCode::not_found},
      {404, true, StatusAction::abort, ErrorCode::not_found},
      {416, true, StatusAction::restart, std::nullopt},
      {416, false, StatusAction::abort, ErrorCode::invalid_argument},  // no Range asked: a client error
      {400, false, StatusAction::abort, ErrorCode::invalid_argument},
      {499, false, StatusAction::abort, ErrorCode::invalid_argument},
      {500, false, StatusAction::retry, ErrorCode::unavailable},
      {503, true, StatusAction::retry, ErrorCode::unavailable},
      {100, false, StatusAction::abort, ErrorCode::corrupt},
      {304, false, StatusAction::abort, ErrorCode::corrupt},
  };
  for (const auto& k : cases) {
    const StatusRule& r = status_rule(k.status, k.ranged);
    EXPECT_EQ(r.action, k.action) << k.status;
    EXPECT_EQ(r.code, k.code) << k.status;
  }
  // The catch-all row is last, so every status has a row.
  EXPECT_EQ(status_rules().back().first, 0);
  EXPECT_EQ(status_rules().back().action, StatusAction::abort);
}

}  // namespace
}  // namespace ota32::agent
