#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include "core/splitmix.h"

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <limits>

namespace ota32 {

static Error os_error(const std::filesystem::path& path, std::string_view what, int err) {
  return Error(err == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
               fmt::format("{}: {}: {}", path.string(), what, std::strerror(err)));
}

Result<Bytes> read_file(const std::filesystem::path& path) {
  return read_file(path, std::numeric_limits<uint64_t>::max(), {});
}

static Error too_large(const std::filesystem::path& path, uint64_t size, bool at_least, uint64_t max_size,
                       std::string_view what) {
  return Error(ErrorCode::out_of_range,
               fmt::format("{}: {}{} bytes: larger than {} can be ({} bytes at most)", path.string(),
                           at_least ? "more than " : "", size, what, max_size));
}

Result<Bytes> read_file(const std::filesystem::path& path, uint64_t max_size, std::string_view what) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return os_error(path, "cannot open", errno);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    return os_error(path, "cannot stat", e);
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    return Error(ErrorCode::invalid_argument, fmt::format("{}: is a directory, not a file", path.string()));
  }
  // A regular file's size is known: refused before a byte is read. Anything else (a pipe, /dev/zero) is
  // read in pieces and refused as soon as it passes the limit.
  const bool regular = S_ISREG(st.st_mode);
  if (regular && static_cast<uint64_t>(st.st_size) > max_size) {
    ::close(fd);
    return too_large(path, static_cast<uint64_t>(st.st_size), false, max_size, what);
  }
  Bytes out;
  if (regular) out.reserve(static_cast<size_t>(st.st_size));
  uint8_t buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      ::close(fd);
      return os_error(path, "read failed", e);
    }
    if (n == 0) break;
    if (static_cast<uint64_t>(n) > max_size - out.size()) {  // a growing file, or not a regular file
      ::close(fd);
      return too_large(path, max_size, true, max_size, what);
    }
    out.insert(out.end(), buf, buf + n);
  }
  ::close(fd);
  return out;
}

Result<std::string> read_text_file(const std::filesystem::path& path) {
  auto b = read_file(path);
  if (!b) return b.error();
  return std::string(b->begin(), b->end());
}

namespace {

// A new file beside `path` named ".<name>.tmp.<suffix>", created with O_EXCL and mode 0666 so that the
// kernel applies the process umask itself: reading the umask needs umask(2), which sets it too, and
// another thread creating a file in between (the server writes blobs from worker threads) would get the
// temporary value.
int create_temp_beside(const std::filesystem::path& path, std::string& name) {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  static std::atomic<uint64_t> counter{0};
  SplitMix64 rng(static_cast<uint64_t>(::getpid()) << 32 ^
                 static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
                 counter.fetch_add(1) * 0x9E3779B97F4A7C15ull);
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::string suffix(6, 'x');
    for (char& c : suffix) c = kChars[rng.below(sizeof kChars - 1)];
    name = (dir / ("." + path.filename().string() + ".tmp." + suffix)).string();
    int fd = ::open(name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0 || errno != EEXIST) return fd;
  }
  errno = EEXIST;
  return -1;
}

Result<void> write_all(int fd, const std::filesystem::path& path, ByteView data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return os_error(path, "write failed", errno);
    }
    done += static_cast<size_t>(n);
  }
  return {};
}

// A device or FIFO (/dev/stdout, a pipe made with mkfifo): written to, never replaced by a renamed file.
Result<void> write_in_place(const std::filesystem::path& path, ByteView data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return os_error(path, "cannot open", errno);
  auto w = write_all(fd, path, data);
  if (::close(fd) != 0 && w) return os_error(path, "close failed", errno);
  return w;
}

}  // namespace

Result<void> write_file_atomic(const std::filesystem::path& path, ByteView data, Durability durability) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
    if (S_ISDIR(st.st_mode)) {
      return Error(ErrorCode::invalid_argument, fmt::format("{}: is a directory, not a file", path.string()));
    }
    return write_in_place(path, data);
  }
  std::string tmpl;
  int fd = create_temp_beside(path, tmpl);
  // The file is written beside its destination and renamed: a failure here is the destination's directory
  // (missing, read-only, full), so it is reported like `cp` would, without the temporary name.
  if (fd < 0) return os_error(path, "cannot create", errno);
  auto fail = [&](std::string_view what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return os_error(path, what, e);
  };
  if (auto w = write_all(fd, path, data); !w) {
    ::close(fd);
    ::unlink(tmpl.c_str());
    return w;
  }
  if (durability == Durability::synced && ::fsync(fd) != 0) return fail("fsync failed");
  if (::close(fd) != 0) {
    int e = errno;
    ::unlink(tmpl.c_str());
    return os_error(path, "close failed", e);
  }
  if (::rename(tmpl.c_str(), path.c_str()) != 0) {
    int e = errno;
    ::unlink(tmpl.c_str());
    return os_error(path, "rename failed", e);
  }
  return {};
}

}  // namespace ota32
