// Each object of the command line (design.md: part, otadata, image, sign, device, serve, fleet, fw) lives
// in its own <object>_cmd.cc and registers itself with OTA32_REGISTER_COMMANDS, so groups never edit
// each other's files. main.cc adds the groups to the app in `order`.
#pragma once

#include <CLI/CLI.hpp>

#include <functional>

namespace ota32::cli {

using RegisterFn = void (*)(CLI::App& app);

struct CommandGroup {
  int order;  // position in --help
  RegisterFn fn;
};

std::vector<CommandGroup>& command_groups();

struct CommandGroupRegistrar {
  CommandGroupRegistrar(int order, RegisterFn fn) { command_groups().push_back({order, fn}); }
};

}  // namespace ota32::cli

#define OTA32_REGISTER_COMMANDS(order, fn) \
  static ::ota32::cli::CommandGroupRegistrar ota32_register_##fn(order, fn)
