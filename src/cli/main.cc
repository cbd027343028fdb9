// ota32: the one binary for formats and the virtual device. The server lives in ota32-serve (design.md:
// start-up cost), which `ota32 serve` execs.
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "cli/cli_util.h"
#include "cli/commands.h"

namespace ota32::cli {
std::vector<CommandGroup>& command_groups() {
  static std::vector<CommandGroup> groups;
  return groups;
}
}  // namespace ota32::cli

namespace {
constexpr const char* kVersion = "ota32 0.1.0";
}

int main(int argc, char** argv) {
  using namespace ota32::cli;
  start_process();
  std::string_view first = argc > 1 ? argv[1] : "";
  // `ota32 --version` answers without building the command tree or throwing CLI11's CallForVersion.
  if (argc == 2 && first == "--version") {
    std::puts(kVersion);
    return finish_output(0);
  }
  CLI::App app{"ota32: over-the-air firmware updates for ESP32 fleets, byte-compatible with ESP-IDF",
               "ota32"};
  app.set_version_flag("--version", kVersion);
  app.require_subcommand(1);
  app.fallthrough(false);

  auto groups = command_groups();
  std::sort(groups.begin(), groups.end(), [](auto& a, auto& b) { return a.order < b.order; });
  // Only the groups of the command typed (ota32's own options are --help and --version, so it is the first
  // word); every group for --help, no command, or a word no group names (CLI11 then lists or rejects it).
  auto names = [&](const CommandGroup& g) {
    return std::find(g.names.begin(), g.names.end(), first) != g.names.end();
  };
  bool typed = std::any_of(groups.begin(), groups.end(), names);
  for (const auto& g : groups)
    if (!typed || g.names.empty() || names(g)) g.fn(app);

  if (auto code = parse_command_line(app, argc, argv)) return finish_output(*code);
  return finish_output(exit_code());
}
