// The fleet simulator's scheduler: N devices woken by a bounded pool of worker threads (never a thread per
// device). Each device is woken at its own times (first wakes spread over one poll interval, then one poll
// interval apart with jitter, both from the seed); a wake runs to its end on one worker. The run ends when
// every device is idle (its last `idle_polls` wakes found nothing to do), when `duration` has passed, or
// when every device has had `max_wakes` wakes: every loop is bounded in count and in time.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>

namespace ota32::fleet {

struct PoolOptions {
  unsigned workers = 16;
  std::chrono::milliseconds poll_interval{5000};
  std::chrono::milliseconds duration{600000};
  bool until_idle = true;
  unsigned idle_polls = 1;
  uint64_t max_wakes = 10000;  // per device
  uint64_t seed = 1;
  std::chrono::milliseconds tick_every{250};  // how often `tick` runs (progress)
};

// What one wake of a device found.
enum class WakeOutcome {
  busy,      // it did something (checked and updated, failed, rolled back): not idle
  idle,      // nothing to do (no update, or only one it will not install)
  finished,  // it can do nothing more (no app boots): never woken again
};

enum class StopReason { idle, duration, max_wakes };
std::string_view to_string(StopReason r);  // "idle", "duration", "max-wakes"

struct PoolResult {
  StopReason reason = StopReason::idle;
  std::chrono::milliseconds elapsed{0};
  uint64_t wakes = 0;
};

// Runs until a stop condition; `wake(index)` is called from the workers (never twice at once for one
// index), `tick()` from the calling thread every tick_every while the workers run.
PoolResult run_pool(uint32_t devices, const PoolOptions& o, const std::function<WakeOutcome(uint32_t)>& wake,
                    const std::function<void()>& tick = {});

// Device i's first wake, as an offset into the first poll interval (deterministic in seed and i).
std::chrono::milliseconds first_wake_offset(uint64_t seed, uint32_t index,
                                            std::chrono::milliseconds interval);

}  // namespace ota32::fleet
