#include <gtest/gtest.h>

#include "agent/update_client.h"
#include "scripted_server.h"

namespace ota32::agent {
namespace {

using ota32::testing::http_response;
using ota32::testing::ScriptedReply;
using ota32::testing::ScriptedServer;

std::string base_of(const ScriptedServer& s) { return "http://127.0.0.1:" + std::to_string(s.port()); }

TEST(UpdateClient, NoUpdateIs204) {
  ScriptedServer server([](const std::string&, int) { return ScriptedReply{http_response(204, "")}; });
  HttpClient client{HttpOptions{}};
  auto r = check_for_update(client, {base_of(server), "simple_ota", "1", "esp32", "dev 1"});
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_FALSE(*r);
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].starts_with(
      "GET /api/v1/update?project=simple_ota&version=1&chip=esp32&device=dev%201 HTTP/1.1\r\n"))
      << reqs[0];
}

TEST(UpdateClient, OfferWithRelativeUrl) {
  std::string sha(64, 'a');
  ScriptedServer server([&](const std::string&, int) {
    std::string body = R"({"url":"/fw/abc.bin","size":1234,"sha256":")" + sha + R"(","version":"2"})";
    return ScriptedReply{http_response(200, body, "Content-Length: " + std::to_string(body.size()) + "\r\n")};
  });
  HttpClient client{HttpOptions{}};
  auto r = check_for_update(client, {base_of(server), "p", "1", "esp32", "d"});
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_TRUE(*r);
  EXPECT_EQ((*r)->url, base_of(server) + "/fw/abc.bin");
  EXPECT_EQ((*r)->size, 1234u);
  EXPECT_EQ((*r)->version, "2");
  EXPECT_EQ((*r)->sha256[0], 0xaa);
}

TEST(UpdateClient, SendsTheRunningSecureVersionAndReadsTheOffered) {
  std::string sha(64, 'b');
  ScriptedServer server([&](const std::string&, int) {
    std::string body =
        R"({"url":"/fw/x.bin","size":1,"sha256":")" + sha + R"(","version":"3","secure_version":4})";
    return ScriptedReply{http_response(200, body, "Content-Length: " + std::to_string(body.size()) + "\r\n")};
  });
  HttpClient client{HttpOptions{}};
  UpdateQuery q{base_of(server), "p", "2", "esp32", "d"};
  q.secure_version = 3;
  auto r = check_for_update(client, q);
  ASSERT_TRUE(r && *r) << (r ? "no offer" : r.error().message());
  EXPECT_EQ((*r)->secure_version, 4u);
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(
      reqs[0].starts_with("GET /api/v1/update?project=p&version=2&chip=esp32&device=d&secure_version=3 "))
      << reqs[0];
}

TEST(UpdateClient, BadRepliesAreCorrupt) {
  for (std::string body : {std::string("not json"), std::string(R"({"size":1})"),
                           std::string(R"({"url":"/x","sha256":"zz"})")}) {
    ScriptedServer server([&](const std::string&, int) {
      return ScriptedReply{
          http_response(200, body, "Content-Length: " + std::to_string(body.size()) + "\r\n")};
    });
    HttpClient client{HttpOptions{}};
    auto r = check_for_update(client, {base_of(server), "p", "1", "esp32", "d"});
    ASSERT_FALSE(r) << body;
    EXPECT_EQ(r.error().code(), ErrorCode::corrupt) << r.error().message();
  }
}

TEST(UpdateClient, ServerErrorsCarryTheJsonReason) {
  ScriptedServer server([](const std::string&, int) {
    std::string body = R"({"error":"unknown project"})";
    return ScriptedReply{http_response(404, body, "Content-Length: " + std::to_string(body.size()) + "\r\n")};
  });
  HttpClient client{HttpOptions{}};
  auto r = check_for_update(client, {base_of(server), "p", "1", "esp32", "d"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(r.error().message().find("unknown project"), std::string::npos) << r.error().message();
}

TEST(UpdateClient, ReportPostsJson) {
  ScriptedServer server([](const std::string&, int) { return ScriptedReply{http_response(204, "")}; });
  HttpClient client{HttpOptions{}};
  auto r = report_state(client, base_of(server), "dev1", {ReportState::failed, "1", "image for esp32c3"});
  ASSERT_TRUE(r) << r.error().message();
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].starts_with("POST /api/v1/devices/dev1/report HTTP/1.1\r\n")) << reqs[0];
  EXPECT_NE(reqs[0].find("Content-Type: application/json\r\n"), std::string::npos);
  EXPECT_NE(reqs[0].find(R"({"error":"image for esp32c3","state":"failed","version":"1"})"),
            std::string::npos)
      << reqs[0];
}

TEST(UpdateClient, ReportNamesProjectAndChipWhenKnown) {
  ScriptedServer server([](const std::string&, int) { return ScriptedReply{http_response(204, "")}; });
  HttpClient client{HttpOptions{}};
  auto r = report_state(client, base_of(server), "24:0a:c4:00:00:01",
                        {ReportState::booted, "2", "", "simple_ota", "esp32"});
  ASSERT_TRUE(r) << r.error().message();
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].starts_with("POST /api/v1/devices/24%3A0a%3Ac4%3A00%3A00%3A01/report HTTP/1.1\r\n"))
      << reqs[0];
  EXPECT_NE(reqs[0].find(R"({"chip":"esp32","project":"simple_ota","state":"booted","version":"2"})"),
            std::string::npos)
      << reqs[0];
}

}  // namespace
}  // namespace ota32::agent
