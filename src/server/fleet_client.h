// `ota32 group`, `ota32 device-registry` and `ota32 rollout`: the admin clients of the fleet API
// (docs/api.md "Groups", "Device identity", "Rollouts"), in ota32-serve beside `ota32 fw` and like it.
#pragma once

#include <CLI/CLI.hpp>

#include <cstdint>
#include <optional>
#include <string_view>

#include "core/result.h"

namespace ota32::server {

// "90", "90s", "15m", "2h", "1d" -> seconds. Errors name `what`.
Result<int64_t> parse_duration(std::string_view text, std::string_view what);
// "5%" or "0.05" -> 0.05.
Result<double> parse_rate(std::string_view text, std::string_view what);

void register_fleet_commands(CLI::App& app, int& exit_code);

}  // namespace ota32::server
