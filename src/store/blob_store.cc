#include "store/blob_store.h"

#include <fmt/format.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "core/hash.h"

namespace ota32 {

namespace {

Error os_error(const std::filesystem::path& p, std::string_view what, int err) {
  return Error(ErrorCode::io_error, fmt::format("{}: {}: {}", p.string(), what, std::strerror(err)));
}

// The blob's directory, 0700 (and its parents up to the root, which the server creates 0700 itself).
Result<void> make_dir(const std::filesystem::path& dir) {
  if (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST) return {};
  if (errno == ENOENT) {
    std::error_code ec;
    std::filesystem::create_directories(dir.parent_path(), ec);
    if (!ec && (::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST)) return {};
  }
  return os_error(dir, "cannot create directory", errno);
}

// A temporary name beside `path`, created 0600 (mkstemp), then `fill`ed, synced and renamed over `path`.
template <class Fill>
Result<void> publish(const std::filesystem::path& path, Fill&& fill) {
  OTA32_TRY(make_dir(path.parent_path()));
  std::string tmp = (path.parent_path() / ("." + path.filename().string() + ".tmp.XXXXXX")).string();
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);
  if (fd < 0) return os_error(path.parent_path(), "cannot create a file", errno);
  Result<void> r = fill(fd, tmp);
  if (r && (::fchmod(fd, 0600) != 0 || ::fsync(fd) != 0)) r = os_error(path, "cannot write", errno);
  ::close(fd);
  if (r && ::rename(tmp.c_str(), path.c_str()) != 0) r = os_error(path, "cannot rename into place", errno);
  if (!r) ::unlink(tmp.c_str());
  return r;
}

}  // namespace

bool is_sha256_hex(std::string_view s) {
  if (s.size() != 64) return false;
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

std::filesystem::path BlobStore::path_for(std::string_view sha256_hex) const {
  assert(is_sha256_hex(sha256_hex));
  return root_ / std::string(sha256_hex.substr(0, 2)) / std::string(sha256_hex);
}

bool BlobStore::exists(std::string_view sha256_hex) const {
  std::error_code ec;
  return is_sha256_hex(sha256_hex) && std::filesystem::is_regular_file(path_for(sha256_hex), ec);
}

Result<std::string> BlobStore::put(ByteView data) const {
  std::string hex = to_hex(sha256(data));
  auto path = path_for(hex);
  // Always rewritten (not skipped when present): a re-upload repairs a blob removed by a concurrent delete.
  OTA32_TRY(publish(path, [&](int fd, const std::string&) -> Result<void> {
    const auto* p = data.data();
    std::size_t left = data.size();
    while (left > 0) {
      ssize_t n = ::write(fd, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return os_error(path, "cannot write", n < 0 ? errno : ENOSPC);
      p += n;
      left -= static_cast<std::size_t>(n);
    }
    return {};
  }));
  return hex;
}

Result<void> BlobStore::put_file(const std::filesystem::path& src, std::string_view sha256_hex) const {
  if (!is_sha256_hex(sha256_hex))
    return Error(ErrorCode::invalid_argument, fmt::format("'{}' is not a SHA-256 hex digest", sha256_hex));
  int in = ::open(src.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return os_error(src, "cannot open", errno);
  bool synced = ::fchmod(in, 0600) == 0 && ::fsync(in) == 0;
  int err = errno;
  ::close(in);
  if (!synced) return os_error(src, "cannot sync", err);
  auto path = path_for(sha256_hex);
  OTA32_TRY(make_dir(path.parent_path()));
  // A second name for the same inode (no copy), then renamed over the blob's name: atomic, and `src` stays.
  std::string tmp;
  for (int attempt = 0;; ++attempt) {
    tmp = (path.parent_path() / fmt::format(".{}.link.{}.{}", path.filename().string(), ::getpid(), attempt))
              .string();
    if (::link(src.c_str(), tmp.c_str()) == 0) break;
    if (errno != EEXIST || attempt > 100)
      return os_error(path.parent_path(), "cannot link the upload", errno);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    return os_error(path, "cannot rename into place", err);
  }
  return {};
}

Result<void> BlobStore::remove(std::string_view sha256_hex) const {
  if (!is_sha256_hex(sha256_hex))
    return Error(ErrorCode::invalid_argument, fmt::format("'{}' is not a SHA-256 hex digest", sha256_hex));
  std::error_code ec;
  std::filesystem::remove(path_for(sha256_hex), ec);
  if (ec)
    return Error(ErrorCode::io_error,
                 fmt::format("{}: cannot remove: {}", path_for(sha256_hex).string(), ec.message()));
  return {};
}

}  // namespace ota32
