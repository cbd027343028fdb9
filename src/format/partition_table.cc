#include "format/partition_table.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cstdlib>
#include <map>

#include "core/hash.h"
#include "format/py_text.h"

namespace ota32 {
namespace {

using Int = __int128;
using Keywords = std::vector<std::pair<std::string, uint8_t>>;

constexpr uint8_t kMagic0 = 0xAA, kMagic1 = 0x50;  // ESP_PARTITION_MAGIC 0x50AA
constexpr uint8_t kMd5Magic = 0xEB;                // ESP_PARTITION_MAGIC_MD5 0xEBEB
constexpr uint32_t kFlagEncrypted = 1u << 0, kFlagReadonly = 1u << 1;
constexpr uint8_t kDataSubtypeCoredump = 0x03, kDataSubtypeNvs = 0x02, kDataSubtypeTeeOta = 0x90;
constexpr uint32_t kNvsRwMinSize = 0x3000;

const Keywords& type_keywords() {
  static const Keywords k = {{"bootloader", kPartitionTypeBootloader},
                             {"partition_table", kPartitionTypePartitionTable},
                             {"app", kPartitionTypeApp},
                             {"data", kPartitionTypeData}};
  return k;
}

// The tool's SUBTYPES tables, in its order (the order of "Known keywords" and of bin2csv's first match),
// with --extra-partition-subtypes appended (a re-used name keeps its place and takes the new value).
Keywords subtype_keywords(Int type, const std::vector<ExtraSubtype>& extra) {
  Keywords k;
  if (type == kPartitionTypeApp) {
    k = {{"factory", 0x00}, {"test", 0x20}};
    for (int i = 0; i < 16; ++i) k.emplace_back(fmt::format("ota_{}", i), static_cast<uint8_t>(0x10 + i));
    k.insert(k.end(), {{"tee_0", 0x30}, {"tee_1", 0x31}});
  } else if (type == kPartitionTypeData) {
    k = {{"ota", 0x00},      {"phy", 0x01},    {"nvs", 0x02},       {"coredump", 0x03},
         {"nvs_keys", 0x04}, {"efuse", 0x05},  {"undefined", 0x06}, {"esphttpd", 0x80},
         {"fat", 0x81},      {"spiffs", 0x82}, {"littlefs", 0x83},  {"tee_ota", 0x90}};
  } else if (type == kPartitionTypeBootloader) {
    k = {{"primary", 0x00}, {"ota", 0x01}, {"recovery", 0x02}};
  } else if (type == kPartitionTypePartitionTable) {
    k = {{"primary", 0x00}, {"ota", 0x01}};
  } else {
    return k;
  }
  for (const auto& x : extra) {
    if (x.type != type) continue;
    auto it = std::find_if(k.begin(), k.end(), [&](auto& p) { return p.first == x.name; });
    if (it != k.end())
      it->second = x.value;
    else
      k.emplace_back(x.name, x.value);
  }
  return k;
}

std::optional<uint8_t> lookup(const Keywords& k, std::string_view name) {
  for (const auto& [n, v] : k)
    if (n == name) return v;
  return std::nullopt;
}

std::string ascii_lower(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return r;
}

std::string join_names(const Keywords& k) {
  std::string r;
  for (const auto& [n, v] : k) r += (r.empty() ? "" : ", ") + n;
  return r;
}

Int clamp(Int v) {
  constexpr Int kMax = static_cast<Int>(1) << 100;
  return v > kMax ? kMax : v < -kMax ? -kMax : v;
}

// The tool's parse_int: trailing k/m multiply (recursively), then int(v, 0), then the keyword table.
// The error text is the tool's, with the suffix-stripped value.
Result<Int> parse_int(std::string_view v, const Keywords* kw) {
  std::string lower = ascii_lower(v);
  if (!lower.empty() && (lower.back() == 'k' || lower.back() == 'm')) {
    auto inner = parse_int(v.substr(0, v.size() - 1), kw);
    if (!inner) return inner.error();
    return clamp(*inner * (lower.back() == 'k' ? 1024 : 1024 * 1024));
  }
  if (auto n = py::parse_int0(v)) return *n;
  if (!kw) return Error(ErrorCode::invalid_argument, fmt::format("Invalid field value {}", v));
  if (auto n = lookup(*kw, lower)) return Int{*n};
  return Error(ErrorCode::invalid_argument,
               fmt::format("Value '{}' is not valid. Known keywords: {}", v, join_names(*kw)));
}

std::string where(std::string_view file, std::string_view what) {
  return file.empty() ? std::string(what) : fmt::format("{} {}", file, what);
}

std::string entry_place(std::string_view file, const PartitionEntry& e, size_t index) {
  return where(file, e.line > 0 ? fmt::format("line {}", e.line) : fmt::format("entry {}", index));
}

Error entry_error(std::string_view file, const PartitionEntry& e, size_t index, std::string_view field,
                  std::string_view msg, ErrorCode code = ErrorCode::invalid_argument) {
  return Error(code, fmt::format("{}, {}: {}", entry_place(file, e, index), field, msg));
}

// Split on every comma (there is no quoting in the tool's CSV) and strip each field.
std::vector<std::string_view> split_stripped(std::string_view s) {
  std::vector<std::string_view> f;
  size_t start = 0;
  while (true) {
    size_t comma = s.find(',', start);
    f.push_back(py::strip(s.substr(start, comma == s.npos ? s.npos : comma - start)));
    if (comma == s.npos) return f;
    start = comma + 1;
  }
}

bool is_primary(Int type, Int subtype) {
  return (type == kPartitionTypeBootloader || type == kPartitionTypePartitionTable) && subtype == 0;
}

std::string hex32(uint64_t v) { return fmt::format("0x{:x}", v); }

// One CSV row before placement, in Python's unbounded integers (negative sizes mean "end at").
struct CsvRow {
  std::string name;
  Int type = 0, subtype = 0;
  std::optional<Int> offset;
  Int size = 0;
  bool encrypted = false, readonly = false;
  int line = 0;
};

Result<CsvRow> parse_line(std::string_view line, int line_no, const CsvOptions& opt, std::string* bad_field) {
  std::vector<std::string_view> f = split_stripped(line);
  while (f.size() < 6) f.emplace_back();

  CsvRow r;
  r.line = line_no;
  r.name = std::string(f[0]);
  *bad_field = "type";
  if (f[1].empty()) return Error(ErrorCode::invalid_argument, "Field 'type' can't be left empty.");
  OTA32_ASSIGN(r.type, parse_int(f[1], &type_keywords()));

  *bad_field = "subtype";
  if (f[2].empty()) {
    if (r.type == kPartitionTypeApp) {
      return Error(ErrorCode::invalid_argument, "App partition cannot have an empty subtype");
    }
    r.subtype = kDataSubtypeUndefined;
  } else {
    Keywords kw = subtype_keywords(r.type, opt.extra_subtypes);
    bool has_table = r.type >= 0 && r.type <= 3;
    OTA32_ASSIGN(r.subtype, parse_int(f[2], has_table ? &kw : nullptr));
  }

  auto no_primary = [] {
    return Error(ErrorCode::invalid_argument,
                 "Primary bootloader offset is not defined. Please use --primary-bootloader-offset");
  };
  *bad_field = "offset";
  if (r.type == kPartitionTypeBootloader && r.subtype == 0) {
    if (!opt.primary_bootloader_offset) return no_primary();
    r.offset = *opt.primary_bootloader_offset;
  } else if (r.type == kPartitionTypeBootloader && r.subtype == 2) {
    if (!opt.recovery_bootloader_offset) {
      return Error(ErrorCode::invalid_argument,
                   "Recovery bootloader offset is not defined. Please use --recovery-bootloader-offset");
    }
    r.offset = *opt.recovery_bootloader_offset;
  } else if (r.type == kPartitionTypePartitionTable && r.subtype == 0) {
    r.offset = opt.table_offset;
  } else if (!f[3].empty()) {
    OTA32_ASSIGN(r.offset, parse_int(f[3], nullptr));
  }

  *bad_field = "size";
  if (r.type == kPartitionTypeBootloader) {
    if (!opt.primary_bootloader_offset) return no_primary();
    r.size = Int{opt.table_offset} - *opt.primary_bootloader_offset;
  } else if (r.type == kPartitionTypePartitionTable) {
    r.size = kPartitionTableSectorSize;
  } else {
    if (f[4].empty()) return Error(ErrorCode::invalid_argument, "Size field can't be empty");
    OTA32_ASSIGN(r.size, parse_int(f[4], nullptr));
  }

  *bad_field = "flags";
  std::string_view flags = f[5];
  size_t pos = 0;
  while (pos <= flags.size()) {
    size_t colon = flags.find(':', pos);
    std::string_view tok = flags.substr(pos, colon == flags.npos ? flags.npos : colon - pos);
    if (tok == "encrypted")
      r.encrypted = true;
    else if (tok == "readonly")
      r.readonly = true;
    else if (!tok.empty())
      return Error(ErrorCode::invalid_argument,
                   fmt::format("CSV flag column contains unknown flag '{}'", tok));
    if (colon == flags.npos) break;
    pos = colon + 1;
  }
  return r;
}

bool same_row(const CsvRow& a, const CsvRow& b) {
  return a.name == b.name && a.type == b.type && a.subtype == b.subtype && a.offset == b.offset &&
         a.size == b.size;
}

std::optional<std::string> process_env(const std::string& name) {
  const char* v = std::getenv(name.c_str());
  if (!v) return std::nullopt;
  return std::string(v);
}

std::string flags_text(const PartitionEntry& e) {
  if (e.encrypted && e.readonly) return "encrypted:readonly";
  if (e.encrypted) return "encrypted";
  if (e.readonly) return "readonly";
  return "";
}

}  // namespace

// ---- PartitionTable lookups ----

const PartitionEntry* PartitionTable::find(std::string_view name) const {
  for (const auto& e : entries)
    if (e.name == name) return &e;
  return nullptr;
}

const PartitionEntry* PartitionTable::find_first(uint8_t type, uint8_t subtype) const {
  for (const auto& e : entries)
    if (e.type == type && e.subtype == subtype) return &e;
  return nullptr;
}

const PartitionEntry* PartitionTable::factory() const {
  return find_first(kPartitionTypeApp, kAppSubtypeFactory);
}
const PartitionEntry* PartitionTable::otadata() const {
  return find_first(kPartitionTypeData, kDataSubtypeOta);
}

std::vector<const PartitionEntry*> PartitionTable::ota_apps() const {
  std::vector<const PartitionEntry*> r;
  for (int i = 0; i < 16; ++i) {
    const PartitionEntry* e = find_first(kPartitionTypeApp, static_cast<uint8_t>(kAppSubtypeOta0 + i));
    if (!e) break;
    r.push_back(e);
  }
  return r;
}

// ---- names ----

std::string partition_type_name(uint8_t type) {
  for (const auto& [n, v] : type_keywords())
    if (v == type) return n;
  return fmt::format("{}", type);
}

std::string partition_subtype_name(uint8_t type, uint8_t subtype, const std::vector<ExtraSubtype>& extra) {
  for (const auto& [n, v] : subtype_keywords(type, extra))
    if (v == subtype) return n;
  return fmt::format("{}", subtype);
}

std::string partition_size_text(uint32_t size) {
  if (size % 0x100000 == 0) return fmt::format("{}M", size / 0x100000);
  if (size % 0x400 == 0) return fmt::format("{}K", size / 0x400);
  return hex32(size);
}

std::string partition_usage_name(uint8_t type, uint8_t subtype) {
  switch (type) {
    case kPartitionTypeApp:
      if (subtype == 0x00) return "factory app";
      if (subtype >= 0x10 && subtype <= 0x1F) return "OTA app";
      if (subtype == 0x20) return "test app";
      return "Unknown app";
    case kPartitionTypeData:
      switch (subtype) {
        case 0x00:
          return "OTA data";
        case 0x01:
          return "RF data";
        case 0x02:
          return "WiFi data";
        case 0x04:
          return "NVS keys";
        case 0x05:
          return "efuse";
        default:
          return "Unknown data";
      }
    case kPartitionTypeBootloader:
      if (subtype == 0) return "primary bootloader";
      if (subtype == 1) return "ota bootloader";
      if (subtype == 2) return "recovery bootloader";
      return "unknown";
    case kPartitionTypePartitionTable:
      if (subtype == 0) return "primary partition_table";
      if (subtype == 1) return "ota partition_table";
      return "unknown";
    default:
      return "unknown";
  }
}

Result<std::vector<ExtraSubtype>> parse_extra_subtypes(const std::vector<std::string>& entries) {
  std::vector<ExtraSubtype> out;
  for (const auto& entry : entries) {
    std::vector<std::string_view> f = split_stripped(entry);
    auto bad = [&](std::string_view why) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("--extra-partition-subtypes '{}': {}", entry, why));
    };
    if (f.size() != 3) return bad("expected TYPE,NAME,VALUE");
    auto type = lookup(type_keywords(), f[0]);
    if (!type) return bad("Error parsing custom subtypes: Invalid partition type");
    auto value = py::parse_int16(f[2]);
    if (!value || *value < 0 || *value > 255) return bad(fmt::format("value '{}' is not a hex byte", f[2]));
    auto v = static_cast<uint8_t>(*value);
    for (const auto& [n, existing] : subtype_keywords(*type, out))
      if (existing == v) return bad("Found duplicate value in partition subtype");
    out.push_back({*type, std::string(f[1]), v});
  }
  return out;
}

