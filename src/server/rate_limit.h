// Per-source request rate limits for the anonymous, device-facing endpoints (update checks, reports): a token
// bucket per source address, like nginx's limit_req (rate + burst). IPv6 sources are grouped by their /64
// (one host usually holds a whole /64, so per-address buckets would be free to multiply).
#pragma once

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>

namespace ota32::server {

class RateLimiter {
 public:
  using Clock = std::chrono::steady_clock;

  // `rate` requests per second per source, up to `burst` at once; rate 0 = no limit. At most `max_sources`
  // buckets are kept: beyond that, buckets that have refilled are forgotten (they hold no state a new bucket
  // lacks), and if none has, all are.
  RateLimiter(double rate, double burst, std::size_t max_sources = 65'536);

  // True when `source` may make a request now (and counts it). Else false, and `retry_after` (when given)
  // is how long until it may.
  bool allow(std::string_view source, Clock::time_point now, std::chrono::seconds* retry_after = nullptr);

  // The bucket key of an address: IPv4 as is, IPv6 its first 64 bits ("2001:db8:1:2::/64").
  static std::string source_key(std::string_view address);

  bool enabled() const { return rate_ > 0; }

 private:
  struct Bucket {
    double tokens;
    Clock::time_point last;
  };
  double rate_, burst_;
  std::size_t max_sources_;
  std::mutex mu_;
  std::unordered_map<std::string, Bucket> buckets_;
};

}  // namespace ota32::server
