#include <gtest/gtest.h>

#include <fstream>

#include "server/http_types.h"
#include "test_support.h"

namespace ota32::server {
namespace {

HttpRequest make_request(http::verb method, std::string target) {
  HttpRequest req{method, target, 11};
  req.set(http::field::host, "127.0.0.1");
  return req;
}

HttpResponse text(std::string body) {
  HttpResponse res{http::status::ok, 11};
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

const HttpResponse& as_response(const Reply& r) { return std::get<HttpResponse>(r); }

TEST(Router, MatchesExactPathsAndCapturesParams) {
  Router router;
  router.add(http::verb::get, "/api/v1/firmware",
             [](const HttpRequest&, const RequestContext&) { return Reply{text("list")}; });
  router.add(http::verb::post, "/api/v1/devices/{id}/report",
             [](const HttpRequest&, const RequestContext& ctx) {
               return Reply{
                   text("report " + std::string(ctx.param("id")) + " " + std::string(ctx.query_param("v")))};
             });
  RequestContext ctx;
  EXPECT_EQ(as_response(router.route(make_request(http::verb::get, "/api/v1/firmware"), ctx)).body(), "list");
  auto r = router.route(make_request(http::verb::post, "/api/v1/devices/esp%2032/report?v=1.0+b&x"), ctx);
  EXPECT_EQ(as_response(r).body(), "report esp 32 1.0 b");
}

TEST(Router, UnknownPathIs404JsonAndWrongMethodIs405WithAllow) {
  Router router;
  router.add(http::verb::get, "/a/{x}",
             [](const HttpRequest&, const RequestContext&) { return Reply{text("a")}; });
  RequestContext ctx;
  auto nf = as_response(router.route(make_request(http::verb::get, "/b/1"), ctx));
  EXPECT_EQ(nf.result(), http::status::not_found);
  EXPECT_EQ(nf[http::field::content_type], "application/json");
  auto body = nlohmann::json::parse(nf.body());
  EXPECT_EQ(body["error"], "not_found");
  auto na = as_response(router.route(make_request(http::verb::delete_, "/a/1"), ctx));
  EXPECT_EQ(na.result(), http::status::method_not_allowed);
  EXPECT_EQ(na[http::field::allow], "GET, HEAD");
  // An empty {param} segment does not match.
  EXPECT_EQ(as_response(router.route(make_request(http::verb::get, "/a/"), ctx)).result(),
            http::status::not_found);
}

TEST(Router, UnknownPathWithInvalidUtf8IsStill404Json) {
  // The 404 body repeats the path; bytes that are not UTF-8 must not make the JSON encoder throw.
  Router router;
  RequestContext ctx;
  auto nf = as_response(router.route(make_request(http::verb::get, "/x%ff%fe/\xc3"), ctx));
  EXPECT_EQ(nf.result(), http::status::not_found);
  EXPECT_TRUE(nlohmann::json::accept(nf.body()));
  HttpRequest req = make_request(http::verb::get, "/");
  auto e = json_error(http::status::bad_request, "bad", "name \xff\xfe", req);
  EXPECT_EQ(e.result(), http::status::bad_request);
  EXPECT_TRUE(nlohmann::json::accept(e.body()));
}

TEST(Router, HeadFallsBackToGetAndExactBeatsPrefix) {
  Router router;
  router.add_prefix(http::verb::get, "/", [](const HttpRequest&, const RequestContext&) {
    return Reply{FileReply{"/nonexistent"}};
  });
  router.add(http::verb::get, "/metrics",
             [](const HttpRequest&, const RequestContext&) { return Reply{text("m")}; });
  RequestContext ctx;
  EXPECT_TRUE(std::holds_alternative<FileReply>(router.route(make_request(http::verb::head, "/x.bin"), ctx)));
  EXPECT_EQ(as_response(router.route(make_request(http::verb::head, "/metrics"), ctx)).body(), "m");
}

TEST(Router, BodyLimitIsTheMatchingRoutes) {
  Router router;
  router.add(
      http::verb::post, "/api/v1/firmware",
      [](const HttpRequest&, const RequestContext&) { return Reply{text("")}; }, 16 * 1024 * 1024);
  EXPECT_EQ(router.body_limit(http::verb::post, "/api/v1/firmware?x=1"), 16u * 1024 * 1024);
  EXPECT_EQ(router.body_limit(http::verb::post, "/other"), Router::kDefaultBodyLimit);
}

TEST(Router, HandlerExceptionBecomes500) {
  Router router;
  router.add(http::verb::get, "/boom",
             [](const HttpRequest&, const RequestContext&) -> Reply { throw std::runtime_error("kaput"); });
  RequestContext ctx;
  auto r = as_response(router.route(make_request(http::verb::get, "/boom"), ctx));
  EXPECT_EQ(r.result(), http::status::internal_server_error);
  EXPECT_EQ(nlohmann::json::parse(r.body())["message"], "kaput");
}

TEST(PercentDecode, RejectsMalformedAndNul) {
  std::string out;
  EXPECT_TRUE(percent_decode("a%2Fb", out));
  EXPECT_EQ(out, "a/b");
  EXPECT_FALSE(percent_decode("a%2", out));
  EXPECT_FALSE(percent_decode("a%zz", out));
  EXPECT_FALSE(percent_decode("a%00", out));
  EXPECT_TRUE(percent_decode("a+b", out, true));
  EXPECT_EQ(out, "a b");
}

// RFC 9112 6.1 / 6.3 / 3.2: what the session refuses with 400 and close, one row each.
TEST(FramingError, RefusesEveryTransferEncodingButChunkedAndHttp11WithoutHost) {
  struct Row {
    std::vector<std::pair<std::string, std::string>> fields;
    unsigned version;
    bool refused;
  };
  const std::vector<Row> rows = {
      {{{"Host", "a"}}, 11, false},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}}, 11, false},
      {{{"Host", "a"}, {"Transfer-Encoding", "Chunked"}}, 11, false},
      {{{"Host", "a"}, {"Content-Length", "3"}}, 11, false},
      {{}, 10, false},  // HTTP/1.0 needs no Host
      {{{"Host", "a"}, {"Transfer-Encoding", "gzip"}}, 11, true},
      {{{"Host", "a"}, {"Transfer-Encoding", "identity"}}, 11, true},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked, identity"}}, 11, true},
      {{{"Host", "a"}, {"Transfer-Encoding", "gzip, chunked"}}, 11, true},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", "chunked"}}, 11, true},
      {{{"Host", "a"}, {"Transfer-Encoding", "chunked"}, {"Content-Length", "3"}}, 11, true},
      {{{"Transfer-Encoding", "chunked"}}, 10, true},
      {{}, 11, true},
      {{{"Host", "a"}, {"Host", "b"}}, 11, true},
  };
  for (std::size_t i = 0; i < rows.size(); ++i) {
    http::request_header<> h;
    h.method(http::verb::post);
    h.target("/");
    h.version(rows[i].version);
    for (const auto& [name, value] : rows[i].fields) h.insert(name, value);
    EXPECT_EQ(framing_error(h).has_value(), rows[i].refused) << "row " << i;
  }
}

