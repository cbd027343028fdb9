// Helpers shared by the partition table targets: entry comparison and the names a CSV row round-trips.
#pragma once

#include <string>
#include <string_view>

#include "format/partition_table.h"
#include "fuzz_check.h"

namespace ota32::fuzz {

// The label a binary row keeps of a name: its first 16 bytes, up to the first NUL.
inline std::string binary_label(std::string_view name) {
  name = name.substr(0, 16);
  return std::string(name.substr(0, name.find('\0')));
}

// A name bin2csv prints so that the CSV parser reads it back unchanged: no separators, comment or variable
// markers, or whitespace the parser would strip.
inline bool csv_safe_name(std::string_view name) {
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// Type and subtype rows whose offset and size the CSV parser takes from options, not from the row.
inline bool placed_by_options(const PartitionEntry& e) {
  return e.type == kPartitionTypeBootloader || e.type == kPartitionTypePartitionTable;
}

// Every field the binary holds is equal (names compared as the binary keeps them when `as_binary`).
inline void check_same_entries(const PartitionTable& a, const PartitionTable& b, bool as_binary,
                               const char* what) {
  FUZZ_CHECK(a.entries.size() == b.entries.size(), "%s: %zu entries became %zu", what, a.entries.size(),
             b.entries.size());
  for (size_t i = 0; i < a.entries.size(); ++i) {
    const auto& x = a.entries[i];
    const auto& y = b.entries[i];
    std::string xn = as_binary ? binary_label(x.name) : x.name;
    FUZZ_CHECK(xn == y.name, "%s: entry %zu name '%s' became '%s'", what, i, xn.c_str(), y.name.c_str());
    FUZZ_CHECK(x.type == y.type && x.subtype == y.subtype, "%s: entry %zu type/subtype changed", what, i);
    FUZZ_CHECK(x.offset == y.offset && x.size == y.size,
               "%s: entry %zu offset/size 0x%x/0x%x became 0x%x/0x%x", what, i, x.offset, x.size, y.offset,
               y.size);
    FUZZ_CHECK(x.encrypted == y.encrypted && x.readonly == y.readonly, "%s: entry %zu flags changed", what,
               i);
  }
}

// bin2csv's text of a verified table parses back to the same entries when every row round-trips in CSV and
// the rows are in offset order (the CSV reader places rows in file order; verify sorts them first).
inline void check_csv_round_trip(const PartitionTable& t, const CsvOptions& opt, const char* what) {
  uint64_t end = 0;
  for (const auto& e : t.entries) {
    if (!csv_safe_name(e.name) || placed_by_options(e) || e.offset < end) return;
    end = uint64_t{e.offset} + e.size;
  }
  std::string csv = partition_table_to_csv(t);
  auto again = parse_partition_csv(csv, opt, "roundtrip.csv");
  FUZZ_CHECK(again.has_value(), "%s: bin2csv output does not parse: %s\n%s", what,
             again.error().message().c_str(), csv.c_str());
  check_same_entries(t, *again, false, what);
}

}  // namespace ota32::fuzz
