#include <gtest/gtest.h>

#include "server/http_types.h"

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

}  // namespace
}  // namespace ota32::server
