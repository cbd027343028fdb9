// FaultFlash: a NorFlash wrapper that logs every operation and can cut power at mutating operation N,
// leaving the realistic torn result of spec/flash-semantics.md §1.1 (design.md "Flash and faults").
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "flash/nor_flash.h"

namespace ota32 {

struct FlashOp {
  // efuse: a burn of the chip's eFuses (one-time-programmable bits outside the flash, on the same supply):
  // addr holds the value burnt, len 0.
  enum class Kind { read, program, erase, efuse };
  Kind kind;
  uint32_t addr;
  uint32_t len;
  bool torn = false;  // the power cut hit this operation

  bool operator==(const FlashOp&) const = default;
};

// "program 0x0000d000 +0x20", "erase 0x00110000 +0x1000 (torn)".
std::string to_string(const FlashOp& op);

// Mutating operations (program, erase) are numbered from 0; reads are logged (when enabled) but not
// numbered, since a cut during a read leaves nothing behind. With cut_power_at(n), operation n is left
// partly done and it and every later call (reads too) fail with ErrorCode::power_lost:
// - program: the data's pages (256 B, address order) form a completed prefix, then one page where only a
//   random subset of the bits to be cleared are cleared (new = old AND (data OR R)), the rest untouched;
// - erase: a completed prefix of 4 KiB sectors, one sector where a random subset of bits went 0 -> 1
//   (new = old OR R), the rest untouched.
// The prefix length and the masks come from a PRNG seeded with (seed, n): the same seed and n always give
// the same torn flash. TornMode picks the two extreme outcomes instead (power sweeps run all three).
enum class TornMode {
  random,       // a completed prefix of units, one unit with a random mask, the rest untouched
  not_started,  // the cells are untouched: the cut came before the chip began the command
  completed,    // the whole operation reached the cells: the cut came before the call returned
};
std::string_view to_string(TornMode m);  // "random", "not-started", "completed"
Result<TornMode> parse_torn_mode(std::string_view text);

class FaultFlash : public Flash {
 public:
  explicit FaultFlash(NorFlash& inner, uint64_t seed = 0) : inner_(inner), seed_(seed) {}

  uint32_t size() const override { return inner_.size(); }
  Result<void> read(uint32_t addr, std::span<uint8_t> out) override;
  Result<void> program(uint32_t addr, ByteView data) override;
  Result<void> erase(uint32_t addr, uint32_t len) override;

  // An eFuse burn (esp_efuse_write_field_*): numbered with the mutating flash operations, so that a sweep
  // cuts power there too. `burn` applies it; it runs unless the cut hits this operation and the burn did not
  // reach the fuses (not-started; random: a coin from the seed). The model burns the field's new bits
  // together: a cut leaves all or none of them, never a subset. power_lost when the cut hit.
  Result<void> burn_efuse(uint32_t value, const std::function<Result<void>()>& burn);

  void cut_power_at(uint64_t op) { cut_at_ = op; }
  void set_torn_mode(TornMode m) { torn_mode_ = m; }
  void set_seed(uint64_t seed) { seed_ = seed; }
  // Power comes back: calls work again and no cut is armed; the numbering of operations continues.
  void restore_power() {
    power_lost_ = false;
    cut_at_.reset();
  }
  void log_reads(bool on) { log_reads_ = on; }
  bool power_lost() const { return power_lost_; }
  // Number of mutating operations issued so far (including the torn one).
  uint64_t mutations() const { return mutations_; }
  const std::vector<FlashOp>& log() const { return log_; }

 private:
  Result<void> lost(const char* op, uint32_t addr) const;
  void tear_program(uint32_t addr, ByteView data);
  void tear_erase(uint32_t addr, uint32_t len);

  NorFlash& inner_;
  uint64_t seed_;
  std::optional<uint64_t> cut_at_;
  TornMode torn_mode_ = TornMode::random;
  uint64_t mutations_ = 0;
  bool power_lost_ = false;
  bool log_reads_ = false;
  std::vector<FlashOp> log_;
};

}  // namespace ota32
