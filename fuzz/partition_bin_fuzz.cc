// Binary partition tables: the tool's reader (bin2csv), the chip's reader (esp_partition_table_verify), and
// the round trips bin -> table -> bin and bin -> csv -> bin.
#include "format/partition_table.h"
#include "fuzz_check.h"
#include "partition_common.h"

using namespace ota32;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t flags = in.take_u8();
  ByteView bin = in.rest();

  const uint32_t chip_size = uint32_t{1} << (20 + (flags >> 5));  // 1..128 MiB
  auto dev = parse_partition_table_as_device(bin, chip_size);
  if (dev) {
    FUZZ_CHECK(dev->entries.size() <= kPartitionTableMaxLength / kPartitionEntrySize, "%zu rows on the chip",
               dev->entries.size());
    for (const auto& e : dev->entries) {
      FUZZ_CHECK(e.offset <= chip_size, "chip accepted offset 0x%x", e.offset);
      FUZZ_CHECK(e.name.size() <= 16, "label of %zu bytes", e.name.size());
    }
  }

  const bool md5 = (flags & 1) == 0;
  auto t = parse_partition_binary(bin, BinaryOptions{md5, [](const std::string&) {}}, "fuzz.bin");
  if (!t) {
    FUZZ_CHECK(t.error().code() == ErrorCode::corrupt, "binary error is not 'corrupt': %s",
               t.error().message().c_str());
    return 0;
  }
  FUZZ_CHECK(t->entries.size() * kPartitionEntrySize <= bin.size(), "more entries than rows");
  for (const auto& e : t->entries) {
    FUZZ_CHECK(e.name.size() <= 16 && e.name.find('\0') == std::string::npos, "bad label '%s'",
               e.name.c_str());
  }

  // bin -> table -> bin -> table: the same entries, and the second binary is a fixed point.
  auto out = partition_table_to_binary_checked(*t, md5);
  FUZZ_CHECK(out.has_value() == (t->entries.size() <= (md5 ? 94u : 95u)), "%zu rows: fits=%d",
             t->entries.size(), out.has_value());
  if (out) {
    auto again = parse_partition_binary(*out, BinaryOptions{md5, {}}, "again.bin");
    FUZZ_CHECK(again.has_value(), "re-encoded table refused: %s", again.error().message().c_str());
    fuzz::check_same_entries(*t, *again, true, "bin -> table -> bin");
    auto out2 = partition_table_to_binary_checked(*again, md5);
    FUZZ_CHECK(out2 && *out2 == *out, "bin -> table -> bin is not a fixed point");
  }

  // bin2csv then csv2bin gives the same table when the tool would accept it (verified, names that print).
  PartitionVerifyOptions v;
  v.table_offset = (flags & 2) ? 0x9000 : kPartitionTableOffsetDefault;
  v.warn = [](const std::string&) {};
  if (verify_partition_table(*t, v, "fuzz.bin")) {
    CsvOptions csv;
    csv.table_offset = v.table_offset;
    csv.getenv = [](const std::string&) { return std::nullopt; };
    fuzz::check_csv_round_trip(*t, csv, "bin -> csv -> table");
  }
  return 0;
}
