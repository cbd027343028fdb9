#include "server/open_file_cache.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>

#include "test_support.h"

namespace ota32::server {
namespace {

namespace fs = std::filesystem;

std::string read_all(const OpenFile& f) {
  std::string s(f.size, '\0');
  EXPECT_EQ(::pread(f.fd, s.data(), s.size(), 0), static_cast<ssize_t>(s.size()));
  return s;
}

TEST(OpenFileCache, SameFileSharesOneDescriptor) {
  ota32::testing::TempDir dir;
  std::ofstream(dir / "fw.bin") << "firmware v1";
  OpenFileCache cache;
  int err = 0;
  auto a = cache.open((dir / "fw.bin").string(), err);
  ASSERT_TRUE(a) << err;
  auto b = cache.open((dir / "fw.bin").string(), err);
  ASSERT_TRUE(b) << err;
  EXPECT_EQ(a.get(), b.get());
  EXPECT_EQ(a->size, 11u);
  EXPECT_EQ(cache.live(), 1u);
}

TEST(OpenFileCache, ReplacedFileIsOpenedAfreshWhileTheOldDownloadKeepsItsVersion) {
  ota32::testing::TempDir dir;
  std::ofstream(dir / "fw.bin") << "firmware v1";
  OpenFileCache cache;
  int err = 0;
  auto old = cache.open((dir / "fw.bin").string(), err);
  ASSERT_TRUE(old);
  std::ofstream(dir / "new.tmp") << "firmware v2 is longer";
  fs::rename(dir / "new.tmp", dir / "fw.bin");  // how `ota32 fw push` and editors replace a file
  auto fresh = cache.open((dir / "fw.bin").string(), err);
  ASSERT_TRUE(fresh);
  EXPECT_NE(old.get(), fresh.get());
  EXPECT_EQ(read_all(*old), "firmware v1");
  EXPECT_EQ(read_all(*fresh), "firmware v2 is longer");
}

TEST(OpenFileCache, FileRewrittenInPlaceIsNotServedFromTheOldEntry) {
  ota32::testing::TempDir dir;
  std::ofstream(dir / "fw.bin") << "v1";
  OpenFileCache cache;
  int err = 0;
  auto old = cache.open((dir / "fw.bin").string(), err);
  ASSERT_TRUE(old);
  std::ofstream(dir / "fw.bin", std::ios::trunc) << "version 2";  // cp over the file: same inode
  auto fresh = cache.open((dir / "fw.bin").string(), err);
  ASSERT_TRUE(fresh);
  EXPECT_NE(old.get(), fresh.get());
  EXPECT_EQ(fresh->size, 9u);
}

TEST(OpenFileCache, DescriptorClosesWithItsLastDownload) {
  ota32::testing::TempDir dir;
  std::ofstream(dir / "fw.bin") << "firmware";
  OpenFileCache cache;
  int err = 0;
  int fd;
  {
    auto f = cache.open((dir / "fw.bin").string(), err);
    ASSERT_TRUE(f);
    fd = f->fd;
  }
  EXPECT_EQ(cache.live(), 0u);
  errno = 0;
  EXPECT_EQ(::fcntl(fd, F_GETFD), -1);  // closed (the number is not reused in between: nothing opened)
  EXPECT_EQ(errno, EBADF);
}

TEST(OpenFileCache, ErrorsCarryTheErrno) {
  ota32::testing::TempDir dir;
  OpenFileCache cache;
  int err = 0;
  EXPECT_FALSE(cache.open((dir / "missing.bin").string(), err));
  EXPECT_EQ(err, ENOENT);
  fs::create_directories(dir / "sub");
  EXPECT_FALSE(cache.open((dir / "sub").string(), err));
  EXPECT_EQ(err, EISDIR);
}

TEST(OpenFileCache, ExpiredEntriesAreSwept) {
  ota32::testing::TempDir dir;
  OpenFileCache cache;
  int err = 0;
  for (int i = 0; i < 500; ++i) {
    auto p = dir / ("f" + std::to_string(i));
    std::ofstream(p) << i;
    ASSERT_TRUE(cache.open(p.string(), err));
  }
  // Every entry expired as soon as it was returned: the sweep keeps the map from growing with the number of
  // files ever served.
  EXPECT_EQ(cache.live(), 0u);
  EXPECT_LT(cache.entries(), 128u);
}

}  // namespace
}  // namespace ota32::server
