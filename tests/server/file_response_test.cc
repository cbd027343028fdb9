#include <gtest/gtest.h>

#include "server/file_response.h"

namespace ota32::server {
namespace {

HttpRequest get(std::string target = "/fw.bin") {
  HttpRequest req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1");
  return req;
}

const FileStat kStat{1000, std::chrono::system_clock::time_point(std::chrono::seconds(1700000000))};

TEST(ParseRange, FormsOfOneRange) {
  bool unsat = false;
  auto r = parse_range("bytes=0-99", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0u);
  EXPECT_EQ(r->last, 99u);
  r = parse_range("bytes=900-", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->last, 999u);
  r = parse_range("bytes=-100", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 900u);
  r = parse_range("bytes=-5000", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->first, 0u);
  // ESP-IDF partial download asks for one past the end ("bytes=0-<image length>"): clamped.
  r = parse_range("bytes=0-1000", 1000, unsat);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->last, 999u);
  EXPECT_FALSE(unsat);
}

TEST(ParseRange, IgnoredOrUnsatisfiable) {
  bool unsat = false;
  EXPECT_FALSE(parse_range("items=0-1", 1000, unsat));
  EXPECT_FALSE(unsat);
  EXPECT_FALSE(parse_range("bytes=0-1,5-6", 1000, unsat));
  EXPECT_FALSE(unsat);
  EXPECT_FALSE(parse_range("bytes=9-3", 1000, unsat));
  EXPECT_FALSE(parse_range("bytes=x-3", 1000, unsat));
  EXPECT_FALSE(parse_range("bytes=99999999999999999999-", 1000, unsat));
  EXPECT_FALSE(unsat);
  EXPECT_FALSE(parse_range("bytes=1000-", 1000, unsat));
  EXPECT_TRUE(unsat);
  EXPECT_FALSE(parse_range("bytes=-0", 1000, unsat));
  EXPECT_TRUE(unsat);
}

TEST(EtagMatches, ListsStarAndWeak) {
  EXPECT_TRUE(etag_matches("\"a\"", "\"a\""));
  EXPECT_TRUE(etag_matches("\"b\", W/\"a\"", "\"a\""));
  EXPECT_TRUE(etag_matches("*", "\"a\""));
  EXPECT_FALSE(etag_matches("\"ab\"", "\"a\""));
  EXPECT_FALSE(etag_matches("", "\"a\""));
}

TEST(PlanFileResponse, FullGetHasLengthEtagAndReachesEnd) {
  auto plan = plan_file_response(get(), FileReply{"/x"}, kStat);
  EXPECT_EQ(plan.header.result(), http::status::ok);
  EXPECT_EQ(plan.header[http::field::content_length], "1000");
  EXPECT_EQ(plan.header[http::field::etag], default_etag(kStat));
  EXPECT_EQ(plan.header[http::field::accept_ranges], "bytes");
  EXPECT_EQ(plan.offset, 0u);
  EXPECT_EQ(plan.length, 1000u);
  EXPECT_TRUE(plan.reaches_end);
}

TEST(PlanFileResponse, RangeGives206AndTheWindow) {
  auto req = get();
  req.set(http::field::range, "bytes=100-199");
  auto plan = plan_file_response(req, FileReply{"/x"}, kStat);
  EXPECT_EQ(plan.header.result(), http::status::partial_content);
  EXPECT_EQ(plan.header[http::field::content_range], "bytes 100-199/1000");
  EXPECT_EQ(plan.header[http::field::content_length], "100");
  EXPECT_EQ(plan.offset, 100u);
  EXPECT_EQ(plan.length, 100u);
  EXPECT_FALSE(plan.reaches_end);
  req.set(http::field::range, "bytes=900-");
  EXPECT_TRUE(plan_file_response(req, FileReply{"/x"}, kStat).reaches_end);
}

TEST(PlanFileResponse, UnsatisfiableRangeIs416) {
  auto req = get();
  req.set(http::field::range, "bytes=1000-");
  auto plan = plan_file_response(req, FileReply{"/x"}, kStat);
  EXPECT_EQ(plan.header.result(), http::status::range_not_satisfiable);
  EXPECT_EQ(plan.header[http::field::content_range], "bytes */1000");
  EXPECT_EQ(plan.length, 0u);
}

TEST(PlanFileResponse, IfNoneMatchGives304WithoutBody) {
  auto req = get();
  FileReply reply{"/x"};
  reply.etag = "\"abc\"";
  req.set(http::field::if_none_match, "\"abc\"");
  auto plan = plan_file_response(req, reply, kStat);
  EXPECT_EQ(plan.header.result(), http::status::not_modified);
  EXPECT_EQ(plan.header[http::field::etag], "\"abc\"");
  EXPECT_EQ(plan.length, 0u);
  EXPECT_FALSE(plan.reaches_end);
  req.set(http::field::if_none_match, "\"other\"");
  EXPECT_EQ(plan_file_response(req, reply, kStat).header.result(), http::status::ok);
}

// kStat's mtime, 1700000000, is Tue, 14 Nov 2023 22:13:20 GMT.
TEST(PlanFileResponse, IfModifiedSinceGives304WhenNotNewer) {
  auto req = get();
  req.set(http::field::if_modified_since, "Tue, 14 Nov 2023 22:13:20 GMT");  // the copy wget -N holds
  auto plan = plan_file_response(req, FileReply{"/x"}, kStat);
  EXPECT_EQ(plan.header.result(), http::status::not_modified);
  EXPECT_EQ(plan.length, 0u);
  EXPECT_EQ(plan.header[http::field::last_modified], "Tue, 14 Nov 2023 22:13:20 GMT");
  // The obsolete forms RFC 9110 5.6.7 says a recipient accepts.
  req.set(http::field::if_modified_since, "Tuesday, 14-Nov-23 22:13:21 GMT");
  EXPECT_EQ(plan_file_response(req, FileReply{"/x"}, kStat).header.result(), http::status::not_modified);
  req.set(http::field::if_modified_since, "Tue Nov 14 22:13:20 2023");
  EXPECT_EQ(plan_file_response(req, FileReply{"/x"}, kStat).header.result(), http::status::not_modified);
  // A second older: the file changed since; a date that does not parse is ignored.
  req.set(http::field::if_modified_since, "Tue, 14 Nov 2023 22:13:19 GMT");
  EXPECT_EQ(plan_file_response(req, FileReply{"/x"}, kStat).header.result(), http::status::ok);
  req.set(http::field::if_modified_since, "yesterday");
  EXPECT_EQ(plan_file_response(req, FileReply{"/x"}, kStat).header.result(), http::status::ok);
  // If-None-Match wins over it (RFC 9110 13.1.3): a tag that does not match sends the file.
  req.set(http::field::if_modified_since, "Tue, 14 Nov 2023 22:13:20 GMT");
  req.set(http::field::if_none_match, "\"other\"");
  EXPECT_EQ(plan_file_response(req, FileReply{"/x"}, kStat).header.result(), http::status::ok);
}

TEST(PlanFileResponse, IfRangeWithAnotherVersionSendsEverything) {
  auto req = get();
  req.set(http::field::range, "bytes=100-");
  req.set(http::field::if_range, "\"old\"");
  auto plan = plan_file_response(req, FileReply{"/x"}, kStat);
  EXPECT_EQ(plan.header.result(), http::status::ok);
  EXPECT_EQ(plan.length, 1000u);
}

TEST(PlanFileResponse, HeadHasLengthButNoBody) {
  auto req = get();
  req.method(http::verb::head);
  FileReply reply{"/x"};
  reply.extra_headers = {{"x-MD5", "0123"}};
  auto plan = plan_file_response(req, reply, kStat);
  EXPECT_EQ(plan.header.result(), http::status::ok);
  EXPECT_EQ(plan.header[http::field::content_length], "1000");
  EXPECT_EQ(plan.header["x-MD5"], "0123");
  EXPECT_EQ(plan.length, 0u);
  EXPECT_FALSE(plan.reaches_end);
}

TEST(PlanFileResponse, DefaultEtagChangesWithTheFile) {
  FileStat other = kStat;
  other.size = 1001;
  EXPECT_NE(default_etag(kStat), default_etag(other));
  other = kStat;
  other.mtime += std::chrono::nanoseconds(1);
  EXPECT_NE(default_etag(kStat), default_etag(other));
}

}  // namespace
}  // namespace ota32::server
