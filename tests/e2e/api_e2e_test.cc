// The catalog API end to end: the real ota32-serve on 127.0.0.1 (TLS with its zero-config CA), driven by
// curl and by `ota32 fw push|list|rm` (which execs ota32-serve's fw client).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <signal.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "e2e/serve_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

class ApiE2e : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto [name, version, seed] :
         {std::tuple{"blink-1.0.0.bin", "1.0.0", "1"}, std::tuple{"blink-1.1.0.bin", "1.1.0", "2"}}) {
      auto r = run_ota32({"image", "make", "-o", (tmp_ / name).string(), "-c", "esp32", "--project", "blink",
                          "--version", version, "--size", "256K", "--seed", seed});
      ASSERT_EQ(r.exit_code, 0) << r.err;
    }
    ASSERT_TRUE(write_file_atomic(tmp_ / "not-firmware.bin", std::string_view("hello, world\n")));
    std::string why;
    server_ =
        ServeProcess::start({"--data", (tmp_ / "data").string(), "--access-log", "off"}, tmp_.path(), &why);
    ASSERT_TRUE(server_) << why;
    std::string out = server_->out();
    auto pos = out.find("admin token: ");
    ASSERT_NE(pos, std::string::npos) << out;
    token_ = out.substr(pos + 13, 64);
    ca_ = (tmp_ / "data" / "ca_cert.pem").string();
  }

  ProcessResult curl(std::vector<std::string> args) {
    std::vector<std::string> a = {"-sS", "--cacert", ca_};
    a.insert(a.end(), args.begin(), args.end());
    return run_process("/usr/bin/curl", a, {}, tmp_.path(), std::chrono::seconds(30));
  }
  ProcessResult fw(std::vector<std::string> args, const std::string& token) {
    args.insert(args.begin(), "fw");
    args.insert(args.end(), {"--server", server_->url(""), "--token", token, "--ca", ca_});
    return run_process(ota32_binary(), args, {}, tmp_.path());
  }

  TempDir tmp_;
  std::unique_ptr<ServeProcess> server_;
  std::string token_, ca_;
};

TEST_F(ApiE2e, AdminApiRefusesRequestsWithoutAValidToken) {
  ASSERT_EQ(token_.size(), 64u);
  auto none = curl({"-w", "\n%{http_code}", server_->url("/api/v1/firmware")});
  EXPECT_THAT(none.out, HasSubstr("\"error\":\"unauthorized\""));
  EXPECT_THAT(none.out, ::testing::EndsWith("401"));
  auto wrong = curl({"-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer nope",
                     server_->url("/api/v1/devices")});
  EXPECT_EQ(wrong.out, "401");
  auto push = fw({"push", "blink-1.0.0.bin"}, std::string(64, '0'));
  EXPECT_EQ(push.exit_code, 1);
  EXPECT_THAT(push.err, HasSubstr("401 unauthorized"));
  auto ok = curl({"-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer " + token_,
                  server_->url("/api/v1/devices")});
  EXPECT_EQ(ok.out, "200");
}

