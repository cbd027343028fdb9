// Each object of the command line (design.md: part, otadata, image, sign, device, serve, fleet, fw) lives
// in its own <object>_cmd.cc and registers itself with OTA32_REGISTER_COMMANDS, so groups never edit
// each other's files. main.cc adds the groups to the app in `order`.
//
//   OTA32_REGISTER_COMMANDS(order, fn)                  fn runs on every command line
//   OTA32_REGISTER_COMMANDS(order, fn, "part")          fn runs only when the command typed is `ota32 part
//   ...` OTA32_REGISTER_COMMANDS(order, fn, "serve", "fw")   (or for --help, or a word no group names)
//
// Name the top-level subcommands fn adds (or joins, like agent_cmd.cc's `device ota`): building CLI11's tree
// of every group costs more than the rest of a format command's run (docs/performance.md "Start-up").
#pragma once

#include <CLI/CLI.hpp>

#include <initializer_list>
#include <string_view>
#include <vector>

namespace ota32::cli {

using RegisterFn = void (*)(CLI::App& app);

struct CommandGroup {
  int order;  // position in --help
  RegisterFn fn;
  std::vector<std::string_view>
      names;  // the top-level subcommands fn adds or joins; empty: unknown, always run
};

std::vector<CommandGroup>& command_groups();

struct CommandGroupRegistrar {
  CommandGroupRegistrar(int order, RegisterFn fn, std::initializer_list<std::string_view> names = {}) {
    command_groups().push_back({order, fn, names});
  }
};

}  // namespace ota32::cli

#define OTA32_REGISTER_COMMANDS(order, fn, ...) \
  static ::ota32::cli::CommandGroupRegistrar ota32_register_##fn(order, fn __VA_OPT__(, {__VA_ARGS__}))
