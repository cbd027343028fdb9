// The largest input each command reads: a reader refuses what cannot be the thing it reads
// before reading it, so `ota32 image verify /dev/zero` or a 3 GB sparse "table" fail at once, in bounded
// memory, with one line naming the file and the limit.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "core/file_io.h"
#include "format/chip.h"

namespace ota32::cli {

struct InputLimit {
  uint64_t max_size;
  std::string_view what;  // "FILE: N bytes: larger than <what> can be (<max_size> bytes at most)"
};

// An app, bootloader or otadata image, a flash dump, a file to flash: the largest flash is 128MB
// (gen_esp32part's and esptool's largest --flash-size).
inline constexpr InputLimit kImageInput{kLargestFlashSize, kLargestFlashWhat};
// An ELF with its debug sections can be far larger than the image made from it; 512 MiB is above any
// ESP-IDF app's.
inline constexpr InputLimit kElfInput{512ull << 20, "an ELF file ota32 converts"};
inline constexpr InputLimit kPemInput{1ull << 20, "a PEM certificate file"};
// A signing or verification key (PEM), or the raw 32-byte eFuse digest of one.
inline constexpr InputLimit kKeyInput{1ull << 20, "a key or key digest file"};

inline Result<Bytes> read_input(const std::string& path, const InputLimit& limit) {
  return read_file(path, limit.max_size, limit.what);
}

// A partition table, CSV or binary (detected by content as gen_esp32part does): a CSV is at most 1 MiB
// (95 rows and any comments), a binary table (starts with AA 50) at most 0xC00 bytes, the table's area in
// flash (MAX_PARTITION_LENGTH). gen_esp32part reads a longer binary up to its first end-of-table row and
// ignores the rest; ota32 refuses it, as the bootloader never reads past 0xC00.
Result<Bytes> read_partition_table_input(const std::string& path);

}  // namespace ota32::cli
