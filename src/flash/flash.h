// The Flash interface: the one door to storage. Everything that writes flash (esptool-style flashing, the
// OTA agent, otadata updates, the bootloader) goes through it, so that FaultFlash can cut power at any
// operation and a sweep can replay every cut (design.md "Flash and faults").
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "core/bytes.h"
#include "core/result.h"

namespace ota32 {

constexpr uint32_t kFlashSectorSize = 4096;  // SPI_FLASH_SEC_SIZE: smallest erase unit used by ESP-IDF
constexpr uint32_t kFlashPageSize = 256;     // NOR page-program unit
constexpr uint32_t kFlashBlockSize = 65536;  // 64 KiB block erase, used when aligned

// SPI NOR semantics (spec/flash-semantics.md §1):
// - read: any address and length inside the chip.
// - program: result = old AND data (bits only go 1 -> 0). Implementations may split at page boundaries;
//   an out-of-range address is ErrorCode::out_of_range.
// - erase: addr and len multiples of 4 KiB, inside the chip; afterwards every byte reads 0xFF.
// After a (simulated) power cut every call fails with ErrorCode::power_lost.
class Flash {
 public:
  virtual ~Flash() = default;

  virtual uint32_t size() const = 0;
  virtual Result<void> read(uint32_t addr, std::span<uint8_t> out) = 0;
  virtual Result<void> program(uint32_t addr, ByteView data) = 0;
  virtual Result<void> erase(uint32_t addr, uint32_t len) = 0;
};

// A partition's window over a Flash (MCUboot's flash_area): offsets are relative to the region start, and
// anything outside [0, size) is refused with ErrorCode::out_of_range naming the region. Nobody above
// src/flash adds absolute addresses by hand.
class Region {
 public:
  Region(Flash& flash, uint32_t offset, uint32_t size, std::string name)
      : flash_(&flash), offset_(offset), size_(size), name_(std::move(name)) {}

  uint32_t offset() const { return offset_; }  // absolute start, for logs ("at offset 0x110000")
  uint32_t size() const { return size_; }
  const std::string& name() const { return name_; }
  Flash& flash() const { return *flash_; }

  Result<void> read(uint32_t off, std::span<uint8_t> out) const;
  Result<Bytes> read(uint32_t off, uint32_t len) const;
  Result<void> program(uint32_t off, ByteView data) const;
  Result<void> erase(uint32_t off, uint32_t len) const;

 private:
  Result<void> check(uint32_t off, uint64_t len, const char* op) const;

  Flash* flash_;
  uint32_t offset_;
  uint32_t size_;
  std::string name_;
};

}  // namespace ota32