// ---- CSV ----

Result<PartitionTable> parse_partition_csv(std::string_view text, const CsvOptions& opt,
                                           std::string_view file_name) {
  const auto& env = opt.getenv ? opt.getenv : process_env;
  if (text.starts_with("\xEF\xBB\xBF")) text.remove_prefix(3);  // the tool drops a UTF-8 BOM (v5.4.2+)
  std::vector<CsvRow> rows;
  auto lines = py::splitlines(text);
  for (size_t i = 0; i < lines.size(); ++i) {
    int line_no = static_cast<int>(i + 1);
    std::string expanded = py::expandvars(lines[i], env);
    // The tool rejects a line that still starts with $NAME after expansion.
    if (expanded.size() > 1 && expanded[0] == '$' &&
        (expanded[1] == '_' || std::isalpha(static_cast<unsigned char>(expanded[1])))) {
      size_t j = 1;
      while (j < expanded.size() &&
             (expanded[j] == '_' || std::isalnum(static_cast<unsigned char>(expanded[j]))))
        ++j;
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}: unknown variable '{}'", where(file_name, fmt::format("line {}", line_no)),
                               expanded.substr(1, j - 1)));
    }
    std::string_view line = py::strip(expanded);
    if (line.empty() || line.front() == '#') continue;
    std::string field;
    auto row = parse_line(line, line_no, opt, &field);
    if (!row) {
      return Error(row.error().code(),
                   fmt::format("{}, {}: {}", where(file_name, fmt::format("line {}", line_no)), field,
                               row.error().message()));
    }
    rows.push_back(std::move(*row));
  }

  // Placement (the tool's from_csv fix-up): automatic offsets aligned per type, negative sizes = "end at".
  Int last_end = Int{opt.table_offset} + kPartitionTableSectorSize;
  for (auto& r : rows) {
    if (is_primary(r.type, r.subtype)) continue;
    if (r.offset && *r.offset < last_end) {
      std::string msg;
      if (same_row(r, rows.front())) {
        msg = fmt::format(
            "Partitions overlap. Partition sets offset {}. But partition table occupies the whole sector {}. "
            "Use a free offset {} or higher.",
            py::hex(*r.offset), hex32(opt.table_offset), py::hex(last_end));
      } else {
        msg = fmt::format("Partitions overlap. Partition sets offset {}. Previous partition ends {}",
                          py::hex(*r.offset), py::hex(last_end));
      }
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}, offset: {}", where(file_name, fmt::format("line {}", r.line)), msg));
    }
    if (!r.offset) {
      Int align = r.type == kPartitionTypeApp ? 0x10000 : 0x1000;
      if (last_end % align != 0) last_end += align - last_end % align;
      r.offset = last_end;
    }
    if (r.size < 0) r.size = -r.size - *r.offset;
    last_end = *r.offset + r.size;
  }

  PartitionTable t;
  for (const auto& r : rows) {
    auto bad = [&](std::string_view field, Int v, std::string_view range) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}, {}: value {} does not fit the binary field ({})",
                               where(file_name, fmt::format("line {}", r.line)), field, py::hex(v), range));
    };
    if (r.type < 0 || r.type > 255) return bad("type", r.type, "0..0xff");
    if (r.subtype < 0 || r.subtype > 255) return bad("subtype", r.subtype, "0..0xff");
    Int offset = r.offset.value_or(0);
    if (offset < 0 || offset > 0xFFFFFFFF) return bad("offset", offset, "0..0xffffffff");
    if (r.size < 0 || r.size > 0xFFFFFFFF) return bad("size", r.size, "0..0xffffffff");
    t.entries.push_back({r.name, static_cast<uint8_t>(r.type), static_cast<uint8_t>(r.subtype),
                         static_cast<uint32_t>(offset), static_cast<uint32_t>(r.size), r.encrypted,
                         r.readonly, r.line});
  }
  return t;
}

