#include "flash/fault_flash.h"

#include <fmt/format.h>

#include <algorithm>

#include "core/splitmix.h"

namespace ota32 {

namespace {

const char* kind_name(FlashOp::Kind k) {
  switch (k) {
    case FlashOp::Kind::read:
      return "read";
    case FlashOp::Kind::program:
      return "program";
    case FlashOp::Kind::erase:
      return "erase";
    case FlashOp::Kind::efuse:
      return "efuse";
  }
  return "?";
}

}  // namespace

std::string_view to_string(TornMode m) {
  switch (m) {
    case TornMode::random:
      return "random";
    case TornMode::not_started:
      return "not-started";
    case TornMode::completed:
      return "completed";
  }
  return "?";
}

Result<TornMode> parse_torn_mode(std::string_view text) {
  for (TornMode m : {TornMode::random, TornMode::not_started, TornMode::completed}) {
    if (text == to_string(m)) return m;
  }
  return Error(ErrorCode::invalid_argument,
               fmt::format("unknown torn mode '{}' (random, not-started, completed)", text));
}

std::string to_string(const FlashOp& op) {
  if (op.kind == FlashOp::Kind::efuse) {
    return fmt::format("efuse burn SECURE_VERSION={}{}", op.addr, op.torn ? " (torn)" : "");
  }
  return fmt::format("{} {:#010x} +{:#x}{}", kind_name(op.kind), op.addr, op.len, op.torn ? " (torn)" : "");
}

Result<void> FaultFlash::lost(const char* op, uint32_t addr) const {
  return Error(ErrorCode::power_lost, fmt::format("{}: power lost ({} at {:#010x}, mutating operation {})",
                                                  inner_.name(), op, addr, cut_at_.value_or(0)));
}

Result<void> FaultFlash::read(uint32_t addr, std::span<uint8_t> out) {
  if (power_lost_) return lost("read", addr);
  if (log_reads_) log_.push_back({FlashOp::Kind::read, addr, static_cast<uint32_t>(out.size())});
  return inner_.read(addr, out);
}

Result<void> FaultFlash::program(uint32_t addr, ByteView data) {
  if (power_lost_) return lost("program", addr);
  const uint64_t n = mutations_++;
  FlashOp op{FlashOp::Kind::program, addr, static_cast<uint32_t>(data.size())};
  if (cut_at_ && *cut_at_ == n) {
    OTA32_TRY(inner_.check_program(addr, data));  // what the flash refuses is refused, not torn
    op.torn = true;
    log_.push_back(op);
    if (torn_mode_ == TornMode::completed) (void)inner_.program(addr, data);
    if (torn_mode_ == TornMode::random) tear_program(addr, data);
    power_lost_ = true;
    return lost("program", addr);
  }
  log_.push_back(op);
  return inner_.program(addr, data);
}

Result<void> FaultFlash::erase(uint32_t addr, uint32_t len) {
  if (power_lost_) return lost("erase", addr);
  const uint64_t n = mutations_++;
  FlashOp op{FlashOp::Kind::erase, addr, len};
  if (cut_at_ && *cut_at_ == n) {
    OTA32_TRY(inner_.check_erase(addr, len));
    op.torn = true;
    log_.push_back(op);
    if (torn_mode_ == TornMode::completed) (void)inner_.erase(addr, len);
    if (torn_mode_ == TornMode::random) tear_erase(addr, len);
    power_lost_ = true;
    return lost("erase", addr);
  }
  log_.push_back(op);
  return inner_.erase(addr, len);
}

Result<void> FaultFlash::burn_efuse(uint32_t value, const std::function<Result<void>()>& burn) {
  if (power_lost_) return lost("efuse burn", value);
  const uint64_t n = mutations_++;
  FlashOp op{FlashOp::Kind::efuse, value, 0};
  if (cut_at_ && *cut_at_ == n) {
    op.torn = true;
    log_.push_back(op);
    bool reached = torn_mode_ == TornMode::completed;
    if (torn_mode_ == TornMode::random) reached = SplitMix64(seed_ ^ (n * 0x2545F4914F6CDD1Dull)).next() & 1;
    if (reached) OTA32_TRY(burn());
    power_lost_ = true;
    return lost("efuse burn", value);
  }
  log_.push_back(op);
  return burn();
}

void FaultFlash::tear_program(uint32_t addr, ByteView data) {
  SplitMix64 rng(seed_ ^ (*cut_at_ * 0x2545F4914F6CDD1Dull));
  // Units = the pieces of the data that fall into each 256-byte page, in address order.
  std::vector<std::pair<uint32_t, uint32_t>> units;  // (offset in data, length)
  for (uint32_t off = 0; off < data.size();) {
    uint32_t page_left = kFlashPageSize - (addr + off) % kFlashPageSize;
    uint32_t n = std::min<uint32_t>(page_left, static_cast<uint32_t>(data.size()) - off);
    units.emplace_back(off, n);
    off += n;
  }
  const size_t done = rng.below(units.size() + 1);  // == size: every page written, cut before the ack
  for (size_t u = 0; u < units.size() && u <= done; ++u) {
    auto [off, n] = units[u];
    Bytes cells(n);
    (void)inner_.read(addr + off, cells);
    for (uint32_t i = 0; i < n; ++i) {
      uint8_t r = u < done ? 0x00 : rng.byte();  // R = 0: completed
      cells[i] &= static_cast<uint8_t>(data[off + i] | r);
    }
    inner_.poke(addr + off, cells);
  }
}

void FaultFlash::tear_erase(uint32_t addr, uint32_t len) {
  SplitMix64 rng(seed_ ^ (*cut_at_ * 0x2545F4914F6CDD1Dull) ^ 0xE5A5E);
  const uint32_t sectors = len / kFlashSectorSize;
  const uint32_t done = static_cast<uint32_t>(rng.below(sectors + 1));
  for (uint32_t s = 0; s < sectors && s <= done; ++s) {
    const uint32_t at = addr + s * kFlashSectorSize;
    Bytes cells(kFlashSectorSize);
    (void)inner_.read(at, cells);
    for (auto& c : cells) c |= s < done ? 0xFF : rng.byte();  // R = all ones: completed
    inner_.poke(at, cells);
  }
}

}  // namespace ota32
