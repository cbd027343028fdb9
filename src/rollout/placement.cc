// Stage placement (spec/rollouts.md §6.2) and the checks of a rollout's definition.
#include <fmt/format.h>

#include <cmath>

#include "core/hash.h"
#include "rollout/rollout.h"

namespace ota32::rollout {

uint32_t bucket(std::string_view rollout_id, std::string_view device_id) {
  Sha256 h;
  h.update(as_bytes(rollout_id));
  const uint8_t zero = 0;
  h.update(ByteView(&zero, 1));
  h.update(as_bytes(device_id));
  Sha256Digest d = h.finish();
  uint32_t be = uint32_t{d[0]} << 24 | uint32_t{d[1]} << 16 | uint32_t{d[2]} << 8 | uint32_t{d[3]};
  return be % kBucketCount;
}

uint32_t stage_of_bucket(const std::vector<Stage>& stages, uint32_t b) {
  for (size_t k = 0; k < stages.size(); ++k)
    if (b < stages[k].cumulative_bp) return static_cast<uint32_t>(k);
  return stages.empty() ? 0 : static_cast<uint32_t>(stages.size() - 1);
}

Result<void> check_spec(const RolloutSpec& spec) {
  auto bad = [](std::string msg) { return Error(ErrorCode::invalid_argument, std::move(msg)); };
  if (spec.id.empty()) return bad("id: empty");
  if (spec.target_version.empty()) return bad("target_version: empty");
  if (spec.stages.empty()) return bad("stages: at least one stage is needed");
  if (spec.stages.size() > 100) return bad("stages: at most 100");
  uint32_t prev = 0;
  for (size_t k = 0; k < spec.stages.size(); ++k) {
    const Stage& s = spec.stages[k];
    if (s.cumulative_bp <= prev || s.cumulative_bp > kBucketCount)
      return bad(
          fmt::format("stages[{}].percent: {} is not above the previous stage's {} (percentages are "
                      "cumulative, at most 100)",
                      k, s.cumulative_bp / 100.0, prev / 100.0));
    if (s.min_soak_s < 0) return bad(fmt::format("stages[{}].min_soak: negative", k));
    if (!(s.success_fraction >= 0 && s.success_fraction <= 1))
      return bad(fmt::format("stages[{}].success_fraction: not between 0 and 1", k));
    prev = s.cumulative_bp;
  }
  if (prev != kBucketCount)
    return bad(fmt::format("stages[{}].percent: the last stage must be 100 (is {})", spec.stages.size() - 1,
                           prev / 100.0));
  const Policy& p = spec.policy;
  if (p.max_in_flight == 0) return bad("max_in_flight: must be at least 1");
  if (p.retries > 100) return bad("retries: at most 100");
  if (p.retry_backoff_s < 0) return bad("retry_backoff: negative");
  if (p.action_timeout_s <= 0) return bad("action_timeout: must be positive");
  if (p.confirm_timeout_s <= 0) return bad("confirm_timeout: must be positive");
  if (!(p.max_failure_rate >= 0 && p.max_failure_rate <= 1))
    return bad("max_failure_rate: not between 0 and 1");
  if (p.window_s <= 0) return bad("window: must be positive");
  return {};
}

}  // namespace ota32::rollout
