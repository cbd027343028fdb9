#include "format/otadata.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>
#include <cstring>

#include "core/crc32.h"
#include "core/numbers.h"

namespace ota32 {
namespace {

const char* const kStateNames[] = {"NEW", "PENDING_VERIFY", "VALID", "INVALID", "ABORTED"};

std::string upper(std::string_view s) {
  std::string r(s);
  for (char& c : r)
    if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
  return r;
}

// bootloader_common_select_otadata: the larger seq among the usable ones, entry 0 on a tie.
int select_entry(const Otadata& d, bool ok0, bool ok1) {
  if (ok0 && ok1) return d.entries[0].ota_seq >= d.entries[1].ota_seq ? 0 : 1;
  if (ok0) return 0;
  if (ok1) return 1;
  return -1;
}

bool blank_or_bad_crc(const OtaSelectEntry& e) { return e.ota_seq == kOtaSeqEmpty || !ota_entry_crc_ok(e); }

std::string describe_entry(const Otadata& d, int i) {
  const auto& e = d.entries[static_cast<size_t>(i)];
  return fmt::format("entry {} (seq {}, {})", i, e.ota_seq, ota_state_name(e.ota_state));
}

}  // namespace

std::string ota_state_name(uint32_t state) {
  if (state < 5) return kStateNames[state];
  if (state == kOtaStateUndefined) return "UNDEFINED";
  return fmt::format("0x{:08x}", state);
}

Result<uint32_t> parse_ota_state(std::string_view text) {
  std::string u = upper(text);
  if (u.starts_with("ESP_OTA_IMG_")) u = u.substr(12);
  for (uint32_t i = 0; i < 5; ++i)
    if (u == kStateNames[i]) return i;
  if (u == "UNDEFINED") return uint32_t{kOtaStateUndefined};
  auto n = parse_u32(text, "state");
  if (n) return *n;
  return Error(
      ErrorCode::invalid_argument,
      fmt::format("state '{}': expected NEW, PENDING_VERIFY, VALID, INVALID, ABORTED, UNDEFINED or a "
                  "number",
                  text));
}

uint32_t otadata_crc(uint32_t ota_seq) {
  uint8_t b[4];
  store_le32(b, ota_seq);
  return crc32_le(0xFFFFFFFF, ByteView(b, 4));
}

OtaSelectEntry make_ota_select_entry(uint32_t ota_seq, uint32_t ota_state) {
  OtaSelectEntry e;
  e.ota_seq = ota_seq;
  e.seq_label.fill(0xFF);
  e.ota_state = ota_state;
  e.crc = otadata_crc(ota_seq);
  return e;
}

OtaSelectEntry parse_ota_select_entry(ByteView b) {
  assert(b.size() >= kOtaSelectEntrySize);
  OtaSelectEntry e;
  e.ota_seq = load_le32(b.data());
  std::memcpy(e.seq_label.data(), b.data() + 4, e.seq_label.size());
  e.ota_state = load_le32(b.data() + 24);
  e.crc = load_le32(b.data() + 28);
  return e;
}

Bytes serialize_ota_select_entry(const OtaSelectEntry& e) {
  ByteWriter w;
  w.u32(e.ota_seq);
  w.bytes(e.seq_label);
  w.u32(e.ota_state);
  w.u32(e.crc);
  return w.take();
}

bool ota_entry_invalid(const OtaSelectEntry& e) {
  return e.ota_seq == kOtaSeqEmpty || e.ota_state == kOtaStateInvalid || e.ota_state == kOtaStateAborted;
}
bool ota_entry_crc_ok(const OtaSelectEntry& e) { return e.crc == otadata_crc(e.ota_seq); }
bool ota_entry_valid(const OtaSelectEntry& e) { return !ota_entry_invalid(e) && ota_entry_crc_ok(e); }

Result<Otadata> parse_otadata(ByteView bytes) {
  if (bytes.size() < 2 * kOtadataSectorSize) {
    return Error(ErrorCode::corrupt, fmt::format("otadata is {} bytes; it needs two 4 KiB sectors ({} bytes)",
                                                 bytes.size(), 2 * kOtadataSectorSize));
  }
  Otadata d;
  d.entries[0] = parse_ota_select_entry(bytes.subspan(0, kOtaSelectEntrySize));
  d.entries[1] = parse_ota_select_entry(bytes.subspan(kOtadataSectorSize, kOtaSelectEntrySize));
  return d;
}

Bytes empty_otadata_image() { return Bytes(2 * kOtadataSectorSize, 0xFF); }

Bytes otadata_image(const Otadata& d) {
  Bytes out = empty_otadata_image();
  for (size_t i = 0; i < 2; ++i) {
    Bytes e = serialize_ota_select_entry(d.entries[i]);
    std::copy(e.begin(), e.end(), out.begin() + static_cast<std::ptrdiff_t>(i * kOtadataSectorSize));
  }
  return out;
}

int active_otadata_entry(const Otadata& d) {
  return select_entry(d, ota_entry_valid(d.entries[0]), ota_entry_valid(d.entries[1]));
}

uint32_t ota_slot_of_seq(uint32_t ota_seq, size_t ota_app_count) {
  assert(ota_app_count > 0);
  return static_cast<uint32_t>((ota_seq - 1u) % static_cast<uint32_t>(ota_app_count));
}

OtadataWrite initial_seq_write(uint32_t slot) { return {0, make_ota_select_entry(slot + 1, kOtaStateValid)}; }

BootSelection select_boot_slot(const Otadata& d, size_t ota_app_count, bool rollback_enabled) {
  BootSelectOptions o;
  o.rollback = rollback_enabled;
  return select_boot_slot(d, ota_app_count, o);
}

BootSelection select_boot_slot(const Otadata& input, size_t count, const BootSelectOptions& opt) {
  BootSelection s;
  if (!opt.has_otadata) {
    s.reason = "no otadata partition: the bootloader starts at the factory index without reading otadata";
    return s;  // silently
  }
  Otadata d = input;
  const bool rollback = opt.rollback || opt.anti_rollback;
  // §3.2: an app that was booted once and never confirmed is aborted before anything is selected.
  if (rollback) {
    for (int i = 0; i < 2; ++i) {
      auto& e = d.entries[static_cast<size_t>(i)];
      if (e.ota_state == kOtaStatePendingVerify) {  // whatever its CRC or seq
        e.ota_state = kOtaStateAborted;
        s.writes.push_back({i, e});
      }
    }
  }
  std::string aborted = s.writes.empty() ? "" : " (PENDING_VERIFY entries aborted: the app never confirmed)";
  auto no_active = [&](std::string why) {
    s.log.push_back({'E', opt.has_factory
                              ? "ota data partition invalid, falling back to factory"
                              : "ota data partition invalid and no factory, will try all partitions"});
    s.reason =
        why + (opt.has_factory ? "; falling back to factory" : "; no factory, trying every slot") + aborted;
  };
  auto choose = [&](int i) {
    s.entry_index = i;
    const auto& e = d.entries[static_cast<size_t>(i)];
    s.ota_slot = ota_slot_of_seq(e.ota_seq, count);
    s.reason = fmt::format("{} is the active entry: slot ({} - 1) % {} = {}", describe_entry(d, i), e.ota_seq,
                           count, *s.ota_slot) +
               aborted;
    if (rollback && e.ota_state == kOtaStateNew) {
      auto& w = d.entries[static_cast<size_t>(i)];
      w.ota_state = kOtaStatePendingVerify;
      s.writes.push_back({i, w});
      s.reason += "; NEW becomes PENDING_VERIFY until the app confirms it";
    }
  };

  if (opt.anti_rollback) {
    s.log.push_back({'I', "Enabled a check secure version of app for anti rollback"});
    s.log.push_back({'I', fmt::format("Secure version (from eFuse) = {}", opt.efuse_secure_version)});
    if (blank_or_bad_crc(d.entries[0]) && blank_or_bad_crc(d.entries[1])) {
      s.log.push_back({'I', "otadata[0..1] in initial state"});
      s.initial_contents = true;
      s.reason = "both entries empty or with a bad CRC (initial state)" + aborted;
      return s;
    }
    bool ok[2];
    for (size_t i = 0; i < 2; ++i) {
      ok[i] = ota_entry_valid(d.entries[i]) && count > 0;
      if (!ok[i]) continue;
      const uint32_t slot = ota_slot_of_seq(d.entries[i].ota_seq, count);
      const auto& v = opt.slot_secure_version[slot];
      if (!v) s.log.push_back({'E', fmt::format("Failed to get partition description {}", slot)});
      ok[i] = v && *v >= opt.efuse_secure_version;
    }
    int i = select_entry(d, ok[0], ok[1]);
    if (i < 0) {
      no_active("no entry is valid with an app whose secure_version passes the eFuse check");
      return s;
    }
    choose(i);
    return s;
  }

  if ((ota_entry_invalid(d.entries[0]) && ota_entry_invalid(d.entries[1])) || count == 0) {
    std::string why = count == 0 ? "no OTA app partitions" : "both entries are empty, INVALID or ABORTED";
    if (opt.has_factory) {
      s.log.push_back({'I', "Defaulting to factory image"});
      s.reason = why + "; booting factory" + aborted;
    } else {
      s.log.push_back({'I', "No factory image, trying OTA 0"});
      s.ota_slot = 0;
      s.initial_contents = blank_or_bad_crc(d.entries[0]) && blank_or_bad_crc(d.entries[1]);
      s.reason = why + "; no factory, trying ota_0" +
                 (s.initial_contents ? " (initial state: entry 0 is written after it boots)" : "") + aborted;
    }
    return s;
  }
  int i = active_otadata_entry(d);
  if (i < 0) {
    no_active("no entry has a good CRC and a usable state");
    return s;
  }
  choose(i);
  return s;
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

const PartitionEntry* boot_partition_for(const PartitionTable& t, const BootSelection& s) {
  const auto slots = t.ota_apps();
  const PartitionEntry* test = t.find_first(kPartitionTypeApp, kAppSubtypeTest);
  for (int i : boot_attempt_order(s.start_index(), static_cast<int>(slots.size()), test != nullptr)) {
    if (i == kTestAppIndex) return test;
    // A missing or zero-size partition is skipped, as the loader does.
    const PartitionEntry* p = i == kFactoryIndex                      ? t.factory()
                              : static_cast<size_t>(i) < slots.size() ? slots[static_cast<size_t>(i)]
                                                                      : nullptr;
    if (p && p->size > 0) return p;
  }
  return nullptr;
}

namespace {

// The smallest seq >= the active one that maps to `slot` (esp_rewrite_ota_data's loop).
Result<uint32_t> next_seq(uint32_t active_seq, uint32_t slot, size_t count) {
  uint64_t base = (uint64_t{slot} + 1) % count;
  uint64_t seq = base;
  if (active_seq > base) seq = base + (active_seq - base + count - 1) / count * count;
  // 0xFFFFFFFF is the erased marker, not a sequence number: ESP-IDF writes it here and the entry then reads
  // as empty, so the device silently keeps booting the old slot. ota32 refuses, as for any larger value.
  if (seq >= kOtaSeqEmpty) {
    return Error(ErrorCode::out_of_range,
                 fmt::format("otadata: sequence number would reach 0xffffffff, the erased marker (active "
                             "seq {})",
                             active_seq));
  }
  return static_cast<uint32_t>(seq);
}

Result<void> check_slot(uint32_t slot, size_t count) {
  if (slot >= count) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("slot {}: the table has {} OTA app slot(s) (ota_0 .. ota_{} without gaps)", slot,
                             count, count == 0 ? std::string("?") : std::to_string(count - 1)));
  }
  return {};
}

// The rule esp_ota_set_boot_partition and otatool share (§2, §7), from the entry they take as the base
// (-1: none): the other sector gets the next seq that maps to `slot`; without a base, sector 0 gets slot + 1.
// The written entry starts as what that sector held; only seq and crc are set here.
Result<OtadataWrite> plan_next_seq(const Otadata& current, int base, uint32_t slot, size_t count) {
  OTA32_TRY(check_slot(slot, count));
  OtadataWrite w{0, current.entries[0]};
  uint32_t seq = slot + 1;
  if (base >= 0) {
    OTA32_ASSIGN(seq, next_seq(current.entries[static_cast<size_t>(base)].ota_seq, slot, count));
    w.sector = 1 - base;
    w.entry = current.entries[static_cast<size_t>(w.sector)];
  }
  w.entry.ota_seq = seq;
  w.entry.crc = otadata_crc(seq);
  return w;
}

}  // namespace

