#include "flash/flash.h"

#include <fmt/format.h>

namespace ota32 {

Result<void> Region::check(uint32_t off, uint64_t len, const char* op) const {
  if (off > size_ || len > size_ - off) {
    return Error(
        ErrorCode::out_of_range,
        fmt::format("{}: {} of {} bytes at offset {:#x} is outside the region ({:#x} bytes at {:#x})", name_,
                    op, len, off, size_, offset_));
  }
  return {};
}

Result<void> Region::read(uint32_t off, std::span<uint8_t> out) const {
  OTA32_TRY(check(off, out.size(), "read"));
  return flash_->read(offset_ + off, out);
}

Result<Bytes> Region::read(uint32_t off, uint32_t len) const {
  OTA32_TRY(check(off, len, "read"));
  Bytes b(len);
  OTA32_TRY(flash_->read(offset_ + off, b));
  return b;
}

Result<void> Region::program(uint32_t off, ByteView data) const {
  OTA32_TRY(check(off, data.size(), "program"));
  return flash_->program(offset_ + off, data);
}

Result<void> Region::erase(uint32_t off, uint32_t len) const {
  OTA32_TRY(check(off, len, "erase"));
  return flash_->erase(offset_ + off, len);
}

}  // namespace ota32
