// otadata: the partition reader, the bootloader's slot choice, and the writers' promise that after
// esp_ota_set_boot_partition(slot) (or otatool's switch) the bootloader boots that slot.
#include <algorithm>

#include "format/otadata.h"
#include "fuzz_check.h"

using namespace ota32;

namespace {

// The slot the bootloader starts from for this image (rollback off), or -1 when no entry is valid.
long booted_slot(ByteView image, size_t count) {
  auto d = parse_otadata(image);
  FUZZ_CHECK(d.has_value(), "written otadata does not parse");
  int active = active_otadata_entry(*d);
  if (active < 0) return -1;
  return static_cast<long>(ota_slot_of_seq(d->entries[static_cast<size_t>(active)].ota_seq, count));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t flags = in.take_u8();
  const size_t count = in.take_u8() % 17;  // ota_0 .. ota_15 at most
  const uint32_t slot = in.take_u8() % 17;
  const uint16_t secure_ok_mask = static_cast<uint16_t>(in.take_u8() | (in.take_u8() << 8));
  ByteView rest = in.rest();

  // Short inputs are the two 32-byte entries of an otherwise erased partition, optionally with their CRCs
  // made right, so that the mutator reaches every row of the decision table; long ones are whole images.
  Bytes image;
  if (rest.size() < 2 * kOtadataSectorSize) {
    image = empty_otadata_image();
    std::copy_n(rest.begin(), std::min<size_t>(rest.size(), 32), image.begin());
    if (rest.size() > 32)
      std::copy_n(rest.begin() + 32, std::min<size_t>(rest.size() - 32, 32),
                  image.begin() + kOtadataSectorSize);
    if (flags & 1) {
      for (size_t base : {size_t{0}, kOtadataSectorSize})
        store_le32(&image[base + 28], otadata_crc(load_le32(&image[base])));
    }
    FUZZ_CHECK(!parse_otadata(rest).has_value(), "otadata of %zu bytes accepted", rest.size());
  } else {
    image.assign(rest.begin(), rest.end());
  }
  auto d = parse_otadata(image);
  FUZZ_CHECK(d.has_value(), "otadata of %zu bytes refused", image.size());

  // otadata_image is the inverse of parse_otadata.
  auto again = parse_otadata(otadata_image(*d));
  FUZZ_CHECK(again && again->entries == d->entries, "otadata_image does not round-trip");

  const int active = active_otadata_entry(*d);
  FUZZ_CHECK(active >= -1 && active <= 1, "active entry %d", active);
  if (active >= 0)
    FUZZ_CHECK(ota_entry_valid(d->entries[static_cast<size_t>(active)]), "active entry invalid");

  BootSelectOptions o;
  o.has_otadata = (flags & 16) == 0;
  o.rollback = flags & 2;
  o.anti_rollback = flags & 4;
  o.has_factory = flags & 8;
  // Anti-rollback: per slot, an app new enough for the eFuse, an older one, or no readable descriptor.
  o.efuse_secure_version = 2;
  for (size_t s = 0; s < o.slot_secure_version.size(); ++s) {
    if ((secure_ok_mask >> s) & 1)
      o.slot_secure_version[s] = 2 + (s % 3);
    else if (s % 2 == 0)
      o.slot_secure_version[s] = 1;
  }
  BootSelection sel = select_boot_slot(*d, count, o);
  if (!o.has_otadata) {
    FUZZ_CHECK(sel.entry_index == -1 && !sel.ota_slot && sel.writes.empty(), "otadata used without one");
  }
  if (o.anti_rollback && sel.entry_index >= 0) {
    const auto& v = o.slot_secure_version[*sel.ota_slot];
    FUZZ_CHECK(v && *v >= o.efuse_secure_version, "anti-rollback chose slot %u with an old app",
               *sel.ota_slot);
  }
  FUZZ_CHECK(sel.entry_index >= -1 && sel.entry_index <= 1, "entry_index %d", sel.entry_index);
  if (sel.entry_index >= 0) {
    FUZZ_CHECK(sel.ota_slot && *sel.ota_slot < count, "an active entry gave no slot (or one past %zu)",
               count);
  }
  if (sel.ota_slot && count > 0) FUZZ_CHECK(*sel.ota_slot < count, "slot %u of %zu", *sel.ota_slot, count);
  FUZZ_CHECK(sel.writes.size() <= 3, "%zu writes", sel.writes.size());
  for (const auto& w : sel.writes) {
    FUZZ_CHECK(w.sector == 0 || w.sector == 1, "write to sector %d", w.sector);
    Bytes after = apply_otadata_write(image, w);
    FUZZ_CHECK(after.size() == image.size(), "a write changed the partition size");
  }
  if (sel.initial_contents) {
    OtadataWrite w = initial_seq_write(sel.ota_slot.value_or(0));
    if (count > 0)
      FUZZ_CHECK(booted_slot(apply_otadata_write(image, w), count) == sel.ota_slot.value_or(0),
                 "initial contents write boots another slot");
  }

  // esp_ota_set_boot_partition(slot): refused only for a slot that does not exist or a sequence number that
  // has run out; otherwise the bootloader's next choice is that slot.
  for (bool rollback : {false, true}) {
    auto plan = plan_set_boot_partition(*d, slot, count, rollback);
    if (!plan) {
      FUZZ_CHECK(slot >= count || plan.error().code() == ErrorCode::out_of_range, "refused: %s",
                 plan.error().message().c_str());
      continue;
    }
    FUZZ_CHECK(slot < count, "slot %u of %zu accepted", slot, count);
    // ESP-IDF's rule (spec otadata-and-boot.md §2: the smallest ((slot+1) % n) + i*n >= the active seq) gives
    // seq 0 when the active seq is 0 and slot = n-1; the bootloader maps seq 0 to (2^32-1) % n, which is that
    // slot only when n divides 2^32. ota32 writes what ESP-IDF writes; the promise is for the other seqs.
    if (plan->entry.ota_seq == 0) continue;
    long booted = booted_slot(apply_otadata_write(image, *plan), count);
    FUZZ_CHECK(booted == static_cast<long>(slot),
               "set_boot_partition(%u) of %zu: the bootloader picks %ld "
               "(seq %u written to sector %d)",
               slot, count, booted, plan->entry.ota_seq, plan->sector);
  }
  // otatool switch_ota_partition keeps the entry's state: the promise holds when the written entry is valid.
  if (auto plan = plan_otatool_switch(*d, slot, count)) {
    Bytes after = apply_otatool_write(image, *plan);
    auto d2 = parse_otadata(after);
    FUZZ_CHECK(d2 && d2->entries[static_cast<size_t>(plan->sector)] == plan->entry, "otatool write differs");
    if (ota_entry_valid(plan->entry) && plan->entry.ota_seq != 0) {  // seq 0: see set_boot_partition above
      long booted = booted_slot(after, count);
      FUZZ_CHECK(booted == static_cast<long>(slot),
                 "otatool switch to %u of %zu: the bootloader picks %ld (seq %u)", slot, count, booted,
                 plan->entry.ota_seq);
    }
  } else {
    FUZZ_CHECK(slot >= count || plan.error().code() == ErrorCode::out_of_range, "otatool refused: %s",
               plan.error().message().c_str());
  }
  return 0;
}
