// "Several `ota32 serve` processes sharing one PostgreSQL and one blob directory must behave as one server"
// (design.md), end to end: a real PostgreSQL 15 (postgres_test_server.h) and two real ota32-serve
// processes on 127.0.0.1 sharing it and one --data directory, driven by curl and `ota32 fw`. Skips with a
// message when the PostgreSQL binaries are absent.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <atomic>
#include <regex>
#include <set>
#include <thread>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "e2e/serve_process.h"
#include "store/postgres_test_server.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

struct Http {
  int status = 0;
  std::string body;
};

class MultiServe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!shared_postgres_skip_reason().empty())
      GTEST_SKIP() << "PostgreSQL not available: " << shared_postgres_skip_reason();
    auto db = shared_postgres().fresh_database();
    ASSERT_TRUE(db) << db.error().message();
    db_ = *db;
    // Both servers start at the same time on an empty database and an empty data directory: one CA, one
    // server certificate, one admin token.
    std::vector<std::string> args = {"--data", (tmp_ / "data").string(), "--store",
                                     db_,      "--access-log",           "off"};
    std::string why_a, why_b;
    std::thread start_b([&] { b_ = ServeProcess::start(args, tmp_.path(), &why_b); });
    a_ = ServeProcess::start(args, tmp_.path(), &why_a);
    start_b.join();
    ASSERT_TRUE(a_) << why_a;
    ASSERT_TRUE(b_) << why_b;
    ca_ = (tmp_ / "data" / "ca_cert.pem").string();
    std::string outs = a_->out() + b_->out();
    std::regex token_re("admin token: ([0-9a-f]{64})");
    auto tokens =
        std::distance(std::sregex_iterator(outs.begin(), outs.end(), token_re), std::sregex_iterator());
    ASSERT_EQ(tokens, 1) << "exactly one of the servers prints the new admin token:\n" << outs;
    std::smatch m;
    std::regex_search(outs, m, token_re);
    token_ = m[1];
  }

  void make_image(const std::string& name, const std::string& version, const std::string& seed) {
    auto r = run_ota32({"image", "make", "-o", (tmp_ / name).string(), "-c", "esp32", "--project", "blink",
                        "--version", version, "--size", "128K", "--seed", seed});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }

  // One request with curl: the status and the body.
  Http curl(const ServeProcess& s, std::vector<std::string> args, const std::string& path) {
    static std::atomic<int> n{0};
    fs::path body = tmp_ / ("body-" + std::to_string(++n));
    std::vector<std::string> a = {"-sS", "--max-time",  "30", "--cacert",    ca_,
                                  "-o",  body.string(), "-w", "%{http_code}"};
    a.insert(a.end(), args.begin(), args.end());
    a.push_back(s.url(path));
    auto r = run_process("/usr/bin/curl", a, {}, tmp_.path(), std::chrono::seconds(40));
    Http h;
    h.status = r.exit_code == 0 ? std::atoi(r.out.c_str()) : -1;
    auto text = read_text_file(body);
    h.body = text ? *text : r.err;
    std::error_code ec;
    fs::remove(body, ec);
    return h;
  }
  Http admin(const ServeProcess& s, std::vector<std::string> args, const std::string& path) {
    args.insert(args.begin(), {"-H", "Authorization: Bearer " + token_});
    return curl(s, std::move(args), path);
  }
  Http push(const ServeProcess& s, const std::string& file) {
    return admin(s, {"-X", "POST", "-H", "Expect:", "--data-binary", "@" + file}, "/api/v1/firmware");
  }
  ProcessResult fw(const ServeProcess& s, std::vector<std::string> args) {
    args.insert(args.begin(), "fw");
    args.insert(args.end(), {"--server", s.url(""), "--token", token_, "--ca", ca_});
    return run_process(ota32_binary(), args, {}, tmp_.path());
  }

  TempDir tmp_;
  std::string db_, ca_, token_;
  std::unique_ptr<ServeProcess> a_, b_;
};

std::string fingerprint(const std::string& err) {
  std::smatch m;
  std::regex re("SHA-256 fingerprint: ([0-9A-F:]+)");
  return std::regex_search(err, m, re) ? m[1].str() : "";
}