// ---- binary ----

bool looks_like_partition_binary(ByteView data) {
  return data.size() >= 2 && data[0] == kMagic0 && data[1] == kMagic1;
}

Result<PartitionTable> parse_partition_binary(ByteView bin, const BinaryOptions& opt,
                                              std::string_view file_name) {
  PartitionTable t;
  Bytes entry_rows;  // what the tool's running MD5 has seen: entry rows only, never MD5 rows
  for (size_t o = 0; o < bin.size(); o += kPartitionEntrySize) {
    size_t index = t.entries.size();
    auto fail = [&](std::string_view field, const std::string& msg) {
      return Error(ErrorCode::corrupt,
                   fmt::format("{}, {}: {}", where(file_name, fmt::format("entry {} at {}", index, hex32(o))),
                               field, msg));
    };
    if (bin.size() - o < kPartitionEntrySize) {
      return fail("length", "Partition table length must be a multiple of 32 bytes");
    }
    ByteView row = bin.subspan(o, kPartitionEntrySize);
    if (std::all_of(row.begin(), row.end(), [](uint8_t b) { return b == 0xFF; })) return t;
    if (opt.check_md5 && row[0] == kMd5Magic && row[1] == kMd5Magic) {
      Md5Digest computed = md5(entry_rows);
      ByteView parsed = row.subspan(16, 16);
      if (std::equal(parsed.begin(), parsed.end(), computed.begin())) continue;
      // The tool prints the parsed digest as "0x" + a Python bytes repr: 0xb'bf25...'.
      return fail("md5", fmt::format("MD5 checksums don't match! (computed: 0x{}, parsed: 0xb'{}')",
                                     to_hex(computed), to_hex(parsed)));
    }
    entry_rows.insert(entry_rows.end(), row.begin(), row.end());

    ByteView label = row.subspan(12, 16);
    size_t len = static_cast<size_t>(std::find(label.begin(), label.end(), 0) - label.begin());
    std::string name(as_chars(label.first(len)));
    if (!py::is_valid_utf8(name)) {
      return fail("label", fmt::format("label {} is not valid UTF-8", py::bytes_repr(label.first(len))));
    }
    if (row[0] != kMagic0 || row[1] != kMagic1) {
      return fail("magic", fmt::format("Invalid magic bytes ({}) for partition definition",
                                       py::bytes_repr(row.first(2))));
    }
    PartitionEntry e;
    e.name = std::move(name);
    e.type = row[2];
    e.subtype = row[3];
    e.offset = load_le32(row.data() + 4);
    e.size = load_le32(row.data() + 8);
    uint32_t flags = load_le32(row.data() + 28);
    e.encrypted = (flags & kFlagEncrypted) != 0;
    e.readonly = (flags & kFlagReadonly) != 0;
    flags &= ~(kFlagEncrypted | kFlagReadonly);
    if (flags != 0 && opt.warn) {
      opt.warn(
          fmt::format("{}: WARNING: Partition definition had unknown flag(s) 0x{:08x}. Newer binary format?",
                      where(file_name, fmt::format("entry {}", index)), flags));
    }
    t.entries.push_back(std::move(e));
  }
  return Error(ErrorCode::corrupt,
               fmt::format("{}: Partition table is missing an end-of-table marker", where(file_name, "end")));
}

