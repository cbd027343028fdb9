// gen_esp32part.py's CSV input: parse, verify, csv2bin, and the round trips the tool guarantees.
#include <optional>
#include <string>

#include "format/partition_table.h"
#include "fuzz_check.h"
#include "partition_common.h"

using namespace ota32;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t flags = in.take_u8();
  ByteView text = in.rest();
  if (looks_like_partition_binary(text)) return 0;  // the binary target's job

  PartitionToolOptions opt;
  opt.csv.table_offset = (flags & 1) ? 0x9000 : kPartitionTableOffsetDefault;
  if (flags & 2) opt.csv.primary_bootloader_offset = 0x1000;
  if (flags & 4) opt.csv.recovery_bootloader_offset = 0x2000;
  // $VARS expand from a fixed table, never from the process environment (reproducible runs).
  opt.csv.getenv = [](const std::string& name) -> std::optional<std::string> {
    if (name == "SIZE") return "0x100000";
    if (name == "APP") return "app";
    if (name == "EMPTY") return "";
    return std::nullopt;
  };
  opt.verify = false;
  opt.md5 = (flags & 8) == 0;
  opt.warn = [](const std::string&) {};
  auto loaded = load_partition_table(text, opt, "fuzz.csv");
  if (!loaded) {
    FUZZ_CHECK(!loaded.error().message().empty(), "error without a message");
    return 0;
  }
  FUZZ_CHECK(!loaded->from_binary, "text detected as binary");
  const PartitionTable& t = loaded->table;
  for (const auto& e : t.entries) FUZZ_CHECK(e.line > 0, "CSV entry without a line number");

  PartitionVerifyOptions v{opt.csv.table_offset,
                           (flags & 16) ? SecureBootVersion::kV1 : SecureBootVersion::kNone,
                           {},
                           [](const std::string&) {}};
  const bool verified = verify_partition_table(t, v, "fuzz.csv").has_value();
  (void)check_partition_flash_size(t, uint64_t{4} << 20, "fuzz.csv");

  // csv2bin: the table fits unless it has too many rows, and the tool's own binary reader reads it back
  // (only a label cut inside a UTF-8 sequence at byte 16 is refused, as Python's decode refuses it).
  auto bin = partition_table_to_binary_checked(t, opt.md5);
  const size_t max_rows = opt.md5 ? 94 : 95;
  FUZZ_CHECK(bin.has_value() == (t.entries.size() <= max_rows), "%zu rows: fits=%d", t.entries.size(),
             bin.has_value());
  if (bin) {
    FUZZ_CHECK(bin->size() == kPartitionTableMaxLength, "binary is %zu bytes", bin->size());
    auto back = parse_partition_binary(*bin, BinaryOptions{opt.md5, {}}, "fuzz.bin");
    if (!back) {
      FUZZ_CHECK(back.error().message().find(", label: ") != std::string::npos, "csv2bin output refused: %s",
                 back.error().message().c_str());
    } else {
      fuzz::check_same_entries(t, *back, true, "csv -> bin -> table");
      // Same bytes again, unless a name holds a NUL: the tool writes the bytes after it, and ignores them on
      // reading (spec partition-table.md, label).
      bool nul_in_label = false;
      for (const auto& e : t.entries) nul_in_label |= e.name.substr(0, 16).find('\0') != std::string::npos;
      auto bin2 = partition_table_to_binary_checked(*back, opt.md5);
      FUZZ_CHECK(bin2 && (nul_in_label || *bin2 == *bin), "bin -> table -> bin changed the bytes");
    }
  }
  if (verified) fuzz::check_csv_round_trip(t, opt.csv, "csv -> table -> csv");
  return 0;
}
