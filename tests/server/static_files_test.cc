#include <gtest/gtest.h>

#include <fstream>

#include "server/static_files.h"
#include "test_support.h"

namespace ota32::server {
namespace {

namespace fs = std::filesystem;

class StaticFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_ / "www" / "sub");
    std::ofstream(dir_ / "www" / "fw.bin") << "firmware";
    std::ofstream(dir_ / "www" / "sub" / "a b.bin") << "spaced";
    std::ofstream(dir_ / "www" / ".secret") << "hidden";
    std::ofstream(dir_ / "outside.txt") << "outside";
    fs::create_symlink(dir_ / "outside.txt", dir_ / "www" / "escape.bin");
    fs::create_symlink(dir_ / "www" / "fw.bin", dir_ / "www" / "inside.bin");
    root_ = fs::canonical(dir_ / "www");
  }
  ota32::testing::TempDir dir_;
  fs::path root_;
};

TEST_F(StaticFiles, ResolvesFilesUnderRoot) {
  auto p = resolve_static_path(root_, "/fw.bin");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(*p, root_ / "fw.bin");
  p = resolve_static_path(root_, "/sub/a%20b.bin");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(*p, root_ / "sub" / "a b.bin");
  p = resolve_static_path(root_, "//sub//a%20b.bin");
  ASSERT_TRUE(p);
  p = resolve_static_path(root_, "/inside.bin");  // a symlink that stays inside is fine
  ASSERT_TRUE(p);
}

TEST_F(StaticFiles, TraversalIsImpossible) {
  for (const char* path :
       {"/../outside.txt", "/sub/../../outside.txt", "/%2e%2e/outside.txt", "/sub/%2E%2E/%2e%2e/outside.txt",
        "/..%2foutside.txt", "/escape.bin", "/.secret", "/", "/sub", "/sub/", "/nope.bin", "fw.bin",
        "/%2Fetc%2Fpasswd", "/..\\outside.txt"}) {
    auto p = resolve_static_path(root_, path);
    ASSERT_FALSE(p) << path << " resolved to " << p->string();
    EXPECT_EQ(p.error().code(), ErrorCode::not_found) << path;
  }
  auto bad = resolve_static_path(root_, "/fw%2.bin");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::invalid_argument);
  EXPECT_FALSE(resolve_static_path(root_, "/fw.bin%00.txt"));
}

TEST_F(StaticFiles, HandlerGivesFileReplyOrJson404) {
  auto h = make_static_handler(root_);
  HttpRequest req{http::verb::get, "/fw.bin?x=1", 11};
  auto r = h(req, RequestContext{});
  ASSERT_TRUE(std::holds_alternative<FileReply>(r));
  EXPECT_EQ(std::get<FileReply>(r).path, root_ / "fw.bin");
  EXPECT_EQ(std::get<FileReply>(r).content_type, "application/octet-stream");
  HttpRequest missing{http::verb::get, "/../outside.txt", 11};
  auto m = h(missing, RequestContext{});
  ASSERT_TRUE(std::holds_alternative<HttpResponse>(m));
  EXPECT_EQ(std::get<HttpResponse>(m).result(), http::status::not_found);
  EXPECT_EQ(std::get<HttpResponse>(m)[http::field::content_type], "application/json");
}

TEST_F(StaticFiles, OnCompleteGetsTheRelativeName) {
  std::string got;
  auto h = make_static_handler(root_, [&](const std::string& f) { got = f; });
  HttpRequest req{http::verb::get, "/sub/a%20b.bin", 11};
  auto r = h(req, RequestContext{});
  ASSERT_TRUE(std::holds_alternative<FileReply>(r));
  std::get<FileReply>(r).on_complete();
  EXPECT_EQ(got, "sub/a b.bin");
}

}  // namespace
}  // namespace ota32::server