Result<PartitionTable> parse_partition_table_as_device(ByteView table, uint32_t chip_size) {
  PartitionTable t;
  bool md5_found = false;
  constexpr size_t kMaxRows = kPartitionTableMaxLength / kPartitionEntrySize;
  for (size_t n = 0; n < kMaxRows && (n + 1) * kPartitionEntrySize <= table.size(); ++n) {
    ByteView row = table.subspan(n * kPartitionEntrySize, kPartitionEntrySize);
    uint16_t magic = load_le16(row.data());
    if (magic == (kMagic1 << 8 | kMagic0)) {
      PartitionEntry e;
      e.type = row[2];
      e.subtype = row[3];
      e.offset = load_le32(row.data() + 4);
      e.size = load_le32(row.data() + 8);
      ByteView label = row.subspan(12, 16);
      e.name.assign(as_chars(
          label.first(static_cast<size_t>(std::find(label.begin(), label.end(), 0) - label.begin()))));
      uint32_t flags = load_le32(row.data() + 28);
      e.encrypted = (flags & kFlagEncrypted) != 0;
      e.readonly = (flags & kFlagReadonly) != 0;
      if (e.offset > chip_size || static_cast<uint32_t>(e.offset + e.size) > chip_size) {
        return Error(
            ErrorCode::out_of_range,
            fmt::format("partition {} invalid - offset 0x{:x} size 0x{:x} exceeds flash chip size 0x{:x}", n,
                        e.offset, e.size, chip_size));
      }
      t.entries.push_back(std::move(e));
    } else if (magic == (kMd5Magic << 8 | kMd5Magic)) {
      if (md5_found) return Error(ErrorCode::corrupt, "Only one MD5 checksum is allowed");
      Md5Digest d = md5(table.first(n * kPartitionEntrySize));
      if (!std::equal(d.begin(), d.end(), row.begin() + 16))
        return Error(ErrorCode::corrupt, "Incorrect MD5 checksum");
      md5_found = true;
    } else if (n > 0 && magic == 0xFFFF && row[2] == 0xFF && row[3] == 0xFF) {
      return t;
    } else {
      return Error(ErrorCode::corrupt, fmt::format("partition {} invalid magic number 0x{:x}", n, magic));
    }
  }
  return Error(ErrorCode::corrupt, "partition table has no terminating entry, not valid");
}