Result<OtadataWrite> plan_set_boot_partition(const Otadata& current, uint32_t slot, size_t count,
                                             bool rollback_enabled) {
  OTA32_ASSIGN(OtadataWrite w, plan_next_seq(current, active_otadata_entry(current), slot, count));
  w.entry.ota_state = rollback_enabled ? kOtaStateNew : kOtaStateUndefined;
  return w;
}

Result<OtadataWrite> plan_otatool_switch(const Otadata& current, uint32_t slot, size_t count) {
  // The tool's base: CRC-good with seq < 0xFFFFFFFF, whatever the state.
  auto ok = [](const OtaSelectEntry& e) { return e.ota_seq < kOtaSeqEmpty && ota_entry_crc_ok(e); };
  return plan_next_seq(current, select_entry(current, ok(current.entries[0]), ok(current.entries[1])), slot,
                       count);
}

Bytes apply_otadata_write(ByteView image, const OtadataWrite& w) {
  assert(image.size() >= 2 * kOtadataSectorSize && (w.sector == 0 || w.sector == 1));
  Bytes out(image.begin(), image.end());
  auto at =
      out.begin() + static_cast<std::ptrdiff_t>(w.sector) * static_cast<std::ptrdiff_t>(kOtadataSectorSize);
  std::fill(at, at + static_cast<std::ptrdiff_t>(kOtadataSectorSize), 0xFF);
  Bytes e = serialize_ota_select_entry(w.entry);
  std::copy(e.begin(), e.end(), at);
  return out;
}

Bytes apply_otatool_write(ByteView image, const OtadataWrite& w) {
  assert(image.size() >= 2 * kOtadataSectorSize && (w.sector == 0 || w.sector == 1));
  Bytes out(image.begin(), image.end());
  size_t base = static_cast<size_t>(w.sector) * kOtadataSectorSize;
  store_le32(out.data() + base, w.entry.ota_seq);
  store_le32(out.data() + base + 28, w.entry.crc);
  return out;
}

}  // namespace ota32
