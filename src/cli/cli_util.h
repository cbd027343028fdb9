// Shared helpers of the ota32 command line: exit codes, one-line error reporting and the parse step. Built as
// the small library ota32_cli_util (core, CLI11, fmt only), which ota32-serve links too.
#pragma once

#include <fmt/format.h>
#include <CLI/CLI.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace ota32::cli {

// Exit codes (design.md): 0 ok, 1 the input is bad / the check failed, 2 usage error.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// The message with every control character (CR, LF, ESC, DEL, ...) written as \r, \n or \xNN: an error that
// echoes input (a URL, a CSV field, an argument) stays one line and cannot move the terminal's cursor.
std::string escape_control(std::string_view message);

// Prints "ota32: <message>" (control characters escaped) on stderr and returns kExitFailed.
int fail(const Error& e);
int fail(std::string_view message);

// Prints "<program>: <message>" and the --help hint on stderr, as CLI11's parse errors are reported, and
// returns kExitUsage: for usage rules CLI11 cannot express.
int usage_error(std::string_view program, std::string_view message);

// Standard output, checked (a build step must not ship a truncated table): commands print through these,
// and the first failed write's errno is kept, because stdio forgets it once its buffer is dropped.
void out(std::string_view s);
template <typename... T>
void print_out(fmt::format_string<T...> f, T&&... args) {
  out(fmt::format(f, std::forward<T>(args)...));
}

// Both executables call these first and last. start_process(): a closed stdin/stdout/stderr is taken by
// /dev/null opened the wrong way round, so an output file never becomes fd 1 and writes to a closed stdout
// still fail (EBADF); SIGXFSZ is ignored, so `ulimit -f` makes writes fail with EFBIG (reported, the
// temporary file removed) instead of killing the process. finish_output(code): flushes and closes stdout;
// if any write to it failed, prints "ota32: <stdout>: <reason>" and returns kExitFailed, else `code`.
void start_process();
int finish_output(int code);

// Wraps a command body: the callback's return value becomes the process exit code.
// CLI11 callbacks return void, so commands store their code here and main() returns it.
void set_exit_code(int code);
int exit_code();

// app.parse as both executables do it: --help and --version print CLI11's text and give 0; any other parse
// error prints "<app name>: <what>" and a --help hint on stderr and gives kExitUsage. nullopt: the command
// line parsed and the chosen command's callback ran; main returns the command's own exit code.
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv);

// A number option accepting 0x.., decimal and K/M suffixes (core/numbers.h); validated when parsed.
CLI::Option* add_number_option(CLI::App* app, const std::string& name, uint64_t& value,
                               const std::string& help);

// Replaces this process with the sibling executable `binary` (git's git-<command> pattern: looked up next to
// the running executable, then on PATH), run as `ota32 <args...>` so that its --help and usage errors name
// the command the user typed. Returns only when it cannot run it, after printing why (kExitFailed).
int exec_sibling(std::string_view binary, const std::vector<std::string>& args);

// A subcommand of `parent` whose whole command line, --help included, belongs to `binary`: running it execs
// `binary` with `prefix` followed by the arguments after the subcommand.
CLI::App* add_passthrough(CLI::App& parent, const std::string& name, const std::string& description,
                          std::string binary, std::vector<std::string> prefix);

}  // namespace ota32::cli
