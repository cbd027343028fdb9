// NOR flash over a byte array: the rules of spec/flash-semantics.md §1 enforced in one place, shared by
// MemFlash (a vector, for tests and power-cut sweeps) and FileFlash (a flash image file, for devices).
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include "flash/flash.h"

namespace ota32 {

// What program() does when the data asks for a 1 where the cell holds a 0.
enum class ProgramRule {
  // refuse with invalid_argument (a missing erase is a bug in the caller); 0xFF bytes program nothing and
  // are always accepted, as the driver's FF padding of a page-program transaction is (default)
  strict,
  and_bits,  // do what the chip does: result = old AND data, no error
};

// The NOR rules as functions over cell contents, shared by NorFlash (contiguous cells) and CowFlash (cells
// in shared sectors), so that each rule exists once. `name` names the flash in messages.
// Range: [addr, addr+len) inside a chip of `size` bytes (out_of_range).
Result<void> check_flash_range(std::string_view name, uint32_t size, uint32_t addr, uint64_t len,
                               const char* op);
// Program of `data` over `cells` (the current contents at addr, same length): under ProgramRule::strict a
// 0->1 change is invalid_argument naming the absolute address; FF bytes always pass.
Result<void> check_program_bits(std::string_view name, uint32_t addr, ByteView cells, ByteView data,
                                ProgramRule rule);
// Erase alignment: addr and len multiples of 4 KiB (invalid_argument); the range is checked separately.
Result<void> check_erase_alignment(std::string_view name, uint32_t addr, uint32_t len);

class NorFlash : public Flash {
 public:
  uint32_t size() const override { return static_cast<uint32_t>(cells_.size()); }
  Result<void> read(uint32_t addr, std::span<uint8_t> out) override;
  Result<void> program(uint32_t addr, ByteView data) override;
  Result<void> erase(uint32_t addr, uint32_t len) override;

  // The checks of program() / erase() without the effect (FaultFlash refuses what the chip would refuse
  // before it tears anything).
  Result<void> check_program(uint32_t addr, ByteView data) const;
  Result<void> check_erase(uint32_t addr, uint32_t len) const;

  void set_program_rule(ProgramRule r) { rule_ = r; }
  const std::string& name() const { return name_; }
  // The current cell states (no copy).
  ByteView contents() const { return cells_; }
  // Sets cells to arbitrary values, ignoring the NOR rules: only for fault injection (a half-erased
  // sector has bits that no program/erase sequence produces) and for restoring snapshots.
  void poke(uint32_t addr, ByteView data);

 protected:
  NorFlash(std::string name) : name_(std::move(name)) {}
  void attach(std::span<uint8_t> cells) { cells_ = cells; }

 private:
  std::string name_;
  std::span<uint8_t> cells_;
  ProgramRule rule_ = ProgramRule::strict;
};

// Flash in memory; starts erased (all 0xFF) or from given contents.
class MemFlash : public NorFlash {
 public:
  explicit MemFlash(uint32_t size, std::string name = "flash");
  explicit MemFlash(Bytes contents, std::string name = "flash");
  MemFlash(const MemFlash&) = delete;
  MemFlash& operator=(const MemFlash&) = delete;

 private:
  Bytes storage_;
};

// A flash image file mapped into memory (MAP_SHARED): every program/erase lands in the file, so a device
// directory's flash.bin is always the chip's current state. Its size is the chip's size.
class FileFlash : public NorFlash {
 public:
  ~FileFlash() override;
  FileFlash(const FileFlash&) = delete;
  FileFlash& operator=(const FileFlash&) = delete;

  // Opens an existing image: not_found / io_error, or invalid_argument when the size is not a non-zero
  // multiple of 4 KiB (at most 256 MiB).
  static Result<std::unique_ptr<FileFlash>> open(const std::filesystem::path& path);
  // Writes a factory-fresh image (all 0xFF) of `size` bytes atomically.
  static Result<void> create(const std::filesystem::path& path, uint32_t size);
  // Flushes the mapping to the file (msync).
  Result<void> sync();

 private:
  FileFlash(std::string name, uint8_t* map, size_t len);
  uint8_t* map_;
  size_t len_;
};

// Checks a flash size for FileFlash / device creation: a non-zero multiple of 4 KiB, at most 256 MiB.
Result<void> check_flash_size(uint64_t size, std::string_view what);

}  // namespace ota32
