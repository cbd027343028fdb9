// The fleet's scheduler and seeded choices, without a server: a fake wake counts what the pool does.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "fleet/fleet.h"
#include "fleet/pool.h"

namespace ota32::fleet {
namespace {

using std::chrono::milliseconds;

PoolOptions fast(unsigned workers) {
  PoolOptions o;
  o.workers = workers;
  o.poll_interval = milliseconds(5);
  o.duration = milliseconds(20000);
  o.tick_every = milliseconds(5);
  return o;
}

TEST(FleetPool, StopsWhenEveryDeviceIsIdleAndNeverWakesOneTwiceAtOnce) {
  constexpr uint32_t kDevices = 200;
  std::vector<std::atomic<int>> busy(kDevices), wakes(kDevices);
  std::atomic<int> overlap{0}, threads_seen{0};
  std::mutex mu;
  std::set<std::thread::id> ids;
  auto r = run_pool(kDevices, fast(4), [&](uint32_t i) {
    if (busy[i].fetch_add(1) != 0) ++overlap;
    {
      std::lock_guard lock(mu);
      ids.insert(std::this_thread::get_id());
    }
    int n = ++wakes[i];
    busy[i].fetch_sub(1);
    return n >= 3 ? WakeOutcome::idle : WakeOutcome::busy;  // two busy wakes, then idle
  });
  EXPECT_EQ(r.reason, StopReason::idle);
  EXPECT_EQ(overlap, 0);
  EXPECT_LE(ids.size(), 4u);  // the pool's threads, not one per device
  // Idle devices keep polling (an update may come) until every device is idle.
  uint64_t total = 0;
  for (uint32_t i = 0; i < kDevices; ++i) {
    EXPECT_GE(wakes[i], 3) << "device " << i;
    total += wakes[i];
  }
  EXPECT_EQ(r.wakes, total);
}

TEST(FleetPool, IdlePollsInARowAndABusyWakeStartsTheCountAgain) {
  std::vector<int> seq;
  auto o = fast(1);
  o.idle_polls = 2;
  int n = 0;
  auto r = run_pool(1, o, [&](uint32_t) {
    ++n;
    return n == 2 ? WakeOutcome::busy : WakeOutcome::idle;  // idle, busy, idle, idle
  });
  EXPECT_EQ(r.reason, StopReason::idle);
  EXPECT_EQ(n, 4);
}

TEST(FleetPool, BoundedByDurationAndByWakes) {
  auto o = fast(2);
  o.duration = milliseconds(200);
  auto r = run_pool(3, o, [](uint32_t) { return WakeOutcome::busy; });
  EXPECT_EQ(r.reason, StopReason::duration);
  EXPECT_GE(r.elapsed.count(), 200);
  EXPECT_LT(r.elapsed.count(), 5000);

  o.duration = milliseconds(20000);
  o.max_wakes = 5;
  std::atomic<int> total{0};
  r = run_pool(3, o, [&](uint32_t) {
    ++total;
    return WakeOutcome::busy;
  });
  EXPECT_EQ(r.reason, StopReason::max_wakes);
  EXPECT_EQ(total, 15);
}

TEST(FleetPool, FinishedDevicesAreNotWokenAgain) {
  std::atomic<int> total{0};
  auto r = run_pool(10, fast(3), [&](uint32_t) {
    ++total;
    return WakeOutcome::finished;
  });
  EXPECT_EQ(total, 10);
  EXPECT_EQ(r.reason, StopReason::idle);
}

TEST(FleetPool, FirstWakesAreSpreadOverOneIntervalBySeed) {
  std::set<long> offsets;
  for (uint32_t i = 0; i < 100; ++i) {
    auto a = first_wake_offset(7, i, milliseconds(1000));
    EXPECT_EQ(a, first_wake_offset(7, i, milliseconds(1000)));
    EXPECT_GE(a.count(), 0);
    EXPECT_LT(a.count(), 1000);
    offsets.insert(a.count());
  }
  EXPECT_GT(offsets.size(), 80u);
  EXPECT_NE(first_wake_offset(7, 3, milliseconds(1000)), first_wake_offset(8, 3, milliseconds(1000)));
}

TEST(FleetChoices, ExactlyRoundRTimesNFailDeterministicallyBySeed) {
  auto a = failing_devices(1000, 0.3, 42);
  EXPECT_EQ(a.size(), 300u);
  EXPECT_EQ(a, failing_devices(1000, 0.3, 42));
  EXPECT_NE(a, failing_devices(1000, 0.3, 43));
  EXPECT_TRUE(std::is_sorted(a.begin(), a.end()));
  EXPECT_EQ(std::set<uint32_t>(a.begin(), a.end()).size(), 300u);
  EXPECT_LT(a.back(), 1000u);
  EXPECT_EQ(failing_devices(50, 0.1, 1).size(), 5u);
  EXPECT_EQ(failing_devices(7, 0.5, 1).size(), 4u);  // round half away from zero
  EXPECT_TRUE(failing_devices(10, 0, 1).empty());
  EXPECT_EQ(failing_devices(10, 1, 1).size(), 10u);
  EXPECT_EQ(device_id("sim", 42), "sim-00042");
}

}  // namespace
}  // namespace ota32::fleet
