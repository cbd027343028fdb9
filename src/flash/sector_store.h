// SectorStore: 4 KiB flash sectors kept once by content, shared by many flashes (CowFlash). A fleet of
// simulated devices that all start from one snapshot and all download the same firmware holds each distinct
// sector once: 10 000 devices x 1 MiB of identical image cost 1 MiB, not 10 GB. Thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "core/bytes.h"
#include "flash/flash.h"

namespace ota32 {

class SectorStore {
 public:
  using Id = uint32_t;
  using Sector = std::array<uint8_t, kFlashSectorSize>;

  SectorStore();
  SectorStore(const SectorStore&) = delete;
  SectorStore& operator=(const SectorStore&) = delete;

  // The all-0xFF sector (an erased one); always present, never freed.
  Id erased() const { return 0; }

  // The id of a sector with these contents (kFlashSectorSize bytes), holding one reference for the caller:
  // an existing one when the contents are already stored (compared byte for byte, not only by hash).
  Id intern(ByteView contents);
  // One more reference to each id (a flash copying another's table).
  void retain(std::span<const Id> ids);
  void release(Id id);
  void release(std::span<const Id> ids);

  // The contents of a sector the caller holds a reference to; stable while that reference is held.
  const Sector& get(Id id) const { return chunks_[id / kChunk]->sectors[id % kChunk].data; }

  struct Stats {
    uint64_t unique = 0;   // distinct sectors stored (the erased one included)
    uint64_t interns = 0;  // intern() calls
    uint64_t hits = 0;     // intern() calls answered by an existing sector
  };
  Stats stats() const;
  // Bytes of sector contents held (unique x 4 KiB).
  uint64_t bytes() const { return stats().unique * kFlashSectorSize; }

 private:
  static constexpr uint32_t kChunk = 1024;       // sectors per allocation (4 MiB, touched as used)
  static constexpr uint32_t kMaxChunks = 65536;  // 256 GiB of distinct sectors: never reached
  // No initialisers: a new chunk is left untouched (not resident) until its slots are handed out.
  struct Slot {
    Sector data;
    uint64_t hash;
    uint32_t refs;
  };
  struct Chunk {
    std::array<Slot, kChunk> sectors;
  };
  Slot& slot(Id id) { return chunks_[id / kChunk]->sectors[id % kChunk]; }
  void release_locked(Id id);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Chunk>> chunks_;  // sized kMaxChunks up front: never reallocated
  uint32_t next_ = 0;                           // ids below this have been handed out
  std::vector<Id> free_;
  std::unordered_multimap<uint64_t, Id> by_hash_;
  Stats stats_;
};

}  // namespace ota32
