// Shared helpers of the ota32 command line: exit codes and one-line error reporting.
#pragma once

#include <CLI/CLI.hpp>

#include <string_view>

#include "core/result.h"

namespace ota32::cli {

// Exit codes (design.md): 0 ok, 1 the input is bad / the check failed, 2 usage error.
constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Prints "ota32: <message>" on stderr and returns kExitFailed.
int fail(const Error& e);
int fail(std::string_view message);

// Wraps a command body: the callback's return value becomes the process exit code.
// CLI11 callbacks return void, so commands store their code here and main() returns it.
void set_exit_code(int code);
int exit_code();

// A number option accepting 0x.., decimal and K/M suffixes (core/numbers.h); validated when parsed.
CLI::Option* add_number_option(CLI::App* app, const std::string& name, uint64_t& value,
                               const std::string& help);

}  // namespace ota32::cli
