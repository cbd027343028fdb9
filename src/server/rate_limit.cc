#include "server/rate_limit.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cmath>

namespace ota32::server {

RateLimiter::RateLimiter(double rate, double burst, std::size_t max_sources)
    : rate_(std::max(0.0, rate)),
      burst_(std::max(1.0, burst)),
      max_sources_(std::max<std::size_t>(1, max_sources)) {}

std::string RateLimiter::source_key(std::string_view address) {
  std::string text(address);
  in6_addr a6{};
  if (text.find(':') == std::string::npos || ::inet_pton(AF_INET6, text.c_str(), &a6) != 1) return text;
  if (IN6_IS_ADDR_V4MAPPED(&a6)) {
    char v4[INET_ADDRSTRLEN];
    if (::inet_ntop(AF_INET, &a6.s6_addr[12], v4, sizeof v4)) return v4;
  }
  std::fill(std::begin(a6.s6_addr) + 8, std::end(a6.s6_addr), 0);
  char out[INET6_ADDRSTRLEN];
  if (!::inet_ntop(AF_INET6, &a6, out, sizeof out)) return text;
  return std::string(out) + "/64";
}

bool RateLimiter::allow(std::string_view source, Clock::time_point now, std::chrono::seconds* retry_after) {
  if (rate_ <= 0) return true;
  std::string key = source_key(source);
  std::lock_guard lock(mu_);
  auto it = buckets_.find(key);
  if (it == buckets_.end()) {
    if (buckets_.size() >= max_sources_) {
      std::erase_if(buckets_, [&](const auto& kv) {
        double secs = std::chrono::duration<double>(now - kv.second.last).count();
        return kv.second.tokens + secs * rate_ >= burst_;
      });
      if (buckets_.size() >= max_sources_) buckets_.clear();
    }
    it = buckets_.emplace(std::move(key), Bucket{burst_, now}).first;
  }
  Bucket& b = it->second;
  double secs = std::max(0.0, std::chrono::duration<double>(now - b.last).count());
  b.tokens = std::min(burst_, b.tokens + secs * rate_);
  b.last = std::max(b.last, now);
  if (b.tokens >= 1.0) {
    b.tokens -= 1.0;
    return true;
  }
  if (retry_after)
    *retry_after = std::chrono::seconds(static_cast<long>(std::ceil((1.0 - b.tokens) / rate_)));
  return false;
}

}  // namespace ota32::server
