#include "server/open_file_cache.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

namespace ota32::server {

OpenFile::~OpenFile() {
  if (fd >= 0) ::close(fd);
}

namespace {

bool same_version(const OpenFile& f, const struct stat& st) {
  return f.dev == st.st_dev && f.ino == st.st_ino && f.size == static_cast<uint64_t>(st.st_size) &&
         f.mtime.tv_sec == st.st_mtim.tv_sec && f.mtime.tv_nsec == st.st_mtim.tv_nsec;
}

}  // namespace

std::shared_ptr<OpenFile> OpenFileCache::open(const std::string& path, int& err) {
  err = 0;
  // Opened every time: the path decides which file is meant now, and the new descriptor's fstat is the
  // version check. It is closed again at once when the cache already holds that version.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = errno;
    return nullptr;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    err = errno;
    ::close(fd);
    return nullptr;
  }
  if (!S_ISREG(st.st_mode)) {
    err = EISDIR;
    ::close(fd);
    return nullptr;
  }
  auto it = files_.find(path);
  if (it != files_.end()) {
    if (auto f = it->second.lock(); f && same_version(*f, st)) {
      ::close(fd);
      return f;
    }
  }
  auto f = std::make_shared<OpenFile>();
  f->fd = fd;
  f->size = static_cast<uint64_t>(st.st_size);
  f->mtime = st.st_mtim;
  f->dev = st.st_dev;
  f->ino = st.st_ino;
  files_[path] = f;  // a download of the older version keeps its own descriptor until it ends
  if (files_.size() >= sweep_at_) {
    std::erase_if(files_, [](const auto& kv) { return kv.second.expired(); });
    sweep_at_ = std::max<std::size_t>(64, files_.size() * 2);
  }
  return f;
}

std::size_t OpenFileCache::live() const {
  std::size_t n = 0;
  for (const auto& kv : files_) n += kv.second.expired() ? 0 : 1;
  return n;
}

}  // namespace ota32::server