TEST_F(ApiE2e, PushCheckDownloadAndReport) {
  auto push = fw({"push", "blink-1.0.0.bin", "blink-1.1.0.bin"}, token_);
  ASSERT_EQ(push.exit_code, 0) << push.err;
  EXPECT_THAT(push.out, HasSubstr("uploaded"));
  EXPECT_THAT(push.out, HasSubstr("blink 1.1.0 esp32 (262144 bytes)"));
  auto again = fw({"push", "blink-1.1.0.bin"}, token_);
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_THAT(again.out, HasSubstr("already present"));

  auto check = curl({server_->url("/api/v1/update?project=blink&chip=esp32&version=1.0.0&device=dev-1")});
  ASSERT_EQ(check.exit_code, 0) << check.err;
  auto offer = nlohmann::json::parse(check.out, nullptr, false);
  ASSERT_TRUE(offer.is_object()) << check.out;
  EXPECT_EQ(offer["version"], "1.1.0");
  EXPECT_EQ(offer["size"], 262144);
  auto dl = curl({"-o", "got.bin", "-w", "%{http_code}", offer["url"].get<std::string>()});
  EXPECT_EQ(dl.out, "200");
  EXPECT_EQ(read_file(tmp_ / "got.bin").value(), read_file(tmp_ / "blink-1.1.0.bin").value());
  auto current = curl({"-o", "/dev/null", "-w", "%{http_code}",
                       server_->url("/api/v1/update?project=blink&chip=esp32&version=1.1.0")});
  EXPECT_EQ(current.out, "204");

  auto report = curl({"-X", "POST", "-d", R"({"state":"booted","version":"1.1.0"})",
                      server_->url("/api/v1/devices/dev-1/report")});
  EXPECT_THAT(report.out, HasSubstr("\"state\":\"booted\""));
  auto bad = curl(
      {"-X", "POST", "-d", "{oops", "-w", "\n%{http_code}", server_->url("/api/v1/devices/dev-1/report")});
  EXPECT_THAT(bad.out, HasSubstr("bad_json"));
  EXPECT_THAT(bad.out, ::testing::EndsWith("400"));

  // Arduino HTTPUpdate: the binary with x-MD5, then 304 once current.
  auto arduino = curl({"-D", "headers.txt", "-o", "arduino.bin", "-w", "%{http_code}", "-A",
                       "ESP32-http-Update", "-H", "x-ESP32-STA-MAC: 24:0A:C4:A3:15:3C", "-H",
                       "x-ESP32-version: 1.0.0", server_->url("/api/v1/arduino/blink")});
  EXPECT_EQ(arduino.out, "200");
  EXPECT_THAT(read_text_file(tmp_ / "headers.txt").value(), HasSubstr("x-MD5: "));
  auto arduino_current = curl({"-o", "/dev/null", "-w", "%{http_code}", "-A", "ESP32-http-Update", "-H",
                               "x-ESP32-STA-MAC: 24:0A:C4:A3:15:3C", "-H", "x-ESP32-version: 1.1.0",
                               server_->url("/api/v1/arduino/blink")});
  EXPECT_EQ(arduino_current.out, "304");

  auto list = fw({"list", "--json"}, token_);
  ASSERT_EQ(list.exit_code, 0) << list.err;
  auto listed = nlohmann::json::parse(list.out, nullptr, false);
  ASSERT_TRUE(listed.is_object()) << list.out;
  ASSERT_EQ(listed["firmware"].size(), 2u);
  std::string sha = offer["sha256"];
  auto rm = fw({"rm", sha}, token_);
  EXPECT_EQ(rm.exit_code, 0) << rm.err;
  auto gone = curl({"-o", "/dev/null", "-w", "%{http_code}", offer["url"].get<std::string>()});
  EXPECT_EQ(gone.out, "404");
  auto rm_again = fw({"rm", sha}, token_);
  EXPECT_EQ(rm_again.exit_code, 1);
  EXPECT_THAT(rm_again.err, HasSubstr("404 unknown_firmware"));
}

TEST_F(ApiE2e, BadUploadsAreRefusedWithTheReason) {
  auto junk = fw({"push", "not-firmware.bin"}, token_);
  EXPECT_EQ(junk.exit_code, 1);
  EXPECT_THAT(junk.err, HasSubstr("422 invalid_image"));
  EXPECT_THAT(junk.err, HasSubstr("magic"));
  auto wrong_chip = fw({"push", "blink-1.0.0.bin", "--chip", "esp32c3"}, token_);
  EXPECT_EQ(wrong_chip.exit_code, 1);
  EXPECT_THAT(wrong_chip.err, HasSubstr("chip_id"));
  auto raw = curl({"-X", "POST", "--data-binary", "@not-firmware.bin", "-w", "\n%{http_code}", "-H",
                   "Authorization: Bearer " + token_, server_->url("/api/v1/firmware")});
  EXPECT_THAT(raw.out, ::testing::EndsWith("422"));
  auto list = fw({"list", "--json"}, token_);
  EXPECT_EQ(nlohmann::json::parse(list.out, nullptr, false)["firmware"].size(), 0u);
}

