// ota32: the one binary for formats and the virtual device. The server lives in ota32-serve (design.md:
// start-up cost), which `ota32 serve` execs.
#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>

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
  CLI::App app{"ota32: over-the-air firmware updates for ESP32 fleets, byte-compatible with ESP-IDF",
               "ota32"};
  app.set_version_flag("--version", "ota32 0.1.0");
  app.require_subcommand(1);
  app.fallthrough(false);

  auto groups = command_groups();
  std::sort(groups.begin(), groups.end(), [](auto& a, auto& b) { return a.order < b.order; });
  for (const auto& g : groups) g.fn(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fflush(stdout);
    fmt::print(stderr, "ota32: {}\n", e.what());
    fmt::print(stderr, "Run with --help for more information.\n");
    return kExitUsage;
  }
  return exit_code();
}
