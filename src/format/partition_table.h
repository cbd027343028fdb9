// ESP-IDF partition table: CSV <-> binary, and the checks of gen_esp32part.py (ESP-IDF v5.5.5, tool 1.5).
// Output bytes and bin2csv text are the tool's; see shared spec partition-table.md for every rule mirrored
// here.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/result.h"

namespace ota32 {

constexpr uint32_t kPartitionTableOffsetDefault = 0x8000;  // CONFIG_PARTITION_TABLE_OFFSET
constexpr uint32_t kPartitionTableSectorSize = 0x1000;     // PARTITION_TABLE_SIZE
constexpr size_t kPartitionTableMaxLength = 0xC00;         // MAX_PARTITION_LENGTH: 96 rows of 32 bytes
constexpr size_t kPartitionEntrySize = 32;

constexpr uint8_t kPartitionTypeApp = 0x00;
constexpr uint8_t kPartitionTypeData = 0x01;
constexpr uint8_t kPartitionTypeBootloader = 0x02;
constexpr uint8_t kPartitionTypePartitionTable = 0x03;
constexpr uint8_t kAppSubtypeFactory = 0x00;
constexpr uint8_t kAppSubtypeOta0 = 0x10;  // ota_N = 0x10 + N, N < 16
constexpr uint8_t kAppSubtypeTest = 0x20;
constexpr uint8_t kDataSubtypeOta = 0x00;
constexpr uint8_t kDataSubtypeUndefined = 0x06;
constexpr uint32_t kOtadataSize = 0x2000;

struct PartitionEntry {
  std::string name;  // as written; the binary keeps its first 16 bytes, NUL-padded
  uint8_t type = 0;
  uint8_t subtype = 0;
  uint32_t offset = 0, size = 0;
  bool encrypted = false, readonly = false;
  int line = 0;  // 1-based CSV line it came from; 0 when read from a binary (then messages use "entry N")
};

struct PartitionTable {
  std::vector<PartitionEntry> entries;

  const PartitionEntry* find(std::string_view name) const;
  const PartitionEntry* find_first(uint8_t type, uint8_t subtype) const;
  const PartitionEntry* factory() const;  // app/factory
  const PartitionEntry* otadata() const;  // data/ota
  // app ota_0, ota_1, ... up to the first missing subtype (esp_ota_get_app_partition_count's rule).
  std::vector<const PartitionEntry*> ota_apps() const;
};

// A keyword added with --extra-partition-subtypes "type,name,value" (value in hex, with or without 0x).
struct ExtraSubtype {
  uint8_t type;
  std::string name;
  uint8_t value;
};
// Parses the option's entries; fails on a bad type name, value, or a value already used by that type.
Result<std::vector<ExtraSubtype>> parse_extra_subtypes(const std::vector<std::string>& entries);

enum class SecureBootVersion { kNone, kV1, kV2 };

// Diagnostics the tool prints without failing (stderr, also with -q), in the tool's order.
using WarningSink = std::function<void(const std::string&)>;

struct CsvOptions {
  uint32_t table_offset = kPartitionTableOffsetDefault;  // --offset
  std::optional<uint32_t> primary_bootloader_offset;     // --primary-bootloader-offset
  std::optional<uint32_t> recovery_bootloader_offset;    // --recovery-bootloader-offset
  std::vector<ExtraSubtype> extra_subtypes;              // --extra-partition-subtypes
  // $NAME / ${NAME} expansion (os.path.expandvars); default looks up the process environment.
  std::function<std::optional<std::string>(const std::string&)> getenv;
};

struct BinaryOptions {
  bool check_md5 = true;  // false = --disable-md5sum (an MD5 row then fails as a bad magic)
  WarningSink warn;       // unknown flag bits
};

struct PartitionVerifyOptions {
  uint32_t table_offset = kPartitionTableOffsetDefault;
  SecureBootVersion secure = SecureBootVersion::kNone;
  std::vector<ExtraSubtype> extra_subtypes;
  WarningSink warn;  // name-vs-keyword warnings and the partition listings printed before some errors
};

// Errors carry "<file_name> line N, <field>: <tool's message>" (or "entry N" for binaries).
Result<PartitionTable> parse_partition_csv(std::string_view text, const CsvOptions& opt,
                                           std::string_view file_name);
Result<PartitionTable> parse_partition_binary(ByteView bin, const BinaryOptions& opt,
                                              std::string_view file_name);
// The table as the chip reads it (esp_partition_table_verify, ESP-IDF v5.5.5): at most 96 rows of
// `table` (normally the 0xC00 bytes at the table offset), MD5 row optional but checked when present, end =
// a row starting FF FF FF FF. Labels are taken as raw bytes. Errors carry the exact flash_parts log text
// ("Incorrect MD5 checksum", "partition 2 invalid magic number 0xabcd", ...), without file or place.
Result<PartitionTable> parse_partition_table_as_device(ByteView table, uint32_t chip_size);

// The tool's detection: binary iff the input starts with AA 50.
bool looks_like_partition_binary(ByteView data);

// gen_esp32part.py's verify(): per-partition rules, duplicate names, order/overlap, otadata.
Result<void> verify_partition_table(const PartitionTable& t, const PartitionVerifyOptions& opt,
                                    std::string_view file_name = {});
// --flash-size: offset+size of the highest-offset partition must fit in flash_size bytes.
Result<void> check_partition_flash_size(const PartitionTable& t, uint64_t flash_size,
                                        std::string_view file_name = {});

// One run of gen_esp32part.py up to its output step: detect binary/CSV, parse, verify (unless told not to),
// check --flash-size. `status` gets the tool's status lines ("Parsing CSV input...", "Verifying table...").
struct PartitionToolOptions {
  CsvOptions csv;      // also gives the table offset and extra subtypes to the other steps
  bool md5 = true;     // false = --disable-md5sum
  bool verify = true;  // false = --no-verify
  SecureBootVersion secure = SecureBootVersion::kNone;
  std::optional<uint64_t> flash_size;  // --flash-size, bytes
  WarningSink warn;
  WarningSink status;
};
struct LoadedPartitionTable {
  PartitionTable table;
  bool from_binary = false;
};
Result<LoadedPartitionTable> load_partition_table(ByteView file_bytes, const PartitionToolOptions& opt,
                                                  std::string_view file_name);

// The 3072-byte image (entries, MD5 row, 0xFF padding). Fails when the table does not fit.
Result<Bytes> partition_table_to_binary_checked(const PartitionTable& t, bool with_md5 = true);
// Same, for tables known to fit (asserts).
Bytes partition_table_to_binary(const PartitionTable& t, bool with_md5 = true);
// bin2csv text: "# ESP-IDF Partition Table" header and one "name,type,subtype,offset,size,flags" row each.
std::string partition_table_to_csv(const PartitionTable& t, const std::vector<ExtraSubtype>& extra = {});
std::string partition_entry_to_csv(const PartitionEntry& e, const std::vector<ExtraSubtype>& extra = {});

// Keyword or decimal, as bin2csv prints them.
std::string partition_type_name(uint8_t type);
std::string partition_subtype_name(uint8_t type, uint8_t subtype,
                                   const std::vector<ExtraSubtype>& extra = {});
// bin2csv's size column: "1M", "16K", else 0x%x.
std::string partition_size_text(uint32_t size);
// The bootloader's "Usage" column ("OTA data", "factory app", ...; TEE disabled).
std::string partition_usage_name(uint8_t type, uint8_t subtype);

}  // namespace ota32
