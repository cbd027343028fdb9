// CowFlash: a Flash whose sectors live in a shared SectorStore, copy-on-write. A fleet simulator's device
// starts from a snapshot's sector table (every sector shared with every other device); an erase points the
// sector at the store's erased sector; a program copies the sector into a private buffer, and the buffer
// goes back into the store (deduplicated) once the device moves on to other sectors. The NOR rules are
// NorFlash's (nor_flash.h check_*): a CowFlash and a MemFlash given the same calls answer and hold the same.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "flash/nor_flash.h"
#include "flash/sector_store.h"

namespace ota32 {

class CowFlash : public Flash {
 public:
  // A flash of sectors.size() sectors, each holding a reference taken here (the caller keeps its own).
  CowFlash(SectorStore& store, std::vector<SectorStore::Id> sectors, std::string name = "flash");
  ~CowFlash() override;
  CowFlash(const CowFlash&) = delete;
  CowFlash& operator=(const CowFlash&) = delete;

  // The sector table of `contents` (a multiple of 4 KiB), one reference per entry for the caller (release
  // it with SectorStore::release when no flash needs the snapshot any more).
  static std::vector<SectorStore::Id> intern_snapshot(SectorStore& store, ByteView contents);

  uint32_t size() const override { return static_cast<uint32_t>(table_.size()) * kFlashSectorSize; }
  Result<void> read(uint32_t addr, std::span<uint8_t> out) override;
  Result<void> program(uint32_t addr, ByteView data) override;
  Result<void> erase(uint32_t addr, uint32_t len) override;

  void set_program_rule(ProgramRule r) { rule_ = r; }
  const std::string& name() const { return name_; }

  // Puts the private (written) sectors back into the store. Contents do not change; a device calls it at
  // reboot and when it goes idle, so that idle devices hold no private buffer.
  void flush();
  // Bytes this flash holds on its own: the sector table and the private buffers (not the shared sectors).
  size_t private_bytes() const;
  // A copy of the whole contents (tests).
  Bytes contents();

 private:
  static constexpr size_t kMaxDirty = 2;  // the writer streams forward: the current sector and the last
  struct Dirty {
    uint32_t sector;
    std::unique_ptr<SectorStore::Sector> data;
  };
  Dirty* find_dirty(uint32_t sector);
  // The sector as a private buffer (copied from the store on first write; the oldest buffer flushed).
  SectorStore::Sector& writable(uint32_t sector);
  void flush_one(size_t i);

  SectorStore& store_;
  std::vector<SectorStore::Id> table_;  // for dirty sectors: the id they were copied from (still held)
  std::vector<Dirty> dirty_;            // at most kMaxDirty, oldest first
  std::string name_;
  ProgramRule rule_ = ProgramRule::strict;
};

}  // namespace ota32
