// ota32: the one binary for formats and the virtual device. The server lives in ota32-serve (design.md:
// start-up cost), which `ota32 serve` execs.
#include <CLI/CLI.hpp>

#include <algorithm>

#include "cli/cli_util.h"
#include "cli/commands.h"

namespace ota32::cli {
std::vector<CommandGroup>& command_groups() {
  static std::vector<CommandGroup> groups;
  return groups;
}
}  // namespace ota32::cli

int main(int argc, char** argv) {
  using namespace ota32::cli;
  start_process();
  CLI::App app{"ota32: over-the-air firmware updates for ESP32 fleets, byte-compatible with ESP-IDF",
               "ota32"};
  app.set_version_flag("--version", "ota32 0.1.0");
  app.require_subcommand(1);
  app.fallthrough(false);

  auto groups = command_groups();
  std::sort(groups.begin(), groups.end(), [](auto& a, auto& b) { return a.order < b.order; });
  for (const auto& g : groups) g.fn(app);

  if (auto code = parse_command_line(app, argc, argv)) return finish_output(*code);
  return finish_output(exit_code());
}
