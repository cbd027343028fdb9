#include "boot/app_ota_state.h"

#include <fmt/format.h>

namespace ota32 {

namespace {

struct OtaRead {
  Region region;
  Otadata otadata;
  int count = 0;  // contiguous ota_0.. (esp_ota_get_app_partition_count)
};

Result<OtaRead> read_state(const AppOtaContext& ctx) {
  const PartitionEntry* od = ctx.table.otadata();
  if (!od) return Error(ErrorCode::not_found, "not found otadata");
  OtaRead r{Region(ctx.flash, od->offset, od->size, od->name), {}, 0};
  OTA32_ASSIGN(auto raw, read_otadata(r.region));
  r.otadata.entries = {raw[0].entry(), raw[1].entry()};
  r.count = static_cast<int>(ctx.table.ota_apps().size());
  return r;
}

int slot_of(uint32_t seq, int count) {
  return static_cast<int>(ota_slot_of_seq(seq, static_cast<size_t>(count)));
}

// Rewrites entry i's own sector with only its state changed (the other 28 bytes as read).
Result<void> write_state(const OtaRead& r, int i, uint32_t state) {
  OtaSelectEntry e = r.otadata.entries[static_cast<size_t>(i)];
  e.ota_state = state;
  return write_otadata_entry(r.region, OtadataWrite{i, e});
}

const PartitionEntry* ota_slot(const PartitionTable& t, int slot) {
  auto apps = t.ota_apps();
  return slot >= 0 && slot < static_cast<int>(apps.size()) ? apps[slot] : nullptr;
}

Result<bool> verifies(const AppOtaContext& ctx, const PartitionEntry& p, bool check_secure_version) {
  OTA32_ASSIGN(auto loaded, load_app_image(ctx.flash, ctx.chip, p, ctx.efuse, false, nullptr));
  if (!loaded) return false;
  if (check_secure_version) {
    return loaded->desc && loaded->desc->secure_version >= ctx.efuse.secure_version;
  }
  return true;
}

}  // namespace

Result<uint32_t> get_state_partition(const AppOtaContext& ctx, const PartitionEntry& p) {
  if (p.type != kPartitionTypeApp || p.subtype < kAppSubtypeOta0 || p.subtype >= kAppSubtypeOta0 + 16) {
    return Error(ErrorCode::unsupported, fmt::format("{}: not an OTA slot", p.name));
  }
  OTA32_ASSIGN(auto r, read_state(ctx));
  if (r.count == 0) return Error(ErrorCode::not_found, "no OTA app partitions");
  for (const auto& e : r.otadata.entries) {
    if (ota_entry_crc_ok(e) && slot_of(e.ota_seq, r.count) == (p.subtype & 0x0F)) return e.ota_state;
  }
  return Error(ErrorCode::not_found, fmt::format("{}: no otadata entry for this slot", p.name));
}

Result<void> mark_app_valid_cancel_rollback(const AppOtaContext& ctx, BootLog& log) {
  OTA32_ASSIGN(auto r, read_state(ctx));
  int a = active_otadata_entry(r.otadata);
  if (a < 0 || r.count == 0) {
    log.error("esp_ota_ops", "Running firmware is factory");
    return Error(ErrorCode::not_found, "Running firmware is factory");
  }
  if (r.otadata.entries[static_cast<size_t>(a)].ota_state == kOtaStateValid) return {};
  return write_state(r, a, kOtaStateValid);
}

Result<bool> check_rollback_is_possible(const AppOtaContext& ctx) {
  const PartitionEntry* od = ctx.table.otadata();
  if (!od) return false;
  OTA32_ASSIGN(auto r, read_state(ctx));
  int a = active_otadata_entry(r.otadata);
  if (r.count == 0 || a < 0) return false;
  const OtaSelectEntry& o = r.otadata.entries[static_cast<size_t>(1 - a)];
  if (!ota_entry_valid(o)) {
    if (!ctx.anti_rollback && ctx.table.factory()) return verifies(ctx, *ctx.table.factory(), false);
    return false;
  }
  const PartitionEntry* p = ota_slot(ctx.table, slot_of(o.ota_seq, r.count));
  if (!p) return false;
  return verifies(ctx, *p, ctx.anti_rollback);
}

Result<void> mark_app_invalid_rollback(const AppOtaContext& ctx, BootLog& log) {
  OTA32_ASSIGN(auto r, read_state(ctx));
  int a = active_otadata_entry(r.otadata);
  if (a < 0 || r.count == 0) {
    log.error("esp_ota_ops", "Running firmware is factory");
    return Error(ErrorCode::not_found, "Running firmware is factory");
  }
  OTA32_ASSIGN(bool possible, check_rollback_is_possible(ctx));
  if (!possible) {
    log.error("esp_ota_ops", "Rollback is not possible, do not have any suitable apps in slots");
    return Error(ErrorCode::rollback_refused,
                 "Rollback is not possible, do not have any suitable apps in slots");
  }
  OTA32_TRY(write_state(r, a, kOtaStateInvalid));
  log.info("esp_ota_ops", "Rollback to previously worked partition.");
  return {};
}

}  // namespace ota32