Result<Bytes> partition_table_to_binary_checked(const PartitionTable& t, bool with_md5) {
  ByteWriter w;
  for (const auto& e : t.entries) {
    w.u8(kMagic0);
    w.u8(kMagic1);
    w.u8(e.type);
    w.u8(e.subtype);
    w.u32(e.offset);
    w.u32(e.size);
    w.fixed_string(e.name, 16);  // silently truncated to 16 bytes, as the tool's struct.pack('16s')
    w.u32((e.encrypted ? kFlagEncrypted : 0) | (e.readonly ? kFlagReadonly : 0));
  }
  if (with_md5) {
    Md5Digest d = md5(w.view());
    w.u8(kMd5Magic);
    w.u8(kMd5Magic);
    w.fill(14, 0xFF);
    w.bytes(d);
  }
  if (w.size() >= kPartitionTableMaxLength) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{} partitions: Binary partition table length ({}) longer than max",
                             t.entries.size(), w.size()));
  }
  w.fill(kPartitionTableMaxLength - w.size(), 0xFF);
  return w.take();
}

Bytes partition_table_to_binary(const PartitionTable& t, bool with_md5) {
  auto r = partition_table_to_binary_checked(t, with_md5);
  assert(r.has_value());
  return std::move(*r);
}

// ---- CSV output ----

