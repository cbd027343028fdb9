// ota32 part csv2bin | bin2csv | info: gen_esp32part.py's job (ESP-IDF v5.5.5), same bytes, same checks.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "core/numbers.h"
#include "format/chip.h"
#include "format/partition_table.h"
#include "format/py_text.h"

namespace ota32::cli {
namespace {

struct PartArgs {
  std::string input, output;
  std::string offset = "0x8000", primary_bl, recovery_bl, flash_size, secure;
  bool disable_md5 = false, no_verify = false, verify_noop = false, quiet = false, json = false;
  std::vector<std::string> extra;
  CLI::Option* secure_opt = nullptr;
  CLI::Option* flash_size_opt = nullptr;
};

// The tool parses these with Python int(x, 0); ota32 also takes K/M suffixes like its other number options.
uint32_t parse_offset_option(const std::string& flag, const std::string& text) {
  if (auto v = py::parse_int0(text)) {
    if (*v < 0 || *v > 0xFFFFFFFF)
      throw CLI::ValidationError(flag, fmt::format("'{}' is out of range", text));
    return static_cast<uint32_t>(*v);
  }
  auto v = parse_u32(text, flag);
  if (!v) throw CLI::ValidationError(v.error().message());
  return *v;
}

// gen_esp32part's --flash-size choices ("" for the option given without a value).
std::vector<std::string> flash_size_choices() {
  std::vector<std::string> out{""};
  for (auto n : flash_size_names()) out.emplace_back(n);
  return out;
}

void add_tool_options(CLI::App* c, PartArgs& a) {
  c->add_option("--offset,-o", a.offset, "Flash offset of the partition table (default 0x8000)");
  a.flash_size_opt =
      c->add_option("--flash-size", a.flash_size, "Fail if the table does not fit in this flash size")
          ->expected(0, 1)
          ->check(CLI::IsMember(flash_size_choices()));
  c->add_flag("--disable-md5sum", a.disable_md5, "No MD5 row (csv2bin); do not check it (bin2csv)");
  c->add_flag("--no-verify", a.no_verify, "Skip the table checks (the --flash-size check still runs)");
  c->add_flag("--verify,-v", a.verify_noop, "Verify the table (the default; accepted for compatibility)");
  c->add_flag("--quiet,-q", a.quiet, "Do not print the status lines");
  c->add_option("--primary-bootloader-offset", a.primary_bl,
                "Offset of the primary bootloader (bootloader rows)");
  c->add_option("--recovery-bootloader-offset", a.recovery_bl, "Offset of the recovery bootloader");
  a.secure_opt =
      c->add_option("--secure", a.secure, "Secure boot: app sizes aligned to 0x10000 (v1) or 0x1000 (v2)")
          ->expected(0, 1)
          ->check(CLI::IsMember({"", "v1", "v2"}));
  c->add_option("--extra-partition-subtypes", a.extra,
                "Extra subtype keywords TYPE,NAME,VALUE (hex); takes all following words, so put -- before "
                "the files");
}

// Options to the library's settings; throws CLI errors (exit 2) for bad option values, as the tool does.
PartitionToolOptions tool_options(const PartArgs& a, bool* usage_error) {
  PartitionToolOptions o;
  *usage_error = false;
  auto usage = [&](const std::string& msg) {
    fail(msg);
    *usage_error = true;
    return o;
  };
  try {
    o.csv.table_offset = parse_offset_option("--offset", a.offset);
    if (!a.primary_bl.empty())
      o.csv.primary_bootloader_offset = parse_offset_option("--primary-bootloader-offset", a.primary_bl);
    if (!a.recovery_bl.empty())
      o.csv.recovery_bootloader_offset = parse_offset_option("--recovery-bootloader-offset", a.recovery_bl);
  } catch (const CLI::ValidationError& e) {
    return usage(e.what());
  }
  if (o.csv.primary_bootloader_offset && *o.csv.primary_bootloader_offset >= o.csv.table_offset) {
    return usage(
        fmt::format("Unsupported configuration. Primary bootloader must be below partition table. Check "
                    "--primary-bootloader-offset=0x{:x} and --offset=0x{:x}",
                    *o.csv.primary_bootloader_offset, o.csv.table_offset));
  }
  auto extra = parse_extra_subtypes(a.extra);
  if (!extra) return usage(extra.error().message());
  o.csv.extra_subtypes = *extra;
  o.md5 = !a.disable_md5;
  o.verify = !a.no_verify;
  if (a.secure_opt->count() > 0)
    o.secure = a.secure == "v2" ? SecureBootVersion::kV2 : SecureBootVersion::kV1;
  if (!a.flash_size.empty()) {
    o.flash_size = std::stoull(a.flash_size) * 1024 * 1024;  // "4MB" -> 4 MiB (values checked by IsMember)
  }
  o.warn = [](const std::string& w) {
    std::fflush(stdout);
    fmt::print(stderr, "ota32: {}\n", escape_control(w));
  };
  if (!a.quiet) o.status = [](const std::string& s) { fmt::print(stderr, "{}\n", s); };
  return o;
}

// Reads, parses and checks the input; on failure prints the error and returns nullopt (exit code set).
std::optional<LoadedPartitionTable> load(const PartArgs& a, PartitionToolOptions& o) {
  bool usage_error = false;
  o = tool_options(a, &usage_error);
  if (usage_error) {
    set_exit_code(kExitUsage);
    return std::nullopt;
  }
  auto bytes = read_partition_table_input(a.input);
  if (!bytes) {
    set_exit_code(fail(bytes.error()));
    return std::nullopt;
  }
  auto t = load_partition_table(*bytes, o, a.input);
  if (!t) {
    set_exit_code(fail(t.error()));
    return std::nullopt;
  }
  return std::move(*t);
}

int write_output(const std::string& path, ByteView data) {
  if (path.empty() || path == "-") {
    out(as_chars(data));
    return kExitOk;  // a failed write to stdout is reported, and the exit code set, by finish_output()
  }
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  auto w = write_file_atomic(path, data, Durability::artifact);
  return w ? kExitOk : fail(w.error());
}

void run_csv2bin(const PartArgs& a) {
  PartitionToolOptions o;
  auto t = load(a, o);
  if (!t) return;
  if (t->from_binary) {
    return set_exit_code(fail(fmt::format(
        "{}: is a binary partition table (starts with AA 50); use 'ota32 part bin2csv'", a.input)));
  }
  auto bin = partition_table_to_binary_checked(t->table, o.md5);
  if (!bin) return set_exit_code(fail(bin.error().with_context(a.input)));
  set_exit_code(write_output(a.output, *bin));
}

void run_bin2csv(const PartArgs& a) {
  PartitionToolOptions o;
  auto t = load(a, o);
  if (!t) return;
  if (!t->from_binary) {
    return set_exit_code(fail(fmt::format(
        "{}: is not a binary partition table (does not start with AA 50); use 'ota32 part csv2bin'",
        a.input)));
  }
  set_exit_code(write_output(a.output, as_bytes(partition_table_to_csv(t->table, o.csv.extra_subtypes))));
}

void run_info(const PartArgs& a) {
  PartitionToolOptions o;
  auto t = load(a, o);
  if (!t) return;
  const auto& table = t->table;
  auto bin = partition_table_to_binary_checked(table, true);
  std::string md5_hex = bin ? to_hex(ByteView(*bin).subspan(table.entries.size() * 32 + 16, 16)) : "";
  const PartitionEntry* ota = table.otadata();
  auto ota_apps = table.ota_apps();
  if (a.json) {
    nlohmann::json j;
    j["file"] = a.input;
    j["format"] = t->from_binary ? "binary" : "csv";
    j["table_offset"] = o.csv.table_offset;
    j["md5"] = md5_hex;
    j["verified"] = o.verify;
    j["partitions"] = nlohmann::json::array();
    for (size_t i = 0; i < table.entries.size(); ++i) {
      const auto& e = table.entries[i];
      j["partitions"].push_back(
          {{"index", i},
           {"name", e.name},
           {"type", e.type},
           {"type_name", partition_type_name(e.type)},
           {"subtype", e.subtype},
           {"subtype_name", partition_subtype_name(e.type, e.subtype, o.csv.extra_subtypes)},
           {"usage", partition_usage_name(e.type, e.subtype)},
           {"offset", e.offset},
           {"size", e.size},
           {"encrypted", e.encrypted},
           {"readonly", e.readonly}});
    }
    j["factory"] = table.factory() ? nlohmann::json(table.factory()->name) : nlohmann::json(nullptr);
    j["otadata"] = ota ? nlohmann::json(ota->name) : nlohmann::json(nullptr);
    j["ota_slots"] = nlohmann::json::array();
    for (const auto* e : ota_apps) j["ota_slots"].push_back(e->name);
    print_out("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return set_exit_code(kExitOk);
  }
  print_out("{}: {} partition table, {} partitions, table at 0x{:x}, MD5 {}\n", a.input,
            t->from_binary ? "binary" : "CSV", table.entries.size(), o.csv.table_offset,
            md5_hex.empty() ? "(table too long)" : md5_hex);
  // The bootloader's listing (bootloader_utility_load_partition_table), plus flags.
  print_out("## Label            Usage            Ty ST Offset   Length   Flags\n");
  for (size_t i = 0; i < table.entries.size(); ++i) {
    const auto& e = table.entries[i];
    std::string flags = e.encrypted && e.readonly ? "encrypted:readonly"
                        : e.encrypted             ? "encrypted"
                        : e.readonly              ? "readonly"
                                                  : "";
    std::string row =
        fmt::format("{:2} {:<16} {:<16} {:02x} {:02x} {:08x} {:08x} {}", i, e.name,
                    partition_usage_name(e.type, e.subtype), e.type, e.subtype, e.offset, e.size, flags);
    while (!row.empty() && row.back() == ' ') row.pop_back();
    print_out("{}\n", row);
  }
  if (ota) print_out("otadata: {} at 0x{:x}, {} OTA slot(s)\n", ota->name, ota->offset, ota_apps.size());
  set_exit_code(kExitOk);
}

void register_part(CLI::App& app) {
  auto* part = app.add_subcommand("part", "Partition tables: CSV <-> binary, as ESP-IDF's gen_esp32part.py");
  part->require_subcommand(1);
  // One set of arguments per command: option pointers (--secure, --flash-size) belong to their command.
  static PartArgs a, b, i;

  auto* c2b = part->add_subcommand("csv2bin",
                                   "Convert a partition CSV to the 3072-byte binary (same bytes as "
                                   "gen_esp32part.py)");
  c2b->add_option("input", a.input, "Partition table CSV")->required();
  c2b->add_option("output", a.output, "Binary output file ('-' = stdout)")->required();
  add_tool_options(c2b, a);
  c2b->callback([] { run_csv2bin(a); });

  auto* b2c =
      part->add_subcommand("bin2csv", "Convert a binary partition table to CSV (gen_esp32part.py's text)");
  b2c->add_option("input", b.input, "Binary partition table")->required();
  b2c->add_option("output", b.output, "CSV output file (default / '-' = stdout)");
  add_tool_options(b2c, b);
  b2c->callback([] { run_bin2csv(b); });

  auto* info = part->add_subcommand("info",
                                    "Show a partition table (CSV or binary, detected by content) after "
                                    "the same checks");
  info->add_option("file", i.input, "Partition table, CSV or binary")->required();
  info->add_flag("--json", i.json, "Print JSON");
  add_tool_options(info, i);
  info->callback([] {
    i.quiet = true;
    run_info(i);
  });
}

}  // namespace

OTA32_REGISTER_COMMANDS(10, register_part, "part");

}  // namespace ota32::cli
