#include "fleet/pool.h"

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

#include "core/splitmix.h"

namespace ota32::fleet {

using Clock = std::chrono::steady_clock;

std::string_view to_string(StopReason r) {
  switch (r) {
    case StopReason::idle:
      return "idle";
    case StopReason::duration:
      return "duration";
    case StopReason::max_wakes:
      return "max-wakes";
  }
  return "idle";
}

std::chrono::milliseconds first_wake_offset(uint64_t seed, uint32_t index,
                                            std::chrono::milliseconds interval) {
  if (interval.count() <= 0) return std::chrono::milliseconds(0);
  SplitMix64 r(seed * 0x9E3779B97F4A7C15ull + index);
  return std::chrono::milliseconds(r.below(static_cast<uint64_t>(interval.count())));
}

namespace {

struct Due {
  Clock::time_point at;
  uint32_t index;
  bool operator>(const Due& o) const { return at > o.at || (at == o.at && index > o.index); }
};

}  // namespace

PoolResult run_pool(uint32_t devices, const PoolOptions& o, const std::function<WakeOutcome(uint32_t)>& wake,
                    const std::function<void()>& tick) {
  const Clock::time_point start = Clock::now();
  const Clock::time_point deadline = start + o.duration;
  std::mutex mu;
  std::condition_variable cv;
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> queue;
  std::vector<uint32_t> idle_run(devices, 0);  // consecutive idle wakes
  std::vector<uint64_t> wakes(devices, 0);
  uint32_t settled = 0;    // devices idle for idle_polls wakes, or finished
  uint32_t exhausted = 0;  // devices out of wakes or finished
  uint64_t total_wakes = 0;
  bool stop = false;
  StopReason reason = StopReason::duration;

  for (uint32_t i = 0; i < devices; ++i)
    queue.push({start + first_wake_offset(o.seed, i, o.poll_interval), i});
  if (devices == 0) {
    stop = true;
    reason = StopReason::idle;
  }

  auto worker = [&](unsigned w) {
    SplitMix64 jitter(o.seed ^ (0xA5A5A5A5ull + w));
    std::unique_lock lock(mu);
    while (!stop) {
      if (queue.empty()) {
        cv.wait_until(lock, deadline);
        if (Clock::now() >= deadline) break;
        continue;
      }
      Clock::time_point at = queue.top().at;
      if (at > Clock::now()) {
        cv.wait_until(lock, std::min(at, deadline));
        if (Clock::now() >= deadline) break;
        continue;
      }
      uint32_t i = queue.top().index;
      queue.pop();
      lock.unlock();
      WakeOutcome out = wake(i);
      lock.lock();
      ++total_wakes;
      ++wakes[i];
      const bool was_settled = idle_run[i] >= o.idle_polls;
      if (out == WakeOutcome::finished) {
        if (!was_settled) ++settled;
        idle_run[i] = o.idle_polls;
        ++exhausted;
      } else {
        idle_run[i] = out == WakeOutcome::idle ? idle_run[i] + 1 : 0;
        const bool now_settled = idle_run[i] >= o.idle_polls;
        if (now_settled && !was_settled) ++settled;
        if (!now_settled && was_settled) --settled;
        if (wakes[i] >= o.max_wakes) {
          ++exhausted;
        } else {
          // One poll interval later, spread by +-25 % so that devices do not fall into step.
          auto span = o.poll_interval.count() / 2;
          auto d = o.poll_interval.count() - span / 2 +
                   static_cast<long>(span > 0 ? jitter.below(static_cast<uint64_t>(span) + 1) : 0);
          queue.push({Clock::now() + std::chrono::milliseconds(d), i});
        }
      }
      if (o.until_idle && settled == devices) {
        stop = true;
        reason = StopReason::idle;
      } else if (exhausted == devices) {
        stop = true;
        reason = StopReason::max_wakes;
      }
      if (stop)
        cv.notify_all();
      else
        cv.notify_one();  // the queue's head may be due sooner than the others wait for
    }
    if (!stop) {
      stop = true;
      reason = StopReason::duration;
    }
    cv.notify_all();
  };

  std::vector<std::thread> threads;
  unsigned n = std::max(1u, std::min<unsigned>(o.workers, std::max<uint32_t>(devices, 1)));
  threads.reserve(n);
  for (unsigned w = 0; w < n; ++w) threads.emplace_back(worker, w);
  // The calling thread ticks until the workers stop (each wait bounded by tick_every).
  {
    std::unique_lock lock(mu);
    while (!stop) {
      lock.unlock();
      if (tick) tick();
      lock.lock();
      cv.wait_for(lock, o.tick_every, [&] { return stop; });
      if (!stop && Clock::now() >= deadline) {  // workers busy in long wakes: stop handing out more
        stop = true;
        reason = StopReason::duration;
        cv.notify_all();
      }
    }
  }
  for (auto& t : threads) t.join();
  PoolResult r;
  r.reason = reason;
  r.wakes = total_wakes;
  r.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
  return r;
}

}  // namespace ota32::fleet
