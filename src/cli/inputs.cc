#include "cli/inputs.h"

#include <fmt/format.h>

#include "core/file_io.h"
#include "format/partition_table.h"

namespace ota32::cli {

Result<Bytes> read_partition_table_input(const std::string& path) {
  OTA32_ASSIGN(Bytes b, read_file(path, 1u << 20, "a partition table (CSV or binary)"));
  if (b.size() > kPartitionTableMaxLength && b[0] == 0xAA && b[1] == 0x50) {
    return Error(ErrorCode::out_of_range,
                 fmt::format("{}: {} bytes: larger than a binary partition table can be ({} bytes at most)",
                             path, b.size(), kPartitionTableMaxLength));
  }
  return b;
}

}  // namespace ota32::cli