std::string partition_entry_to_csv(const PartitionEntry& e, const std::vector<ExtraSubtype>& extra) {
  return fmt::format("{},{},{},{},{},{}", e.name, partition_type_name(e.type),
                     partition_subtype_name(e.type, e.subtype, extra), hex32(e.offset),
                     partition_size_text(e.size), flags_text(e));
}

std::string partition_table_to_csv(const PartitionTable& t, const std::vector<ExtraSubtype>& extra) {
  std::string out = "# ESP-IDF Partition Table\n# Name, Type, SubType, Offset, Size, Flags\n";
  for (const auto& e : t.entries) out += partition_entry_to_csv(e, extra) + "\n";
  return out;
}

// ---- verification ----

Result<void> verify_partition_table(const PartitionTable& t, const PartitionVerifyOptions& opt,
                                    std::string_view file) {
  auto warn = [&](const PartitionEntry& e, size_t i, const std::string& msg) {
    if (opt.warn) opt.warn(fmt::format("{}: WARNING: {}", entry_place(file, e, i), msg));
  };
  std::vector<std::string> all_subtype_names;
  for (int type = 0; type <= 3; ++type)
    for (const auto& [n, v] : subtype_keywords(type, opt.extra_subtypes)) all_subtype_names.push_back(n);

  for (size_t i = 0; i < t.entries.size(); ++i) {
    const auto& e = t.entries[i];
    auto invalid = [&](std::string_view field, const std::string& detail) {
      return entry_error(file, e, i, field, fmt::format("Partition {} invalid: {}", e.name, detail));
    };
    uint32_t align = e.type == kPartitionTypeApp ? 0x10000 : 0x1000;
    if (e.offset % align != 0) {
      return invalid("offset", fmt::format("Offset {} is not aligned to {}", hex32(e.offset), hex32(align)));
    }
    if (e.type == kPartitionTypeApp) {
      uint32_t size_align = opt.secure == SecureBootVersion::kV1 ? 0x10000 : 0x1000;
      if (e.size % size_align != 0) {
        return invalid("size", fmt::format("Size {} is not aligned to {}", hex32(e.size), hex32(size_align)));
      }
    }
    if (auto tv = lookup(type_keywords(), e.name); tv && *tv != e.type) {
      warn(e, i,
           fmt::format(
               "Partition has name '{}' which is a partition type, but does not match this partition's "
               "type (0x{:x}). Mistake in partition table?",
               e.name, e.type));
    }
    if (std::find(all_subtype_names.begin(), all_subtype_names.end(), e.name) != all_subtype_names.end()) {
      auto own = lookup(subtype_keywords(e.type, opt.extra_subtypes), e.name);
      if (!own || *own != e.subtype) {
        warn(e, i,
             fmt::format("Partition has name '{}' which is a partition subtype, but this partition has "
                         "non-matching type 0x{:x} and subtype 0x{:x}. Mistake in partition table?",
                         e.name, e.type, e.subtype));
      }
    }
    if (e.type == kPartitionTypeData && (e.subtype == kDataSubtypeOta || e.subtype == kDataSubtypeCoredump) &&
        e.readonly) {
      return invalid("flags", fmt::format("'{}' partition of type {} and subtype {} is always read-write and "
                                          "cannot be read-only",
                                          e.name, e.type, e.subtype));
    }
    if (e.type == kPartitionTypeData && e.subtype == kDataSubtypeNvs && e.size < kNvsRwMinSize &&
        !e.readonly) {
      return invalid("size",
                     fmt::format("'{}' partition of type {} and subtype {} of this size ({}) must be "
                                 "flagged as 'readonly' (the size of read/write NVS has to be at least {})",
                                 e.name, e.type, e.subtype, hex32(e.size), hex32(kNvsRwMinSize)));
    }
    // Not tool checks (it accepts both silently), but worth knowing.
    if (e.size == 0) warn(e, i, fmt::format("Partition {} has size 0", e.name));
    if (e.name.size() > 16) {
      warn(e, i,
           fmt::format("Partition name '{}' is longer than 16 bytes; the binary keeps '{}'", e.name,
                       e.name.substr(0, 16)));
    }
  }

  // Duplicate names (exact, untruncated). The tool lists the rows; one line names them here.
  for (size_t i = 0; i < t.entries.size(); ++i) {
    for (size_t j = 0; j < i; ++j) {
      if (t.entries[j].name != t.entries[i].name) continue;
      std::string rows;
      for (size_t k = 0; k < t.entries.size(); ++k) {
        if (t.entries[k].name != t.entries[i].name) continue;
        rows += fmt::format("{}{}: {}", rows.empty() ? "" : "; ", entry_place({}, t.entries[k], k),
                            partition_entry_to_csv(t.entries[k]));
      }
      return entry_error(file, t.entries[i], i, "name",
                         fmt::format("Partition names must be unique ({})", rows));
    }
  }

  std::vector<size_t> order(t.entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return t.entries[a].offset < t.entries[b].offset; });
  const uint64_t first_free = uint64_t{opt.table_offset} + kPartitionTableSectorSize;
  const PartitionEntry* last = nullptr;
  for (size_t i : order) {
    const auto& p = t.entries[i];
    if (!is_primary(p.type, p.subtype) && p.offset < first_free) {
      return entry_error(file, p, i, "offset",
                         fmt::format("Partition offset {} is below {}", hex32(p.offset), hex32(first_free)));
    }
    if (last && p.offset < uint64_t{last->offset} + last->size) {
      return entry_error(file, p, i, "offset",
                         fmt::format("Partition at {} overlaps {}-{}", hex32(p.offset), hex32(last->offset),
                                     hex32(uint64_t{last->offset} + last->size - 1)));
    }
    last = &p;
  }

  auto unique_check = [&](uint8_t subtype, std::string_view many_msg,
                          std::string_view size_msg) -> Result<void> {
    std::vector<size_t> found;
    for (size_t i = 0; i < t.entries.size(); ++i)
      if (t.entries[i].type == kPartitionTypeData && t.entries[i].subtype == subtype) found.push_back(i);
    if (found.size() > 1) {
      std::string rows;
      for (size_t k : found)
        rows += fmt::format("{}{}: {}", rows.empty() ? "" : "; ", entry_place({}, t.entries[k], k),
                            partition_entry_to_csv(t.entries[k]));
      return entry_error(file, t.entries[found[1]], found[1], "subtype",
                         fmt::format("{} ({})", many_msg, rows));
    }
    if (found.size() == 1 && t.entries[found[0]].size != kOtadataSize) {
      const auto& e = t.entries[found[0]];
      return entry_error(file, e, found[0], "size",
                         fmt::format("{} ({})", size_msg, partition_entry_to_csv(e)));
    }
    return {};
  };
  OTA32_TRY(unique_check(kDataSubtypeOta,
                         "Found multiple otadata partitions. Only one partition can be defined with "
                         "type=\"data\"(1) and subtype=\"ota\"(0).",
                         "otadata partition must have size = 0x2000"));
  OTA32_TRY(unique_check(kDataSubtypeTeeOta,
                         "Found multiple TEE otadata partitions. Only one partition can be defined with "
                         "type=\"data\"(1) and subtype=\"tee_ota\"(0x90).",
                         "TEE otadata partition must have size = 0x2000"));
  return {};
}

