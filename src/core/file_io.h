// Whole-file reads and atomic writes (temp file in the same directory, then rename): an output file is
// either the old one, absent, or complete — never half-written. Each caller says whether the new file must
// also survive a power cut (Durability below). A destination that exists and is not a
// regular file (/dev/stdout, a FIFO) is written in place, every write checked; a directory is refused.
#pragma once

#include <filesystem>
#include <string>

#include "core/bytes.h"

namespace ota32 {

// Errors: not_found (no such file), io_error (other OS errors), each naming the path.
Result<Bytes> read_file(const std::filesystem::path& path);
// For inputs that have a largest possible size: a regular file larger than `max_size` is refused before a
// byte is read; anything else (a pipe, /dev/zero) is read in 64 KiB pieces and refused as soon as it passes
// `max_size`. out_of_range: "FILE: N bytes: larger than <what> can be (<max_size> bytes at most)".
Result<Bytes> read_file(const std::filesystem::path& path, uint64_t max_size, std::string_view what);
Result<std::string> read_text_file(const std::filesystem::path& path);

// What a rename-into-place promises after a crash or power cut.
enum class Durability {
  // fsync before the rename: once the call returns, the new contents survive a power cut. For state that
  // cannot be made again: device flash and config, agent state, download progress, keys.
  synced,
  // No fsync (what esptool and gen_esp32part do): a reader never sees a half-written file, but a power cut
  // soon after may leave the old file or an empty one. For build artifacts a rerun of the command remakes.
  artifact,
};

Result<void> write_file_atomic(const std::filesystem::path& path, ByteView data,
                               Durability durability = Durability::synced);
inline Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view text,
                                      Durability durability = Durability::synced) {
  return write_file_atomic(path, as_bytes(text), durability);
}

}  // namespace ota32
