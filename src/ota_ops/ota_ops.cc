#include "ota_ops/ota_ops.h"

#include <fmt/format.h>

#include <algorithm>

namespace ota32 {
namespace {

constexpr const char* kTag = "esp_ota_ops";

// The otadata as read, with the number of OTA slots (esp_ota_get_app_partition_count).
struct OtaRead {
  Region region;
  Otadata otadata;
  size_t count = 0;
};

Result<OtaRead> read_state(Flash& flash, const PartitionTable& table) {
  OTA32_ASSIGN(Region region, otadata_region(flash, table));
  OTA32_ASSIGN(auto raw, read_otadata(region));
  return OtaRead{region, Otadata{{raw[0].entry(), raw[1].entry()}}, table.ota_apps().size()};
}

const PartitionEntry* ota_slot(const PartitionTable& t, uint32_t slot) {
  auto apps = t.ota_apps();
  return slot < apps.size() ? apps[slot] : nullptr;
}

// Rewrites entry i's own sector with only its state changed (the other 28 bytes as read).
Result<void> write_state(const OtaRead& r, int i, uint32_t state) {
  OtaSelectEntry e = r.otadata.entries[static_cast<size_t>(i)];
  e.ota_state = state;
  return write_otadata_entry(r.region, OtadataWrite{i, e});
}

// The active entry of the running app, or not_found ("Running firmware is factory", logged).
Result<int> running_entry(const OtaRead& r, EspLog& log) {
  int a = active_otadata_entry(r.otadata);
  if (a < 0 || r.count == 0) {
    log.error(kTag, "Running firmware is factory");
    return Error(ErrorCode::not_found, "Running firmware is factory");
  }
  return a;
}

Result<bool> verifies(const AppOtaContext& ctx, const PartitionEntry& p, bool check_secure_version) {
  OTA32_ASSIGN(bool ok, ctx.verify(p));
  if (!ok || !check_secure_version) return ok;
  OTA32_ASSIGN(auto desc, get_partition_description(ctx.flash, p));
  return desc && desc->secure_version >= ctx.efuse_secure_version;
}

}  // namespace

OtaEntryBytes make_ota_entry(uint32_t seq, uint32_t state) {
  OtaEntryBytes e;
  const Bytes b = serialize_ota_select_entry(make_ota_select_entry(seq, state));
  std::copy(b.begin(), b.end(), e.raw.begin());
  return e;
}

Result<std::array<OtaEntryBytes, 2>> read_otadata(const Region& otadata) {
  std::array<OtaEntryBytes, 2> out;
  for (int i = 0; i < 2; ++i) OTA32_TRY(otadata.read(i * kFlashSectorSize, out[i].raw));
  return out;
}

Result<void> write_otadata_entry(const Region& otadata, int index, const OtaEntryBytes& e) {
  OTA32_TRY(otadata.erase(index * kFlashSectorSize, kFlashSectorSize));
  return otadata.program(index * kFlashSectorSize, e.raw);
}

Result<void> write_otadata_entry(const Region& otadata, const OtadataWrite& w) {
  const uint32_t at = static_cast<uint32_t>(w.sector) * kFlashSectorSize;
  OTA32_TRY(otadata.erase(at, kFlashSectorSize));
  return otadata.program(at, serialize_ota_select_entry(w.entry));
}

Result<Region> otadata_region(Flash& flash, const PartitionTable& table) {
  const PartitionEntry* od = table.otadata();
  if (od == nullptr) {
    return Error(ErrorCode::not_found, "not found otadata: the partition table has no otadata");
  }
  if (od->size < 2 * kFlashSectorSize) {
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: otadata partition of {:#x} bytes, 0x2000 needed", od->name, od->size));
  }
  return Region(flash, od->offset, od->size, od->name);
}

Result<Otadata> read_otadata_entries(Flash& flash, const PartitionTable& table) {
  OTA32_ASSIGN(OtaRead r, read_state(flash, table));
  return r.otadata;
}

bool is_ota_slot(const PartitionEntry& p) {
  return p.type == kPartitionTypeApp && p.subtype >= kAppSubtypeOta0 && p.subtype < kAppSubtypeOta0 + 16;
}

bool is_esp_ota_answer(const Error& e) {
  return e.code() == ErrorCode::not_found || e.code() == ErrorCode::unsupported ||
         e.code() == ErrorCode::corrupt;
}

const PartitionEntry* next_update_partition(const PartitionTable& table, const PartitionEntry* running) {
  auto slots = table.ota_apps();
  if (slots.empty()) return nullptr;
  if (running != nullptr && is_ota_slot(*running)) {
    for (size_t i = 0; i + 1 < slots.size(); ++i) {
      if (slots[i]->offset == running->offset) return slots[i + 1];
    }
  }
  return slots.front();
}

Result<std::optional<AppDescription>> get_partition_description(Flash& flash, const PartitionEntry& p) {
  if (p.size < kAppDescImageOffset + kAppDescSize) return std::optional<AppDescription>();
  Bytes b(kAppDescSize);
  OTA32_TRY(flash.read(p.offset + kAppDescImageOffset, b));
  auto d = parse_app_desc(b);
  if (!d) return std::optional<AppDescription>();
  return std::optional<AppDescription>(*d);
}

Result<uint32_t> get_state_partition(Flash& flash, const PartitionTable& table, const PartitionEntry& p) {
  if (!is_ota_slot(p)) return Error(ErrorCode::unsupported, fmt::format("{}: not an OTA slot", p.name));
  auto r = read_state(flash, table);
  if (!r) {
    if (r.error().code() == ErrorCode::corrupt) return Error(ErrorCode::not_found, r.error().message());
    return r.error();
  }
  if (r->count == 0) return Error(ErrorCode::not_found, "no OTA app partitions");
  for (const auto& e : r->otadata.entries) {
    if (ota_entry_crc_ok(e) && ota_slot_of_seq(e.ota_seq, r->count) == (p.subtype & 0x0Fu))
      return e.ota_state;
  }
  return Error(ErrorCode::not_found, fmt::format("{}: no otadata entry for this slot", p.name));
}

Result<void> mark_app_valid_cancel_rollback(const AppOtaContext& ctx, EspLog& log) {
  OTA32_ASSIGN(OtaRead r, read_state(ctx.flash, ctx.table));
  OTA32_ASSIGN(int a, running_entry(r, log));
  if (r.otadata.entries[static_cast<size_t>(a)].ota_state == kOtaStateValid) return {};
  OTA32_TRY(write_state(r, a, kOtaStateValid));
  if (!ctx.anti_rollback || ctx.running == nullptr) return {};
  // esp_ota_set_anti_rollback: the running partition's descriptor (none: ESP_ERR_NOT_FOUND).
  OTA32_ASSIGN(auto desc, get_partition_description(ctx.flash, *ctx.running));
  if (!desc) return Error(ErrorCode::not_found, fmt::format("{}: no app descriptor", ctx.running->name));
  SecureVersionBurner none = [](uint32_t) -> Result<void> { return {}; };
  OTA32_TRY(update_secure_version(ctx.efuse_secure_version, ctx.secure_version_bits, desc->secure_version,
                                  ctx.burn_secure_version ? ctx.burn_secure_version : none, log));
  return {};
}

Result<bool> check_rollback_is_possible(const AppOtaContext& ctx) {
  auto r = read_state(ctx.flash, ctx.table);
  if (!r) {
    if (is_esp_ota_answer(r.error())) return false;
    return r.error();
  }
  int a = active_otadata_entry(r->otadata);
  if (r->count == 0 || a < 0) return false;
  const OtaSelectEntry& o = r->otadata.entries[static_cast<size_t>(1 - a)];
  if (!ota_entry_valid(o)) {
    if (!ctx.anti_rollback && ctx.table.factory()) return verifies(ctx, *ctx.table.factory(), false);
    return false;
  }
  const PartitionEntry* p = ota_slot(ctx.table, ota_slot_of_seq(o.ota_seq, r->count));
  if (!p) return false;
  return verifies(ctx, *p, ctx.anti_rollback);
}

Result<void> mark_app_invalid_rollback(const AppOtaContext& ctx, EspLog& log) {
  OTA32_ASSIGN(OtaRead r, read_state(ctx.flash, ctx.table));
  OTA32_ASSIGN(int a, running_entry(r, log));
  OTA32_ASSIGN(bool possible, check_rollback_is_possible(ctx));
  if (!possible) {
    log.error(kTag, "Rollback is not possible, do not have any suitable apps in slots");
    return Error(ErrorCode::rollback_refused,
                 "Rollback is not possible, do not have any suitable apps in slots");
  }
  OTA32_TRY(write_state(r, a, kOtaStateInvalid));
  log.info(kTag, "Rollback to previously worked partition.");
  return {};
}

Result<bool> invalidate_inactive_ota_data_slot(Flash& flash, const PartitionTable& table,
                                               const PartitionEntry* running) {
  auto r = read_state(flash, table);
  if (!r) {
    if (is_esp_ota_answer(r.error())) return false;
    return r.error();
  }
  int active = active_otadata_entry(r->otadata);
  if (active < 0 || r->count == 0) return false;
  int inactive = 1 - active;
  const OtaSelectEntry& e = r->otadata.entries[static_cast<size_t>(inactive)];
  if (e.ota_seq == kOtaSeqEmpty || !ota_entry_crc_ok(e)) return false;
  const PartitionEntry* named = ota_slot(table, ota_slot_of_seq(e.ota_seq, r->count));
  if (running == nullptr || named == nullptr || named->offset == running->offset) return false;
  OTA32_TRY(r->region.erase(static_cast<uint32_t>(inactive) * kFlashSectorSize, kFlashSectorSize));
  return true;
}

Result<void> set_boot_partition(Flash& flash, const PartitionTable& table, const PartitionEntry& target,
                                bool rollback_enabled) {
  OTA32_ASSIGN(OtaRead r, read_state(flash, table));
  OTA32_ASSIGN(OtadataWrite w,
               plan_set_boot_partition(r.otadata, target.subtype & 0x0F, r.count, rollback_enabled));
  return write_otadata_entry(r.region, w);
}

}  // namespace ota32