TEST(AuthorizationWhitespace, SeenOnlyInTheRawHeader) {
  EXPECT_FALSE(authorization_has_trailing_whitespace("GET / HTTP/1.1\r\nAuthorization: Bearer abc\r\n\r\n"));
  EXPECT_TRUE(authorization_has_trailing_whitespace("GET / HTTP/1.1\r\nAuthorization: Bearer abc \r\n\r\n"));
  EXPECT_TRUE(authorization_has_trailing_whitespace("GET / HTTP/1.1\r\nauthorization: Bearer abc\t\r\n\r\n"));
  EXPECT_TRUE(authorization_has_trailing_whitespace("GET / HTTP/1.1\nAUTHORIZATION: Bearer abc \n\n"));
  EXPECT_FALSE(authorization_has_trailing_whitespace("GET / HTTP/1.1\r\nX-Note: abc \r\nHost: a\r\n\r\n"));
  EXPECT_FALSE(authorization_has_trailing_whitespace("GET / HTTP/1.1\r\nX-Authorization: abc \r\n\r\n"));
}

TEST(Router, RouteOptionsReachTheSessionAndPlainAddKeepsTheDefaults) {
  Router router;
  Router::RouteOptions o;
  o.body_limit = 1234;
  o.body_dir = "/somewhere";
  o.before_body = [](const HttpRequest& req) -> std::optional<HttpResponse> {
    if (req[http::field::authorization].empty()) return json_error(http::status::unauthorized, "u", "m", req);
    return std::nullopt;
  };
  router.add(
      http::verb::post, "/up", [](const HttpRequest&, const RequestContext&) { return Reply{text("")}; },
      std::move(o));
  router.add(http::verb::post, "/small",
             [](const HttpRequest&, const RequestContext&) { return Reply{text("")}; });
  const auto& up = router.body_options(http::verb::post, "/up?x=1");
  EXPECT_EQ(up.body_limit, 1234u);
  EXPECT_EQ(up.body_dir, "/somewhere");
  ASSERT_TRUE(up.before_body);
  EXPECT_TRUE(up.before_body(make_request(http::verb::post, "/up")).has_value());
  const auto& small = router.body_options(http::verb::post, "/small");
  EXPECT_EQ(small.body_limit, Router::kDefaultBodyLimit);
  EXPECT_FALSE(small.before_body);
  EXPECT_TRUE(small.body_dir.empty());
  EXPECT_FALSE(router.body_options(http::verb::post, "/nothing").before_body);
}

TEST(BodyFile, RemovedWithItsRequestAndStaleOnesSwept) {
  ota32::testing::TempDir dir;
  std::string why;
  auto f = BodyFile::create(dir.path(), &why);
  ASSERT_TRUE(f) << why;
  ASSERT_TRUE(f->append("abc", 3));
  EXPECT_EQ(f->size, 3u);
  const auto path = f->path;
  EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::mask,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(BodyFile::remove_stale(dir.path(), std::chrono::hours(1)), 0u) << "a live upload was swept";
  f.reset();
  EXPECT_FALSE(std::filesystem::exists(path));
  // One left by a killed server, an hour and a minute old; a blob and a fresh upload stay.
  std::ofstream(dir / ".upload.old") << "x";
  std::ofstream(dir / ".upload.new") << "x";
  std::ofstream(dir / "blob") << "x";
  std::filesystem::last_write_time(dir / ".upload.old",
                                   std::filesystem::file_time_type::clock::now() - std::chrono::minutes(61));
  std::filesystem::last_write_time(dir / "blob",
                                   std::filesystem::file_time_type::clock::now() - std::chrono::hours(100));
  EXPECT_EQ(BodyFile::remove_stale(dir.path(), std::chrono::hours(1)), 1u);
  EXPECT_FALSE(std::filesystem::exists(dir / ".upload.old"));
  EXPECT_TRUE(std::filesystem::exists(dir / ".upload.new"));
  EXPECT_TRUE(std::filesystem::exists(dir / "blob"));
  EXPECT_FALSE(BodyFile::create(dir / "missing", &why));
  EXPECT_NE(why.find("missing"), std::string::npos) << why;
}

}  // namespace
}  // namespace ota32::server
