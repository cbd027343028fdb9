#include "flash/budget_flash.h"

#include <fmt/format.h>

#include <algorithm>

namespace ota32 {

Error BudgetFlash::lost(const char* op, uint32_t addr) const {
  return Error(ErrorCode::power_lost, fmt::format("flash: power lost ({} at {:#010x})", op, addr));
}

Result<void> BudgetFlash::read(uint32_t addr, std::span<uint8_t> out) {
  if (lost_) return lost("read", addr);
  return inner_.read(addr, out);
}

Result<void> BudgetFlash::erase(uint32_t addr, uint32_t len) {
  if (lost_) return lost("erase", addr);
  return inner_.erase(addr, len);
}

Result<void> BudgetFlash::program(uint32_t addr, ByteView data) {
  if (lost_) return lost("program", addr);
  const uint64_t lo = std::max<uint64_t>(addr, begin_);
  const uint64_t hi = std::min<uint64_t>(uint64_t{addr} + data.size(), end_);
  const uint64_t inside = hi > lo ? hi - lo : 0;
  if (inside <= left_) {
    left_ -= inside;
    return inner_.program(addr, data);
  }
  // The bytes up to the budget reach the cells, then the power goes.
  const size_t keep = static_cast<size_t>(lo - addr + left_);
  left_ = 0;
  if (keep > 0) OTA32_TRY(inner_.program(addr, data.first(keep)));
  lost_ = true;
  return lost("program", static_cast<uint32_t>(addr + keep));
}

}  // namespace ota32
