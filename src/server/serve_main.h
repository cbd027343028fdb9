// `ota32-serve serve`: options, zero-config TLS, routes, run. Separate from main.cc so that the api side can
// add its own subcommands (fw push|list|rm) to the same CLI11 app.
#pragma once

#include <CLI/CLI.hpp>

namespace ota32::server {

// Adds the "serve" subcommand; its callback sets the exit code through *exit_code.
void add_serve_command(CLI::App& app, int* exit_code);

}  // namespace ota32::server
