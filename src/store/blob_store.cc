#include "store/blob_store.h"

#include <fmt/format.h>

#include <cassert>
#include <system_error>

#include "core/file_io.h"
#include "core/hash.h"

namespace ota32 {

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
  std::error_code ec;
  std::filesystem::create_directories(path.parent_path(), ec);
  if (ec)
    return Error(ErrorCode::io_error,
                 fmt::format("{}: cannot create directory: {}", path.parent_path().string(), ec.message()));
  // Always rewritten (not skipped when present): a re-upload repairs a blob removed by a concurrent delete.
  OTA32_TRY(write_file_atomic(path, data));
  return hex;
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