// A body over --max-upload gets 413 and the JSON error even while the client is still sending it: the server
// reads and discards the rest (lingering close) instead of closing on unread data, which would make the
// kernel reset the connection before curl has read the reply. "Expect:" stops curl from waiting for
// 100-continue, so the body is on its way when the 413 is sent.
TEST_F(ApiE2e, OversizedUploadGets413AndTheJsonErrorNotAReset) {
  ASSERT_EQ(server_->stop(SIGTERM), 0);
  std::string why;
  server_ = ServeProcess::start(
      {"--data", (tmp_ / "data").string(), "--access-log", "off", "--max-upload", "64K"}, tmp_.path(), &why);
  ASSERT_TRUE(server_) << why;
  ASSERT_TRUE(write_file_atomic(tmp_ / "big.bin", std::string(8 << 20, '\x5a')));
  for (int i = 0; i < 5; ++i) {
    for (bool chunked : {false, true}) {
      std::vector<std::string> args = {"-X",
                                       "POST",
                                       "-H",
                                       "Expect:",
                                       "-H",
                                       "Authorization: Bearer " + token_,
                                       "--data-binary",
                                       "@big.bin",
                                       "-o",
                                       "reply.json",
                                       "-w",
                                       "%{http_code}"};
      if (chunked) args.insert(args.end(), {"-H", "Transfer-Encoding: chunked"});
      args.push_back(server_->url("/api/v1/firmware"));
      std::filesystem::remove(tmp_ / "reply.json");
      auto r = curl(args);
      EXPECT_EQ(r.exit_code, 0) << (chunked ? "chunked: " : "content-length: ") << r.err;
      EXPECT_EQ(r.out, "413") << (chunked ? "chunked" : "content-length");
      auto body = read_text_file(tmp_ / "reply.json");
      ASSERT_TRUE(body) << "no reply body";
      auto j = nlohmann::json::parse(*body, nullptr, false);
      EXPECT_EQ(j["error"], "body_too_large") << *body;
      EXPECT_THAT(j["message"].get<std::string>(), HasSubstr("larger than")) << *body;
    }
  }
  // The connection was closed, the server goes on serving.
  auto ok = curl({"-o", "/dev/null", "-w", "%{http_code}", "-H", "Authorization: Bearer " + token_,
                  server_->url("/api/v1/firmware")});
  EXPECT_EQ(ok.out, "200");
}

