// `ota32 serve ...` and `ota32 fw ...` run the sibling executable ota32-serve (git's git-<command> pattern),
// so that the format and device commands never load OpenSSL, Beast or the store drivers (design.md:
// start-up cost). ota32-serve is looked up next to the running ota32 (/proc/self/exe), then on PATH.
#include <unistd.h>

#include <fmt/format.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"

namespace ota32::cli {
namespace {

namespace fs = std::filesystem;

constexpr const char* kServeBinary = "ota32-serve";

std::string find_serve_binary(std::string& looked) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / kServeBinary;
    looked = beside.parent_path().string();
    if (::access(beside.c_str(), X_OK) == 0) return beside.string();
  }
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "";
  while (!dirs.empty()) {
    auto colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
    if (dir.empty()) continue;
    fs::path candidate = fs::path(dir) / kServeBinary;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

// Replaces this process with `ota32-serve <command> <args...>`; returns only on failure.
int exec_serve(const std::string& command, const std::vector<std::string>& args) {
  std::string looked;
  std::string binary = find_serve_binary(looked);
  if (binary.empty())
    return fail(fmt::format("cannot find {} next to ota32 (in {}) or on PATH; build it with `ninja {}`",
                            kServeBinary, looked.empty() ? "?" : looked, kServeBinary));
  // argv[0] "ota32": ota32-serve's help and usage errors then name `ota32 <command>`.
  std::vector<std::string> argv_store = {"ota32", command};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  ::execv(binary.c_str(), argv.data());
  return fail(fmt::format("{}: cannot run: {}", binary, std::strerror(errno)));
}

void add_passthrough(CLI::App& app, const std::string& name, const std::string& description) {
  auto* sub = app.add_subcommand(name, description);
  // Everything after the subcommand, --help included, belongs to ota32-serve.
  sub->prefix_command();
  sub->set_help_flag();
  sub->allow_extras();
  sub->callback([sub, name] { set_exit_code(exec_serve(name, sub->remaining())); });
}

void register_serve_commands(CLI::App& app) {
  add_passthrough(
      app, "serve",
      "HTTPS update server, replaces `openssl s_server -WWW` (runs ota32-serve; see `ota32 serve --help`)");
  add_passthrough(app, "fw", "Firmware catalog of a server: push, list, rm (runs ota32-serve fw)");
}

}  // namespace

OTA32_REGISTER_COMMANDS(60, register_serve_commands);

}  // namespace ota32::cli