Result<void> check_partition_flash_size(const PartitionTable& t, uint64_t flash_size, std::string_view file) {
  if (t.entries.empty()) return {};
  size_t hi = 0;
  for (size_t i = 1; i < t.entries.size(); ++i)
    if (t.entries[i].offset > t.entries[hi].offset) hi = i;
  const auto& e = t.entries[hi];
  uint64_t table_size = uint64_t{e.offset} + e.size;
  if (flash_size >= table_size) return {};
  return entry_error(
      file, e, hi, "size",
      fmt::format(
          "Partitions tables occupies {:.1f}MB of flash ({} bytes) which does not fit in configured flash "
          "size {}MB. Change the flash size in menuconfig under the 'Serial Flasher Config' menu.",
          static_cast<double>(table_size) / 1024 / 1024, table_size, flash_size / (1024 * 1024)),
      ErrorCode::out_of_range);
}

Result<LoadedPartitionTable> load_partition_table(ByteView bytes, const PartitionToolOptions& opt,
                                                  std::string_view file) {
  auto status = [&](const char* s) {
    if (opt.status) opt.status(s);
  };
  LoadedPartitionTable out;
  out.from_binary = looks_like_partition_binary(bytes);
  if (out.from_binary) {
    status("Parsing binary partition input...");
    OTA32_ASSIGN(out.table, parse_partition_binary(bytes, BinaryOptions{opt.md5, opt.warn}, file));
  } else {
    auto text = py::decode_text(bytes);
    if (!text) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}: neither a binary partition table (no AA 50 magic) nor UTF-8 CSV text",
                               file.empty() ? std::string_view("input") : file));
    }
    status("Parsing CSV input...");
    OTA32_ASSIGN(out.table, parse_partition_csv(*text, opt.csv, file));
  }
  if (opt.verify) {
    status("Verifying table...");
    PartitionVerifyOptions v{opt.csv.table_offset, opt.secure, opt.csv.extra_subtypes, opt.warn};
    OTA32_TRY(verify_partition_table(out.table, v, file));
  }
  if (opt.flash_size) OTA32_TRY(check_partition_flash_size(out.table, *opt.flash_size, file));
  return out;
}

}  // namespace ota32
