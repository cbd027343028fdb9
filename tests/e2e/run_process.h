// Runs a program (the built ota32, usually) and captures what it did: for end-to-end tests of the CLI.
#pragma once

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

namespace ota32::testing {

struct ProcessResult {
  int exit_code = -1;  // the exit status, or 128 + signal when killed (a timeout kills with SIGKILL)
  std::string out, err;
  bool timed_out = false;
};

// Runs `program` with `args` (argv[1..]) in `cwd` (empty = current), feeding `input` on stdin. Bounded:
// after `timeout` the child is killed and timed_out is set.
ProcessResult run_process(const std::filesystem::path& program, const std::vector<std::string>& args,
                          const std::string& input = {}, const std::filesystem::path& cwd = {},
                          std::chrono::milliseconds timeout = std::chrono::seconds(30));

// Where the child's stdout goes and how large a file it may write (RLIMIT_FSIZE; its SIGXFSZ is reset to the
// default): for the tests of failed writes (/dev/full, a closed stdout, `ulimit -f`).
struct ProcessOptions {
  enum class Stdout { pipe, dev_full, closed, file } stdout_to = Stdout::pipe;
  std::filesystem::path stdout_file;  // Stdout::file: created or truncated
  long long file_size_limit = -1;     // bytes; -1: no limit
  std::filesystem::path cwd;
  std::chrono::milliseconds timeout = std::chrono::seconds(30);
};
ProcessResult run_process(const std::filesystem::path& program, const std::vector<std::string>& args,
                          const std::string& input, const ProcessOptions& options);

// The ota32 binary of this build tree.
std::filesystem::path ota32_binary();
// run_process(ota32_binary(), args).
ProcessResult run_ota32(const std::vector<std::string>& args, const std::string& input = {},
                        const std::filesystem::path& cwd = {});
ProcessResult run_ota32(const std::vector<std::string>& args, const ProcessOptions& options);

}  // namespace ota32::testing