TEST_F(MultiServe, TwoServersShareCertificateTokenCatalogAndDevices) {
  // One CA and one server certificate for both: devices pin ca_cert.pem and reach either server.
  EXPECT_FALSE(fingerprint(a_->err()).empty());
  EXPECT_EQ(fingerprint(a_->err()), fingerprint(b_->err()));
  EXPECT_THAT(a_->err() + b_->err(), HasSubstr("catalog: postgresql store"));
  // The token works on both.
  EXPECT_EQ(admin(*a_, {}, "/api/v1/devices").status, 200);
  EXPECT_EQ(admin(*b_, {}, "/api/v1/devices").status, 200);
  EXPECT_EQ(curl(*b_, {"-H", "Authorization: Bearer " + std::string(64, '0')}, "/api/v1/devices").status,
            401);

  // Push to A; update check and download from B.
  make_image("blink-1.0.0.bin", "1.0.0", "1");
  make_image("blink-1.1.0.bin", "1.1.0", "2");
  auto pushed = fw(*a_, {"push", "blink-1.0.0.bin", "blink-1.1.0.bin"});
  ASSERT_EQ(pushed.exit_code, 0) << pushed.err;
  auto check = curl(*b_, {}, "/api/v1/update?project=blink&chip=esp32&version=1.0.0&device=dev-1");
  ASSERT_EQ(check.status, 200) << check.body;
  auto offer = json::parse(check.body, nullptr, false);
  ASSERT_TRUE(offer.is_object()) << check.body;
  EXPECT_EQ(offer["version"], "1.1.0");
  std::string sha = offer["sha256"];
  EXPECT_EQ(offer["url"], b_->url("/fw/" + sha + ".bin"));
  auto dl = run_process("/usr/bin/curl",
                        {"-sS", "--cacert", ca_, "-o", "from-b.bin", "-w", "%{http_code}", offer["url"]}, {},
                        tmp_.path());
  EXPECT_EQ(dl.out, "200") << dl.err;
  EXPECT_EQ(read_file(tmp_ / "from-b.bin").value(), read_file(tmp_ / "blink-1.1.0.bin").value());

  // A device reports to B; A lists it.
  auto report = curl(*b_, {"-X", "POST", "-d", R"({"state":"booted","version":"1.1.0","project":"blink"})"},
                     "/api/v1/devices/dev-1/report");
  EXPECT_EQ(report.status, 200) << report.body;
  auto devices = json::parse(admin(*a_, {}, "/api/v1/devices").body, nullptr, false);
  ASSERT_TRUE(devices.is_object());
  ASSERT_EQ(devices["devices"].size(), 1u);
  EXPECT_EQ(devices["devices"][0]["id"], "dev-1");
  EXPECT_EQ(devices["devices"][0]["state"], "booted");
  EXPECT_EQ(devices["devices"][0]["running_version"], "1.1.0");

  // Delete on B; A no longer offers or serves it.
  auto rm = fw(*b_, {"rm", sha});
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  EXPECT_EQ(curl(*a_, {}, "/api/v1/update?project=blink&chip=esp32&version=1.0.0").status, 204);
  auto gone = curl(*a_, {}, "/fw/" + sha + ".bin");
  EXPECT_EQ(gone.status, 404);
  EXPECT_THAT(gone.body, HasSubstr("\"error\":\"unknown_firmware\""));
  EXPECT_EQ(admin(*a_, {"-X", "DELETE"}, "/api/v1/firmware/" + sha).status, 404);
}

TEST_F(MultiServe, ConcurrentPushesToBothServers) {
  // Six images, each pushed to both servers at the same time: each is stored once (one 201, one 200), and
  // both servers list and serve all of them.
  constexpr int kImages = 6;
  for (int i = 0; i < kImages; ++i)
    make_image(fmt::format("app-{}.bin", i), fmt::format("2.0.{}", i), std::to_string(10 + i));
  std::vector<int> status_a(kImages), status_b(kImages);
  std::thread on_b([&] {
    for (int i = 0; i < kImages; ++i) status_b[i] = push(*b_, fmt::format("app-{}.bin", i)).status;
  });
  for (int i = 0; i < kImages; ++i) status_a[i] = push(*a_, fmt::format("app-{}.bin", i)).status;
  on_b.join();
  for (int i = 0; i < kImages; ++i) {
    std::multiset<int> got{status_a[i], status_b[i]};
    EXPECT_EQ(got, (std::multiset<int>{200, 201}))
        << "image " << i << ": A " << status_a[i] << ", B " << status_b[i];
  }
  for (const auto* s : {a_.get(), b_.get()}) {
    auto list = json::parse(admin(*s, {}, "/api/v1/firmware").body, nullptr, false);
    ASSERT_TRUE(list.is_object());
    ASSERT_EQ(list["firmware"].size(), static_cast<size_t>(kImages));
    for (const auto& fw : list["firmware"]) {
      std::string sha = fw["sha256"];
      EXPECT_EQ(curl(*s, {}, "/fw/" + sha + ".bin").status, 200) << sha;
    }
  }
  auto latest = json::parse(curl(*b_, {}, "/api/v1/update?project=blink&chip=esp32&version=1.0.0").body,
                            nullptr, false);
  EXPECT_EQ(latest["version"], fmt::format("2.0.{}", kImages - 1));
}

// Issue 6 through two servers: the same image pushed on A while B deletes it, 15 bounded rounds. Whatever
// the order, a record either of them lists can be downloaded from both.
TEST_F(MultiServe, PushOnOneServerRacingDeleteOnTheOther) {
  make_image("app.bin", "3.0.0", "99");
  auto first = push(*a_, "app.bin");
  ASSERT_EQ(first.status, 201) << first.body;
  std::string sha = json::parse(first.body)["sha256"];
  for (int round = 0; round < 15; ++round) {
    Http pushed, deleted;
    std::thread on_b([&] { deleted = admin(*b_, {"-X", "DELETE"}, "/api/v1/firmware/" + sha); });
    pushed = push(*a_, "app.bin");
    on_b.join();
    EXPECT_THAT(pushed.status, ::testing::AnyOf(200, 201, 409)) << pushed.body;
    EXPECT_THAT(deleted.status, ::testing::AnyOf(200, 404)) << deleted.body;
    auto record = admin(*a_, {}, "/api/v1/firmware/" + sha);
    if (record.status == 200) {
      EXPECT_EQ(curl(*a_, {}, "/fw/" + sha + ".bin").status, 200) << "round " << round;
      EXPECT_EQ(curl(*b_, {}, "/fw/" + sha + ".bin").status, 200) << "round " << round;
    } else {
      EXPECT_EQ(record.status, 404) << record.body;
      ASSERT_EQ(push(*b_, "app.bin").status, 201);
    }
  }
}

}  // namespace
}  // namespace ota32::testing
