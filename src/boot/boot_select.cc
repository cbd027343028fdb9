#include "boot/boot_select.h"

namespace ota32 {

std::vector<int> entries_to_abort(const std::array<EntryView, 2>& entries, bool rollback) {
  std::vector<int> out;
  if (!rollback) return out;
  for (int i = 0; i < 2; ++i) {
    if (entries[i].state == kOtaStatePendingVerify) out.push_back(i);  // whatever its CRC or seq
  }
  return out;
}

namespace {
int pick(const std::array<EntryView, 2>& e, bool ok0, bool ok1) {
  if (ok0 && ok1) return e[0].seq >= e[1].seq ? 0 : 1;
  if (ok0) return 0;
  if (ok1) return 1;
  return -1;
}
}  // namespace

int active_entry(const std::array<EntryView, 2>& e) { return pick(e, e[0].valid(), e[1].valid()); }

Selection select_boot_partition(const SelectInput& in) {
  Selection s;
  const auto& e = in.entries;
  if (!in.has_otadata) {
    s.start_index = kFactoryIndex;  // silently
    return s;
  }
  auto slot_of = [&](const EntryView& x) {
    return static_cast<int>((x.seq - 1) % static_cast<uint32_t>(in.ota_app_count));
  };
  auto invalid_no_active = [&] {
    if (in.has_factory) {
      s.log.push_back({'E', "ota data partition invalid, falling back to factory"});
    } else {
      s.log.push_back({'E', "ota data partition invalid and no factory, will try all partitions"});
    }
    s.start_index = kFactoryIndex;
  };
  if (in.anti_rollback) {
    s.log.push_back({'I', "Enabled a check secure version of app for anti rollback"});
    s.log.push_back({'I', "Secure version (from eFuse) = " + std::to_string(in.efuse_secure_version)});
    if (e[0].blank_or_bad() && e[1].blank_or_bad()) {
      s.log.push_back({'I', "otadata[0..1] in initial state"});
      s.initial_contents = true;
      s.start_index = kFactoryIndex;
      return s;
    }
    bool ok[2];
    for (int i = 0; i < 2; ++i) {
      ok[i] = e[i].valid() && in.ota_app_count > 0;
      if (ok[i]) {
        const auto& v = in.slot_secure_version[slot_of(e[i])];
        if (!v)
          s.log.push_back({'E', "Failed to get partition description " + std::to_string(slot_of(e[i]))});
        ok[i] = v && *v >= in.efuse_secure_version;
      }
    }
    s.active_entry = pick(e, ok[0], ok[1]);
    if (s.active_entry < 0) {
      invalid_no_active();
    } else {
      s.start_index = slot_of(e[s.active_entry]);
    }
    return s;
  }
  if ((e[0].invalid() && e[1].invalid()) || in.ota_app_count == 0) {
    if (in.has_factory) {
      s.log.push_back({'I', "Defaulting to factory image"});
      s.start_index = kFactoryIndex;
    } else {
      s.log.push_back({'I', "No factory image, trying OTA 0"});
      s.start_index = 0;
      s.initial_contents = e[0].blank_or_bad() && e[1].blank_or_bad();
    }
    return s;
  }
  s.active_entry = active_entry(e);
  if (s.active_entry < 0) {
    invalid_no_active();
    return s;
  }
  s.start_index = slot_of(e[s.active_entry]);
  return s;
}

bool promote_new_to_pending(const EntryView& active, bool rollback) {
  return rollback && active.state == kOtaStateNew;
}

std::vector<int> boot_attempt_order(int start, int ota_app_count, bool has_test) {
  std::vector<int> order;
  if (start == kTestAppIndex) {
    order.push_back(kTestAppIndex);
    return order;
  }
  for (int i = start; i >= kFactoryIndex; --i) order.push_back(i);
  for (int i = start + 1; i < ota_app_count; ++i) order.push_back(i);
  if (has_test) order.push_back(kTestAppIndex);
  return order;
}

}  // namespace ota32
