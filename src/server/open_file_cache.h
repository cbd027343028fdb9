// Open files shared by the downloads of one event-loop thread (nginx's open_file_cache, without a timer).
// A fleet downloads the same few firmware files thousands of times at once: one descriptor per file version
// instead of one per download keeps 10 000 slow downloads within the process's descriptor limit. A file is
// looked up by path on every request (open + fstat), and the cached descriptor is reused only while it still
// names the same inode, size and mtime, so a file replaced on disk (rename, or rewritten in place) is served
// fresh to new requests while running downloads keep reading the version they started with (by rename).
// Not thread-safe: one cache per thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <ctime>
#include <memory>
#include <string>
#include <unordered_map>

namespace ota32::server {

struct OpenFile {
  int fd = -1;
  uint64_t size = 0;
  struct timespec mtime {};
  dev_t dev = 0;
  ino_t ino = 0;

  OpenFile() = default;
  OpenFile(const OpenFile&) = delete;
  OpenFile& operator=(const OpenFile&) = delete;
  ~OpenFile();
};

class OpenFileCache {
 public:
  // The regular file at `path`, opened read-only, or nullptr with `err` set to the errno (ENOENT, EACCES,
  // EMFILE, ...; EISDIR for a directory or anything else that is not a regular file).
  std::shared_ptr<OpenFile> open(const std::string& path, int& err);

  // Entries whose file is still held by a download, and all entries (expired ones are swept as it grows).
  std::size_t live() const;
  std::size_t entries() const { return files_.size(); }

 private:
  std::unordered_map<std::string, std::weak_ptr<OpenFile>> files_;
  std::size_t sweep_at_ = 64;
};

}  // namespace ota32::server
