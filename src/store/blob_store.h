// Content-addressed firmware files: DATA/blobs/<sha256[0:2]>/<sha256>, written atomically (temp + rename), so
// several servers sharing the directory never see a partial file and may write the same blob concurrently.
// Files are mode 0600 and directories 0700 whatever the umask (the data directory holds secrets).
#pragma once

#include <filesystem>
#include <string_view>

#include "core/bytes.h"

namespace ota32 {

class BlobStore {
 public:
  explicit BlobStore(std::filesystem::path root) : root_(std::move(root)) {}

  const std::filesystem::path& root() const { return root_; }
  // The file of a blob (whether or not it exists). `sha256_hex` must be 64 lower-case hex digits.
  std::filesystem::path path_for(std::string_view sha256_hex) const;
  bool exists(std::string_view sha256_hex) const;
  // Writes data under its own SHA-256 (computed here) and returns that hex digest.
  Result<std::string> put(ByteView data) const;
  // Publishes the file `src` (on the same file system, e.g. an upload the server streamed into root()) as
  // the blob `sha256_hex`, which the caller has computed from its bytes: synced, then linked into place
  // atomically. `src` itself stays (its owner removes it), so the call may be repeated.
  Result<void> put_file(const std::filesystem::path& src, std::string_view sha256_hex) const;
  // Removes the blob; absent is not an error.
  Result<void> remove(std::string_view sha256_hex) const;

 private:
  std::filesystem::path root_;
};

// True for exactly 64 lower-case hex digits (the only names path_for accepts: no path tricks).
bool is_sha256_hex(std::string_view s);

}  // namespace ota32
