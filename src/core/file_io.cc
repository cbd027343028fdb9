#include "core/file_io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>

namespace ota32 {

static Error os_error(const std::filesystem::path& path, std::string_view what, int err) {
  return Error(err == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
               fmt::format("{}: {}: {}", path.string(), what, std::strerror(err)));
}

Result<Bytes> read_file(const std::filesystem::path& path) {
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
  Bytes out;
  out.reserve(static_cast<size_t>(st.st_size));
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

Result<void> write_file_atomic(const std::filesystem::path& path, ByteView data) {
  std::filesystem::path dir = path.parent_path();
  if (dir.empty()) dir = ".";
  std::string tmpl = (dir / ("." + path.filename().string() + ".tmp.XXXXXX")).string();
  int fd = ::mkstemp(tmpl.data());
  // The file is written beside its destination and renamed: a failure here is the destination's directory
  // (missing, read-only, full), so it is reported like `cp` would, without the temporary name.
  if (fd < 0) return os_error(path, "cannot create", errno);
  auto fail = [&](std::string_view what) {
    int e = errno;
    ::close(fd);
    ::unlink(tmpl.c_str());
    return os_error(path, what, e);
  };
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("write failed");
    }
    done += static_cast<size_t>(n);
  }
  // mkstemp creates 0600; give the file the usual permissions (umask applies).
  mode_t mask = ::umask(0);
  ::umask(mask);
  if (::fchmod(fd, 0666 & ~mask) != 0) return fail("chmod failed");
  if (::fsync(fd) != 0) return fail("fsync failed");
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
