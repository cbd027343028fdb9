#include "server/rate_limit.h"

#include <gtest/gtest.h>

namespace ota32::server {
namespace {

using namespace std::chrono_literals;

TEST(RateLimiter, BurstThenRateAndRetryAfter) {
  RateLimiter lim(2, 4);  // 2 per second, 4 at once
  auto t0 = RateLimiter::Clock::time_point{} + 1000s;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(lim.allow("10.0.0.1", t0)) << i;
  std::chrono::seconds wait{0};
  EXPECT_FALSE(lim.allow("10.0.0.1", t0, &wait));
  EXPECT_EQ(wait, 1s);
  EXPECT_TRUE(lim.allow("10.0.0.2", t0)) << "another source has its own bucket";
  EXPECT_TRUE(lim.allow("10.0.0.1", t0 + 500ms));  // one token refilled
  EXPECT_FALSE(lim.allow("10.0.0.1", t0 + 500ms));
  // A long pause refills the burst, never more.
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(lim.allow("10.0.0.1", t0 + 1h)) << i;
  EXPECT_FALSE(lim.allow("10.0.0.1", t0 + 1h));
}

TEST(RateLimiter, ZeroRateIsNoLimit) {
  RateLimiter lim(0, 1);
  EXPECT_FALSE(lim.enabled());
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(lim.allow("10.0.0.1", RateLimiter::Clock::now()));
}

TEST(RateLimiter, Ipv6SourcesShareTheirSlash64) {
  EXPECT_EQ(RateLimiter::source_key("192.168.1.20"), "192.168.1.20");
  EXPECT_EQ(RateLimiter::source_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
  EXPECT_EQ(RateLimiter::source_key("::ffff:10.1.2.3"), "10.1.2.3");
  EXPECT_EQ(RateLimiter::source_key("?"), "?");
  RateLimiter lim(0.001, 2);
  auto t = RateLimiter::Clock::now();
  EXPECT_TRUE(lim.allow("2001:db8:1:2::1", t));
  EXPECT_TRUE(lim.allow("2001:db8:1:2::2", t));
  EXPECT_FALSE(lim.allow("2001:db8:1:2::3", t)) << "a host rotating through its /64 shares one bucket";
  EXPECT_TRUE(lim.allow("2001:db8:1:3::1", t));
}

TEST(RateLimiter, TheTableOfSourcesIsBounded) {
  RateLimiter lim(1, 1, 8);
  auto t = RateLimiter::Clock::now();
  for (int i = 0; i < 100; ++i) EXPECT_TRUE(lim.allow("10.0.1." + std::to_string(i), t)) << i;
  // A source forgotten when the table overflowed starts with a full bucket again, which is what it would have
  // had after a pause: the bound costs accuracy under a flood of sources, never a refused first request.
  EXPECT_TRUE(lim.allow("10.0.1.0", t + 2s));
}

}  // namespace
}  // namespace ota32::server
