#include "cli/cli_util.h"

#include <fmt/format.h>

#include <cstdio>

#include "core/numbers.h"

namespace ota32::cli {

static int g_exit_code = kExitOk;

int fail(const Error& e) { return fail(e.message()); }

int fail(std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "ota32: {}\n", message);
  return kExitFailed;
}

int usage_error(std::string_view program, std::string_view message) {
  std::fflush(stdout);
  fmt::print(stderr, "{}: {}\n", program, message);
  fmt::print(stderr, "Run with --help for more information.\n");
  return kExitUsage;
}

void set_exit_code(int code) { g_exit_code = code; }
int exit_code() { return g_exit_code; }

std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    return usage_error(app.get_name(), e.what());
  }
  return std::nullopt;
}

CLI::Option* add_number_option(CLI::App* app, const std::string& name, uint64_t& value,
                               const std::string& help) {
  std::string flag = name.substr(0, name.find(','));
  return app->add_option_function<std::string>(
      name,
      [&value, flag](const std::string& s) {
        auto v = parse_number(s, flag);
        if (!v) throw CLI::ValidationError(v.error().message());
        value = *v;
      },
      help);
}

}  // namespace ota32::cli
