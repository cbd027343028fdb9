// `ota32 serve ...` and `ota32 fw ...` run the sibling executable ota32-serve (git's git-<command> pattern),
// so that the format and device commands never load OpenSSL, Beast or the store drivers (design.md:
// start-up cost). ota32-serve is looked up next to the running ota32 (/proc/self/exe), then on PATH.
#include "cli/cli_util.h"
#include "cli/commands.h"

namespace ota32::cli {
namespace {

constexpr const char* kServeBinary = "ota32-serve";

void register_serve_commands(CLI::App& app) {
  add_passthrough(
      app, "serve",
      "HTTPS update server, replaces `openssl s_server -WWW` (runs ota32-serve; see `ota32 serve --help`)",
      kServeBinary, {"serve"});
  add_passthrough(app, "fw", "Firmware catalog of a server: push, list, rm (runs ota32-serve fw)",
                  kServeBinary, {"fw"});
  add_passthrough(app, "group", "Device groups of a server: create, list, show, rm (runs ota32-serve group)",
                  kServeBinary, {"group"});
  add_passthrough(app, "device-registry",
                  "Device registry of a server: list, accept, reject, token, tag, attr (runs ota32-serve)",
                  kServeBinary, {"device-registry"});
  add_passthrough(app, "rollout",
                  "Staged rollouts on a server: create, list, show, pause, resume, abort, promote (runs "
                  "ota32-serve rollout)",
                  kServeBinary, {"rollout"});
}

}  // namespace

OTA32_REGISTER_COMMANDS(60, register_serve_commands, "serve", "fw", "group", "device-registry", "rollout");

}  // namespace ota32::cli
