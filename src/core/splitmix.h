// splitmix64 (Steele, Lea, Flood 2014): a tiny, fully specified generator. Everything in ota32 that needs
// "random" numbers which must be the same on every platform, library version and replay uses it: synthetic
// image contents, FaultFlash's torn bits, the fuzz replay driver's mutations, the agent's reconnect jitter.
// (std::mt19937's distributions differ between standard libraries.)
#pragma once

#include <cstdint>

namespace ota32 {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // In [0, n); 0 when n is 0.
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }
  uint8_t byte() { return static_cast<uint8_t>(next()); }

 private:
  uint64_t state_;
};

}  // namespace ota32