// `ota32 serve --require-signed PUB.pem`: unsigned, wrongly signed and damaged uploads get 422 naming why;
// `fw push --sign KEY.pem` signs on the client, and what the server then offers verifies with the key.
TEST(ApiSignedE2e, RequireSignedRefusesWhatItCannotVerifyAndFwPushSigns) {
  TempDir tmp;
  auto in_tmp = [&](const char* name) { return (tmp / name).string(); };
  for (const char* k : {"trusted", "other"}) {
    auto key = run_ota32({"sign", "key", "--scheme", "ecdsa256", "-o", in_tmp(k) + ".pem"});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    auto pub = run_ota32({"sign", "pubkey", in_tmp(k) + ".pem", "-o", in_tmp(k) + ".pub.pem"});
    ASSERT_EQ(pub.exit_code, 0) << pub.err;
  }
  auto made = run_ota32({"image", "make", "-o", in_tmp("app.bin"), "-c", "esp32", "--project", "blink",
                         "--version", "1.0.0", "--size", "128K"});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  std::string why;
  auto server = ServeProcess::start(
      {"--data", in_tmp("data"), "--access-log", "off", "--require-signed", in_tmp("trusted.pub.pem")},
      tmp.path(), &why);
  ASSERT_TRUE(server) << why;
  EXPECT_THAT(server->err(), HasSubstr("uploads must be signed: trusting " + in_tmp("trusted.pub.pem") +
                                       " (ecdsa256, key digest "));
  std::string out = server->out();
  auto pos = out.find("admin token: ");
  ASSERT_NE(pos, std::string::npos) << out;
  const std::string token = out.substr(pos + 13, 64), ca = in_tmp("data/ca_cert.pem");
  auto fw = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "fw");
    args.insert(args.end(), {"--server", server->url(""), "--token", token, "--ca", ca});
    return run_process(ota32_binary(), args, {}, tmp.path());
  };
  auto post = [&](const std::string& file) {
    return run_process("/usr/bin/curl",
                       {"-sS", "--cacert", ca, "-w", "\n%{http_code}", "-H", "Authorization: Bearer " + token,
                        "--data-binary", "@" + file, server->url("/api/v1/firmware?name=x.bin")},
                       {}, tmp.path(), std::chrono::seconds(30));
  };

  auto unsigned_push = fw({"push", "app.bin"});
  EXPECT_EQ(unsigned_push.exit_code, 1);
  EXPECT_THAT(unsigned_push.err,
              HasSubstr("app.bin: server answered 422 unsigned: app.bin: the image is not signed"));
  auto wrong = fw({"push", "--sign", "other.pem", "app.bin"});
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err,
              HasSubstr("server answered 422 untrusted_signature: app.bin: no signature block matches "
                        "the trusted keys: block 0 is signed by the ecdsa256 key with digest"));

  // A damaged block (its CRC no longer matches), sent with curl to see the JSON reason.
  auto s =
      run_ota32({"sign", "sign", "--key", in_tmp("trusted.pem"), in_tmp("app.bin"), "-o", in_tmp("s.bin")});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  Bytes damaged = read_file(tmp / "s.bin").value();
  damaged[128 * 1024 + 40] ^= 0x01;  // inside block 0's key
  ASSERT_TRUE(write_file_atomic(tmp / "damaged.bin", damaged));
  auto d = post(in_tmp("damaged.bin"));
  EXPECT_THAT(d.out, ::testing::EndsWith("\n422"));
  auto dj = nlohmann::json::parse(d.out.substr(0, d.out.rfind('\n')), nullptr, false);
  ASSERT_TRUE(dj.is_object()) << d.out;
  EXPECT_EQ(dj["error"], "damaged_signature_block");
  EXPECT_THAT(dj["message"].get<std::string>(), HasSubstr("x.bin: damaged signature block: block 0: "));

  // Signed on the client: accepted, and the served bytes verify with the trusted public key.
  auto good = fw({"push", "--sign", "trusted.pem", "app.bin"});
  ASSERT_EQ(good.exit_code, 0) << good.err;
  EXPECT_THAT(good.out, HasSubstr("signed app.bin: 1 signature block(s) over 131072 bytes\nuploaded "));
  auto check =
      run_process("/usr/bin/curl",
                  {"-sS", "--cacert", ca, server->url("/api/v1/update?project=blink&chip=esp32&version=0.9")},
                  {}, tmp.path(), std::chrono::seconds(30));
  auto offer = nlohmann::json::parse(check.out, nullptr, false);
  ASSERT_TRUE(offer.is_object()) << check.out;
  EXPECT_EQ(offer["size"], 131072 + 4096);
  auto dl =
      run_process("/usr/bin/curl", {"-sS", "--cacert", ca, "-o", "got.bin", offer["url"].get<std::string>()},
                  {}, tmp.path(), std::chrono::seconds(30));
  ASSERT_EQ(dl.exit_code, 0) << dl.err;
  auto v = run_ota32({"sign", "verify", "--key", in_tmp("trusted.pub.pem"), in_tmp("got.bin")});
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  // Another key's block first, the trusted one second: block 1 verifies.
  auto two = fw({"push", "--sign", "other.pem", "--sign", "trusted.pem", "app.bin", "--channel", "beta"});
  ASSERT_EQ(two.exit_code, 0) << two.err;
  EXPECT_THAT(two.out, HasSubstr("signed app.bin: 2 signature block(s)"));
  // A missing key file is a usage error before anything is sent.
  auto missing = fw({"push", "--sign", "nope.pem", "app.bin"});
  EXPECT_NE(missing.exit_code, 0);
}

}  // namespace
}  // namespace ota32::testing
