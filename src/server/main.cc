// ota32-serve: the server executable. `ota32 serve ...` and `ota32 fw ...` exec it (design.md: start-up
// cost keeps OpenSSL, Beast and the store drivers out of the ota32 binary).
#include <CLI/CLI.hpp>

#include "cli/cli_util.h"
#include "server/fw_client.h"
#include "server/serve_main.h"

int main(int argc, char** argv) {
  CLI::App app{"ota32-serve: the ota32 HTTPS update server", "ota32-serve"};
  app.set_version_flag("--version", "ota32-serve 0.1.0");
  app.require_subcommand(1);
  int code = 0;
  ota32::server::add_serve_command(app, &code);
  ota32::server::register_fw_commands(app, code);
  if (auto early = ota32::cli::parse_command_line(app, argc, argv)) return *early;
  return code;
}
