// ota32 otadata read | write | switch: the otadata partition, as the ESP-IDF bootloader reads it and as
// esp_ota_set_boot_partition (or otatool.py) writes it.
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cassert>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "format/otadata.h"
#include "format/partition_table.h"

namespace ota32::cli {
namespace {

struct OtadataArgs {
  std::string file, partitions, output, state, name;
  uint64_t slot = 0, seq = 0, entry = 0;
  bool rollback = false, json = false, empty = false, otatool = false, flash_image = false;
  CLI::Option* slot_opt = nullptr;
  CLI::Option* seq_opt = nullptr;
};

Result<PartitionTable> load_table(const std::string& path) {
  OTA32_ASSIGN(Bytes bytes, read_partition_table_input(path));
  PartitionToolOptions o;
  o.warn = [](const std::string& w) { fmt::print(stderr, "ota32: {}\n", escape_control(w)); };
  OTA32_ASSIGN(auto t, load_partition_table(bytes, o, path));
  return t.table;
}

// The otadata bytes of FILE: the file itself, or with --flash-image the otadata partition's window of it.
struct OtadataSource {
  Bytes file;
  size_t offset = 0, size = 0;
  ByteView view() const { return ByteView(file).subspan(offset, size); }
};

Result<OtadataSource> load_otadata(const OtadataArgs& a, const PartitionTable& t) {
  OtadataSource s;
  OTA32_ASSIGN(s.file, read_input(a.file, kImageInput));
  s.size = s.file.size();
  if (a.flash_image) {
    const PartitionEntry* ota = t.otadata();
    if (!ota)
      return Error(ErrorCode::not_found, fmt::format("{}: the table has no otadata partition", a.partitions));
    if (uint64_t{ota->offset} + ota->size > s.file.size()) {
      return Error(ErrorCode::out_of_range,
                   fmt::format("{}: flash image is {} bytes, otadata ends at 0x{:x}", a.file, s.file.size(),
                               uint64_t{ota->offset} + ota->size));
    }
    s.offset = ota->offset;
    s.size = ota->size;
  }
  auto d = parse_otadata(s.view());
  if (!d) return d.error().with_context(a.file);
  return s;
}

nlohmann::json entry_json(const Otadata& d, size_t i, size_t count,
                          const std::vector<const PartitionEntry*>& slots) {
  const auto& e = d.entries[i];
  nlohmann::json j = {{"index", i},
                      {"offset", i * kOtadataSectorSize},
                      {"seq", e.ota_seq},
                      {"state", e.ota_state},
                      {"state_name", ota_state_name(e.ota_state)},
                      {"crc", e.crc},
                      {"crc_ok", ota_entry_crc_ok(e)},
                      {"empty", e.ota_seq == kOtaSeqEmpty},
                      {"valid", ota_entry_valid(e)}};
  if (count > 0 && e.ota_seq != kOtaSeqEmpty) {
    uint32_t slot = ota_slot_of_seq(e.ota_seq, count);
    j["slot"] = slot;
    j["slot_name"] = slots[slot]->name;
  } else {
    j["slot"] = nullptr;
  }
  return j;
}

std::string entry_text(const Otadata& d, size_t i, size_t count,
                       const std::vector<const PartitionEntry*>& slots) {
  const auto& e = d.entries[i];
  std::string head = fmt::format("entry {} @0x{:04x}: ", i, i * kOtadataSectorSize);
  if (e.ota_seq == kOtaSeqEmpty) {
    return head + fmt::format("empty (seq 0xffffffff{})", e.crc == 0xFFFFFFFF ? ", erased" : "");
  }
  std::string slot = count > 0 ? fmt::format(" -> slot {} ({})", ota_slot_of_seq(e.ota_seq, count),
                                             slots[ota_slot_of_seq(e.ota_seq, count)]->name)
                               : "";
  std::string crc = ota_entry_crc_ok(e) ? fmt::format("crc 0x{:08x} ok", e.crc)
                                        : fmt::format("crc 0x{:08x} BAD (expected 0x{:08x}): ignored", e.crc,
                                                      otadata_crc(e.ota_seq));
  return head + fmt::format("seq {}{}, state {}, {}", e.ota_seq, slot, ota_state_name(e.ota_state), crc);
}

void run_read(const OtadataArgs& a) {
  auto t = load_table(a.partitions);
  if (!t) return set_exit_code(fail(t.error()));
  auto src = load_otadata(a, *t);
  if (!src) return set_exit_code(fail(src.error()));
  Otadata d = *parse_otadata(src->view());
  auto slots = t->ota_apps();
  BootSelectOptions o;
  o.has_otadata = t->otadata() != nullptr;
  o.rollback = a.rollback;
  o.has_factory = t->factory() != nullptr;
  BootSelection s = select_boot_slot(d, slots.size(), o);
  // Without anti-rollback the decision logs at most one line.
  assert(s.log.size() <= 1);
  const std::string log_level = s.log.empty() ? "" : std::string(1, s.log[0].level);
  const std::string log_text = s.log.empty() ? "" : s.log[0].text;
  if (!o.has_otadata) {
    s.reason = fmt::format("{} has no otadata partition: the bootloader ignores otadata", a.partitions);
  }
  const PartitionEntry* boot = boot_partition_for(*t, s);

  if (a.json) {
    nlohmann::json j;
    j["file"] = a.file;
    j["ota_app_count"] = slots.size();
    j["ota_slots"] = nlohmann::json::array();
    for (const auto* p : slots) j["ota_slots"].push_back(p->name);
    j["factory"] = t->factory() ? nlohmann::json(t->factory()->name) : nlohmann::json(nullptr);
    j["rollback"] = a.rollback;
    j["entries"] = {entry_json(d, 0, slots.size(), slots), entry_json(d, 1, slots.size(), slots)};
    j["active_entry"] = s.entry_index;
    j["ota_slot"] = s.ota_slot ? nlohmann::json(*s.ota_slot) : nlohmann::json(nullptr);
    j["boot"] = boot ? nlohmann::json(boot->name) : nlohmann::json(nullptr);
    j["boot_offset"] = boot ? nlohmann::json(boot->offset) : nlohmann::json(nullptr);
    j["reason"] = s.reason;
    j["log"] = log_text;
    j["log_level"] = log_level;
    j["initial_contents"] = s.initial_contents;
    j["writes"] = nlohmann::json::array();
    for (const auto& w : s.writes) {
      j["writes"].push_back({{"sector", w.sector},
                             {"seq", w.entry.ota_seq},
                             {"state_name", ota_state_name(w.entry.ota_state)}});
    }
    print_out("{}\n", j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    return set_exit_code(kExitOk);
  }
  std::string names;
  for (const auto* p : slots) names += (names.empty() ? "" : ", ") + p->name;
  print_out("{}: {} OTA slot(s){}, factory: {}, rollback: {}\n", a.file, slots.size(),
            names.empty() ? "" : " (" + names + ")", t->factory() ? t->factory()->name : "none",
            a.rollback ? "on" : "off");
  for (size_t i = 0; i < 2; ++i) print_out("{}\n", entry_text(d, i, slots.size(), slots));
  for (const auto& w : s.writes) {
    print_out("bootloader rewrites entry {}: state {}\n", w.sector, ota_state_name(w.entry.ota_state));
  }
  if (!s.log.empty()) print_out("bootloader log: {} boot: {}\n", log_level, log_text);
  if (boot) {
    print_out("boot: {} at 0x{:x} ({})\n", boot->name, boot->offset, s.reason);
  } else {
    print_out("boot: none: no bootable app partition in the table ({})\n", s.reason);
  }
  set_exit_code(kExitOk);
}

void run_write(const OtadataArgs& a) {
  if (a.empty) {
    if (a.slot_opt->count() || a.seq_opt->count() || !a.state.empty()) {
      return set_exit_code(fail("--empty takes no --slot, --seq or --state"));
    }
    auto w = write_file_atomic(a.file, empty_otadata_image(), Durability::artifact);
    return set_exit_code(w ? kExitOk : fail(w.error()));
  }
  if (!a.slot_opt->count() && !a.seq_opt->count())
    return set_exit_code(fail("give --slot N (or --seq K), or --empty"));
  if (a.entry > 1) return set_exit_code(fail(fmt::format("--entry {}: must be 0 or 1", a.entry)));
  uint64_t seq = a.seq_opt->count() ? a.seq : a.slot + 1;
  if (seq > 0xFFFFFFFF) return set_exit_code(fail(fmt::format("--seq {}: does not fit in 32 bits", seq)));
  if (a.slot_opt->count()) {
    if (!a.partitions.empty()) {
      auto t = load_table(a.partitions);
      if (!t) return set_exit_code(fail(t.error()));
      size_t count = t->ota_apps().size();
      if (a.slot >= count) {
        return set_exit_code(
            fail(fmt::format("--slot {}: {} has {} OTA slot(s)", a.slot, a.partitions, count)));
      }
      if (ota_slot_of_seq(static_cast<uint32_t>(seq), count) != a.slot) {
        return set_exit_code(
            fail(fmt::format("--seq {} selects slot {} with {} OTA slots, not --slot {}", seq,
                             ota_slot_of_seq(static_cast<uint32_t>(seq), count), count, a.slot)));
      }
    } else if (a.seq_opt->count() && seq != a.slot + 1) {
      return set_exit_code(fail(fmt::format(
          "--seq {} with --slot {}: give --partitions so the slot can be checked against the slot count", seq,
          a.slot)));
    }
  }
  uint32_t state = kOtaStateUndefined;
  if (!a.state.empty()) {
    auto s = parse_ota_state(a.state);
    if (!s) return set_exit_code(fail(s.error()));
    state = *s;
  }
  Otadata d;  // both entries erased
  d.entries[a.entry] = make_ota_select_entry(static_cast<uint32_t>(seq), state);
  auto w = write_file_atomic(a.file, otadata_image(d), Durability::artifact);
  set_exit_code(w ? kExitOk : fail(w.error()));
}

void run_switch(const OtadataArgs& a) {
  auto t = load_table(a.partitions);
  if (!t) return set_exit_code(fail(t.error()));
  auto src = load_otadata(a, *t);
  if (!src) return set_exit_code(fail(src.error()));
  auto slots = t->ota_apps();
  bool factory = false;
  uint32_t slot = static_cast<uint32_t>(a.slot);
  if (!a.name.empty()) {
    if (a.slot_opt->count()) return set_exit_code(fail("give --slot or --name, not both"));
    const PartitionEntry* p = t->find(a.name);
    if (!p || p->type != kPartitionTypeApp) {
      return set_exit_code(
          fail(fmt::format("--name {}: no app partition of that name in {}", a.name, a.partitions)));
    }
    auto it = std::find(slots.begin(), slots.end(), p);
    if (p->subtype == kAppSubtypeFactory) {
      factory = true;
    } else if (it == slots.end()) {
      return set_exit_code(fail(fmt::format("--name {}: not one of the OTA slots ota_0 .. ota_{}", a.name,
                                            slots.empty() ? 0 : slots.size() - 1)));
    } else {
      slot = static_cast<uint32_t>(it - slots.begin());
    }
  } else if (!a.slot_opt->count()) {
    return set_exit_code(fail("give --slot N or --name NAME"));
  } else if (a.slot > 0xFFFFFFFF) {
    return set_exit_code(fail(fmt::format("--slot {}: too large", a.slot)));
  }

  if (!t->otadata()) {
    return set_exit_code(
        fail(fmt::format("{}: no otadata partition (esp_ota_set_boot_partition returns "
                         "ESP_ERR_NOT_FOUND)",
                         a.partitions)));
  }
  Otadata d = *parse_otadata(src->view());
  Bytes updated;
  std::string what;
  if (factory) {
    if (a.otatool)
      return set_exit_code(fail("--otatool: otatool's switch_ota_partition only switches to OTA slots"));
    updated = Bytes(src->size, 0xFF);  // esp_ota_set_boot_partition(factory) erases the whole partition
    what = "esp_ota_set_boot_partition(factory): both sectors erased";
  } else {
    auto w = a.otatool ? plan_otatool_switch(d, slot, slots.size())
                       : plan_set_boot_partition(d, slot, slots.size(), a.rollback);
    if (!w) return set_exit_code(fail(w.error().with_context(a.file)));
    updated = a.otatool ? apply_otatool_write(src->view(), *w) : apply_otadata_write(src->view(), *w);
    what = fmt::format("{}(ota_{}): entry {} <- seq {}, state {}",
                       a.otatool ? "otatool switch_ota_partition" : "esp_ota_set_boot_partition", slot,
                       w->sector, w->entry.ota_seq, ota_state_name(w->entry.ota_state));
  }
  Bytes out = src->file;
  std::copy(updated.begin(), updated.end(), out.begin() + static_cast<std::ptrdiff_t>(src->offset));
  const std::string& dest = a.output.empty() ? a.file : a.output;
  auto wr = write_file_atomic(dest, out, Durability::artifact);
  if (!wr) return set_exit_code(fail(wr.error()));
  BootSelectOptions o;
  o.rollback = a.rollback;
  o.has_factory = t->factory() != nullptr;
  const PartitionEntry* boot =
      boot_partition_for(*t, select_boot_slot(*parse_otadata(updated), slots.size(), o));
  print_out("{}: {}; the bootloader will boot {}\n", dest, what, boot ? boot->name : "nothing");
  set_exit_code(kExitOk);
}

void register_otadata(CLI::App& app) {
  auto* g = app.add_subcommand("otadata", "The otadata partition: which OTA slot the bootloader boots");
  g->require_subcommand(1);
  static OtadataArgs r, w, s;

  auto* read =
      g->add_subcommand("read", "Decode otadata and say which partition the bootloader boots, and why");
  read->add_option("file", r.file, "otadata partition contents (8 KiB), or a flash image with --flash-image")
      ->required();
  read->add_option("--partitions,-p", r.partitions, "Partition table (CSV or binary)")->required();
  read->add_flag("--rollback", r.rollback, "Bootloader built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE");
  read->add_flag("--flash-image", r.flash_image,
                 "FILE is a whole flash image: read the otadata partition in it");
  read->add_flag("--json", r.json, "Print JSON (its \"boot\" field is the partition name)");
  read->callback([] { run_read(r); });

  auto* write =
      g->add_subcommand("write", "Make an otadata image with one entry (or --empty: ota_data_initial.bin)");
  write->add_option("output", w.file, "Output file (8 KiB)")->required();
  w.slot_opt = add_number_option(write, "--slot", w.slot, "OTA slot N: seq N+1 unless --seq is given");
  w.seq_opt = add_number_option(write, "--seq", w.seq, "Sequence number (slot = (seq - 1) % slot count)");
  write->add_option(
      "--state", w.state,
      "NEW, PENDING_VERIFY, VALID, INVALID, ABORTED or UNDEFINED (default; what set_boot writes "
      "without rollback) or a number");
  add_number_option(write, "--entry", w.entry, "Which entry (sector) holds it: 0 (default) or 1");
  write->add_option("--partitions,-p", w.partitions, "Check --slot/--seq against this table's OTA slots");
  write->add_flag("--empty", w.empty,
                  "8 KiB of 0xFF (what the ESP-IDF build flashes as ota_data_initial.bin)");
  write->callback([] { run_write(w); });

  auto* sw = g->add_subcommand("switch",
                               "Select the partition to boot as esp_ota_set_boot_partition() does on the "
                               "device: the next sequence number "
                               "goes to the other sector (erased, then programmed), which keeps its label; "
                               "--otatool does what otatool.py's "
                               "switch_ota_partition does instead");
  sw->add_option("file", s.file, "otadata partition contents (8 KiB), or a flash image with --flash-image")
      ->required();
  s.slot_opt = add_number_option(sw, "--slot", s.slot, "OTA slot N (ota_N)");
  sw->add_option("--name", s.name, "Partition name instead of --slot (\"factory\" erases otadata)");
  sw->add_option("--partitions,-p", s.partitions, "Partition table (CSV or binary)")->required();
  sw->add_option("-o,--output", s.output, "Write here instead of rewriting FILE");
  sw->add_flag("--rollback", s.rollback, "App built with rollback: the new entry is NEW (else UNDEFINED)");
  sw->add_flag(
      "--otatool", s.otatool,
      "otatool.py semantics: INVALID/ABORTED entries count if their CRC is good; only seq and crc of the "
      "target entry change");
  sw->add_flag("--flash-image", s.flash_image,
               "FILE is a whole flash image: switch the otadata partition in it");
  sw->callback([] { run_switch(s); });
}

}  // namespace

OTA32_REGISTER_COMMANDS(20, register_otadata, "otadata");

}  // namespace ota32::cli
