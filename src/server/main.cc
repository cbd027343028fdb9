// ota32-serve: the server executable. `ota32 serve ...` and `ota32 fw ...` exec it (design.md: start-up
// cost keeps OpenSSL, Beast and the store drivers out of the ota32 binary).
#include <CLI/CLI.hpp>

#include <string>
#include <string_view>

#include "cli/cli_util.h"
#include "server/fleet_client.h"
#include "server/fw_client.h"
#include "server/serve_main.h"

int main(int argc, char** argv) {
  ota32::cli::start_process();
  // `ota32 serve` / `ota32 fw` / `ota32 group|device-registry|rollout` exec this binary with argv[0] "ota32":
  // --help and usage errors then name the command the user typed ("Usage: ota32 serve ..."), not this
  // executable.
  std::string_view invoked = argc > 0 && argv[0] ? argv[0] : "";
  invoked =
      invoked.substr(invoked.find_last_of('/') == std::string_view::npos ? 0 : invoked.find_last_of('/') + 1);
  const std::string name = invoked == "ota32" ? "ota32" : "ota32-serve";
  CLI::App app{"ota32-serve: the ota32 HTTPS update server", name};
  app.set_version_flag("--version", "ota32-serve 0.1.0");
  app.require_subcommand(1);
  int code = 0;
  ota32::server::add_serve_command(app, &code);
  ota32::server::register_fw_commands(app, code);
  ota32::server::register_fleet_commands(app, code);
  if (auto early = ota32::cli::parse_command_line(app, argc, argv)) return ota32::cli::finish_output(*early);
  return ota32::cli::finish_output(code);
}
