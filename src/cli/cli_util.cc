#include "cli/cli_util.h"

#include <unistd.h>

#include <fmt/format.h>

#include <fcntl.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/numbers.h"

namespace ota32::cli {

static int g_exit_code = kExitOk;
static int g_stdout_errno = 0;  // the first failed write to stdout
static bool g_stdout_used = false;

static void note_stdout_error(int err) {
  if (g_stdout_errno == 0) g_stdout_errno = err != 0 ? err : EIO;
}

static void flush_stdout() {
  errno = 0;
  if (std::fflush(stdout) != 0) note_stdout_error(errno);
}

void out(std::string_view s) {
  if (s.empty()) return;
  g_stdout_used = true;
  errno = 0;
  if (std::fwrite(s.data(), 1, s.size(), stdout) != s.size()) note_stdout_error(errno);
}

void start_process() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) != -1 || errno != EBADF) continue;
    // stdin write-only, stdout/stderr read-only: the descriptor is taken, and using it still fails.
    int got = ::open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY);
    if (got >= 0 && got != fd) {
      ::dup2(got, fd);
      ::close(got);
    }
  }
  std::signal(SIGXFSZ, SIG_IGN);
}

int finish_output(int code) {
  flush_stdout();
  // A write that bypassed out() (CLI11's --help goes through std::cout) leaves only the error flag.
  if (std::ferror(stdout)) note_stdout_error(EIO);
  errno = 0;
  if (std::fclose(stdout) != 0) {
    // Closing a stdout that was closed before we started and never written is not an error (as coreutils).
    if (errno != EBADF || g_stdout_used || g_stdout_errno != 0) note_stdout_error(errno);
  }
  if (g_stdout_errno == 0) return code;
  fmt::print(stderr, "ota32: <stdout>: {}\n", std::strerror(g_stdout_errno));
  return kExitFailed;
}

std::string escape_control(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (char ch : message) {
    auto c = static_cast<unsigned char>(ch);
    if (c == '\r') {
      out += "\\r";
    } else if (c == '\n') {
      out += "\\n";
    } else if ((c < 0x20 && c != '\t') || c == 0x7F) {  // a tab stays: it is whitespace on one line
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += ch;
    }
  }
  return out;
}

int fail(const Error& e) { return fail(e.message()); }

int fail(std::string_view message) {
  flush_stdout();
  fmt::print(stderr, "ota32: {}\n", escape_control(message));
  return kExitFailed;
}

int usage_error(std::string_view program, std::string_view message) {
  flush_stdout();
  fmt::print(stderr, "{}: {}\n", program, escape_control(message));
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
    // CLI11 says "A subcommand is required" for "ota32 frobnicate" and "ota32 part": name the word that is
    // not a command, or the commands to choose from (only for groups without positionals of their own).
    if (dynamic_cast<const CLI::RequiredError*>(&e) != nullptr) {
      CLI::App* group = &app;
      std::string where = app.get_name(), word;
      for (int i = 1; i < argc && argv[i][0] != '-'; ++i) {
        word = argv[i];
        auto subs = group->get_subcommands([&](CLI::App* s) { return s->check_name(word); });
        if (subs.empty()) break;
        group = subs.front();
        where += " " + group->get_name();
        word.clear();
      }
      const bool positionals =
          !group->get_options([](const CLI::Option* o) { return o->get_positional(); }).empty();
      if (group->get_require_subcommand_min() > 0 && !positionals) {
        std::string names;
        for (const CLI::App* s : group->get_subcommands({}))
          names += (names.empty() ? "" : ", ") + s->get_name();
        return usage_error(
            app.get_name(),
            word.empty() ? fmt::format("'{}' needs a command: {}", where, names)
                         : fmt::format("'{}' is not a command of '{}' (commands: {})", word, where, names));
      }
    }
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

namespace {

namespace fs = std::filesystem;

std::string find_sibling(std::string_view binary, std::string& looked) {
  std::error_code ec;
  fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path beside = self.parent_path() / binary;
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
    fs::path candidate = fs::path(dir) / binary;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

}  // namespace

int exec_sibling(std::string_view binary, const std::vector<std::string>& args) {
  std::string looked;
  std::string path = find_sibling(binary, looked);
  if (path.empty())
    return fail(fmt::format("cannot find {} next to ota32 (in {}) or on PATH; build it with `ninja {}`",
                            binary, looked.empty() ? "?" : looked, binary));
  // argv[0] "ota32": the sibling's help and usage errors then name `ota32 <command>`.
  std::vector<std::string> argv_store = {"ota32"};
  argv_store.insert(argv_store.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_store) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::fflush(stdout);
  ::execv(path.c_str(), argv.data());
  return fail(fmt::format("{}: cannot run: {}", path, std::strerror(errno)));
}

CLI::App* add_passthrough(CLI::App& parent, const std::string& name, const std::string& description,
                          std::string binary, std::vector<std::string> prefix) {
  auto* sub = parent.add_subcommand(name, description);
  // Everything after the subcommand, --help included, belongs to the sibling.
  sub->prefix_command();
  sub->set_help_flag();
  sub->allow_extras();
  sub->callback([sub, binary = std::move(binary), prefix = std::move(prefix)] {
    std::vector<std::string> args = prefix;
    for (auto& a : sub->remaining()) args.push_back(a);
    set_exit_code(exec_sibling(binary, args));
  });
  return sub;
}

}  // namespace ota32::cli
