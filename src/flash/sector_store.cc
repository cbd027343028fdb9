#include "flash/sector_store.h"

#include <cassert>
#include <cstring>

namespace ota32 {
namespace {

// A fast 64-bit hash of a sector (8 bytes per step, multiply-xorshift mixing). Only the bucket depends on
// it: equal hashes are confirmed with memcmp, so a collision costs a compare, never a wrong sector.
uint64_t hash_sector(ByteView b) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ b.size();
  for (size_t i = 0; i + 8 <= b.size(); i += 8) {
    uint64_t w;
    std::memcpy(&w, b.data() + i, 8);
    h = (h ^ w) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 29;
  }
  h = (h ^ (h >> 32)) * 0x94D049BB133111EBull;
  return h ^ (h >> 31);
}

}  // namespace

SectorStore::SectorStore() : chunks_(kMaxChunks) {
  Sector erased;
  erased.fill(0xFF);
  Id id = intern(erased);
  assert(id == 0);
  (void)id;
}

SectorStore::Id SectorStore::intern(ByteView contents) {
  assert(contents.size() == kFlashSectorSize);
  const uint64_t h = hash_sector(contents);
  std::lock_guard lock(mu_);
  ++stats_.interns;
  auto [lo, hi] = by_hash_.equal_range(h);
  for (auto it = lo; it != hi; ++it) {
    Slot& s = slot(it->second);
    if (std::memcmp(s.data.data(), contents.data(), kFlashSectorSize) == 0) {
      ++s.refs;
      ++stats_.hits;
      return it->second;
    }
  }
  Id id;
  if (!free_.empty()) {
    id = free_.back();
    free_.pop_back();
  } else {
    id = next_++;
    assert(id / kChunk < kMaxChunks);
    if (!chunks_[id / kChunk]) chunks_[id / kChunk].reset(new Chunk);  // default-initialised: untouched
  }
  Slot& s = slot(id);
  std::memcpy(s.data.data(), contents.data(), kFlashSectorSize);
  s.hash = h;
  s.refs = 1;
  by_hash_.emplace(h, id);
  ++stats_.unique;
  return id;
}

void SectorStore::retain(std::span<const Id> ids) {
  std::lock_guard lock(mu_);
  for (Id id : ids) ++slot(id).refs;
}

void SectorStore::release_locked(Id id) {
  Slot& s = slot(id);
  assert(s.refs > 0);
  if (--s.refs > 0 || id == erased()) {
    if (s.refs == 0) s.refs = 1;  // the erased sector stays
    return;
  }
  auto [lo, hi] = by_hash_.equal_range(s.hash);
  for (auto it = lo; it != hi; ++it) {
    if (it->second == id) {
      by_hash_.erase(it);
      break;
    }
  }
  free_.push_back(id);
  --stats_.unique;
}

void SectorStore::release(Id id) {
  std::lock_guard lock(mu_);
  release_locked(id);
}

void SectorStore::release(std::span<const Id> ids) {
  std::lock_guard lock(mu_);
  for (Id id : ids) release_locked(id);
}

SectorStore::Stats SectorStore::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

}  // namespace ota32
