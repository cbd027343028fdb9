// Whole-file reads and atomic writes (temp file in the same directory, fsync, rename): an output file is
// either the old one, absent, or complete — never half-written.
#pragma once

#include <filesystem>
#include <string>

#include "core/bytes.h"

namespace ota32 {

// Errors: not_found (no such file), io_error (other OS errors), each naming the path.
Result<Bytes> read_file(const std::filesystem::path& path);
Result<std::string> read_text_file(const std::filesystem::path& path);

Result<void> write_file_atomic(const std::filesystem::path& path, ByteView data);
inline Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view text) {
  return write_file_atomic(path, as_bytes(text));
}

}  // namespace ota32
