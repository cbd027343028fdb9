// BudgetFlash: a Flash that loses power once a number of bytes have been programmed inside a window (an
// OTA slot): the program that crosses the budget programs its share up to it, then it and every later call
// fail with ErrorCode::power_lost. `ota32 device ota --stop-after N` and the agent's tests cut a download
// after N image bytes this way, so the agent itself has no "stop here" hook: like FaultFlash (which cuts at
// operation N), the power cut lives behind the Flash seam.
#pragma once

#include <cstdint>

#include "flash/flash.h"

namespace ota32 {

class BudgetFlash final : public Flash {
 public:
  // `budget` bytes may be programmed inside [begin, begin + len); programs elsewhere pass through.
  BudgetFlash(Flash& inner, uint32_t begin, uint32_t len, uint64_t budget)
      : inner_(inner), begin_(begin), end_(uint64_t{begin} + len), left_(budget) {}

  uint32_t size() const override { return inner_.size(); }
  Result<void> read(uint32_t addr, std::span<uint8_t> out) override;
  Result<void> program(uint32_t addr, ByteView data) override;
  Result<void> erase(uint32_t addr, uint32_t len) override;

  bool power_lost() const { return lost_; }

 private:
  Error lost(const char* op, uint32_t addr) const;

  Flash& inner_;
  uint64_t begin_, end_;
  uint64_t left_;
  bool lost_ = false;
};

}  // namespace ota32
