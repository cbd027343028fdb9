#include "flash/cow_flash.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace ota32 {

CowFlash::CowFlash(SectorStore& store, std::vector<SectorStore::Id> sectors, std::string name)
    : store_(store), table_(std::move(sectors)), name_(std::move(name)) {
  store_.retain(table_);
}

CowFlash::~CowFlash() { store_.release(table_); }

std::vector<SectorStore::Id> CowFlash::intern_snapshot(SectorStore& store, ByteView contents) {
  assert(contents.size() % kFlashSectorSize == 0);
  std::vector<SectorStore::Id> ids;
  ids.reserve(contents.size() / kFlashSectorSize);
  for (size_t off = 0; off < contents.size(); off += kFlashSectorSize)
    ids.push_back(store.intern(contents.subspan(off, kFlashSectorSize)));
  return ids;
}

CowFlash::Dirty* CowFlash::find_dirty(uint32_t sector) {
  for (auto& d : dirty_)
    if (d.sector == sector) return &d;
  return nullptr;
}

void CowFlash::flush_one(size_t i) {
  Dirty& d = dirty_[i];
  SectorStore::Id id = store_.intern(*d.data);
  store_.release(table_[d.sector]);
  table_[d.sector] = id;
  dirty_.erase(dirty_.begin() + static_cast<long>(i));
}

void CowFlash::flush() {
  while (!dirty_.empty()) flush_one(dirty_.size() - 1);
}

SectorStore::Sector& CowFlash::writable(uint32_t sector) {
  if (Dirty* d = find_dirty(sector)) return *d->data;
  if (dirty_.size() >= kMaxDirty) flush_one(0);
  auto buf = std::make_unique<SectorStore::Sector>(store_.get(table_[sector]));
  dirty_.push_back({sector, std::move(buf)});
  return *dirty_.back().data;
}

Result<void> CowFlash::read(uint32_t addr, std::span<uint8_t> out) {
  OTA32_TRY(check_flash_range(name_, size(), addr, out.size(), "read"));
  size_t done = 0;
  while (done < out.size()) {
    uint32_t a = addr + static_cast<uint32_t>(done);
    uint32_t sector = a / kFlashSectorSize, off = a % kFlashSectorSize;
    size_t n = std::min<size_t>(out.size() - done, kFlashSectorSize - off);
    Dirty* d = find_dirty(sector);
    const uint8_t* src = d ? d->data->data() : store_.get(table_[sector]).data();
    std::memcpy(out.data() + done, src + off, n);
    done += n;
  }
  return {};
}

Result<void> CowFlash::program(uint32_t addr, ByteView data) {
  OTA32_TRY(check_flash_range(name_, size(), addr, data.size(), "program"));
  // Checked over the whole range first: a refused program changes nothing (as NorFlash).
  std::array<uint8_t, kFlashSectorSize> cells;
  for (size_t done = 0; done < data.size();) {
    uint32_t a = addr + static_cast<uint32_t>(done);
    size_t n = std::min<size_t>(data.size() - done, kFlashSectorSize - a % kFlashSectorSize);
    OTA32_TRY(read(a, std::span<uint8_t>(cells.data(), n)));
    OTA32_TRY(check_program_bits(name_, a, ByteView(cells.data(), n), data.subspan(done, n), rule_));
    done += n;
  }
  for (size_t done = 0; done < data.size();) {
    uint32_t a = addr + static_cast<uint32_t>(done);
    uint32_t off = a % kFlashSectorSize;
    size_t n = std::min<size_t>(data.size() - done, kFlashSectorSize - off);
    bool all_ff =
        std::all_of(data.begin() + static_cast<long>(done), data.begin() + static_cast<long>(done + n),
                    [](uint8_t b) { return b == 0xFF; });
    if (!all_ff) {  // FF programs nothing: no copy of a shared sector for it
      uint8_t* cells_w = writable(a / kFlashSectorSize).data() + off;
      for (size_t i = 0; i < n; ++i) cells_w[i] &= data[done + i];
    }
    done += n;
  }
  return {};
}

Result<void> CowFlash::erase(uint32_t addr, uint32_t len) {
  OTA32_TRY(check_erase_alignment(name_, addr, len));
  OTA32_TRY(check_flash_range(name_, size(), addr, len, "erase"));
  const SectorStore::Id erased = store_.erased();
  const uint32_t first = addr / kFlashSectorSize, count = len / kFlashSectorSize;
  for (uint32_t s = first; s < first + count; ++s) {
    for (size_t i = 0; i < dirty_.size(); ++i) {
      if (dirty_[i].sector == s) {
        dirty_.erase(dirty_.begin() + static_cast<long>(i));
        break;
      }
    }
    if (table_[s] != erased) {
      store_.release(table_[s]);
      std::array<SectorStore::Id, 1> one{erased};
      store_.retain(one);
      table_[s] = erased;
    }
  }
  return {};
}

size_t CowFlash::private_bytes() const {
  return table_.capacity() * sizeof(SectorStore::Id) + dirty_.size() * sizeof(SectorStore::Sector) +
         dirty_.capacity() * sizeof(Dirty) + name_.capacity();
}

Bytes CowFlash::contents() {
  Bytes b(size());
  (void)read(0, b);
  return b;
}

}  // namespace ota32
