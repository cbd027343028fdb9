// ota32's entry point: the command groups it builds for each command line (src/cli/commands.h), --version,
// and what it loads at start (docs/performance.md "Start-up").
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "e2e/run_process.h"

namespace ota32::testing {
namespace {

using ::testing::HasSubstr;

TEST(CliMain, VersionWithoutACommand) {
  auto r = run_ota32({"--version"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "ota32 0.1.0\n");
  EXPECT_EQ(r.err, "");
}

TEST(CliMain, HelpListsEveryGroup) {
  auto r = run_ota32({"--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* group : {"part", "otadata", "image", "device", "serve", "fw"})
    EXPECT_THAT(r.out, HasSubstr(std::string("\n  ") + group + " ")) << group;
}

// Only the typed command's groups are built: a group that joins another's subcommand (agent_cmd.cc's
// `device ota`) is there when that command is typed, and other groups' commands are not reachable through it.
TEST(CliMain, TypedCommandGetsEveryGroupThatNamesIt) {
  auto r = run_ota32({"device", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  for (const char* sub : {"new", "flash", "boot", "run", "ota"})
    EXPECT_THAT(r.out, HasSubstr(std::string("\n  ") + sub + " ")) << sub;
  r = run_ota32({"part", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("csv2bin"));
  EXPECT_THAT(r.out, ::testing::Not(HasSubstr("otadata")));
}

TEST(CliMain, UnknownCommandIsAUsageError) {
  auto r = run_ota32({"nosuch"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("ota32: 'nosuch' is not a command of 'ota32' (commands: part, otadata, "));
  r = run_ota32({});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("ota32: 'ota32' needs a command: part, otadata, "));
  r = run_ota32({"part", "nosuch"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(
      r.err,
      HasSubstr("ota32: 'nosuch' is not a command of 'ota32 part' (commands: csv2bin, bin2csv, info)"));
}

}  // namespace
}  // namespace ota32::testing
