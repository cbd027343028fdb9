// The catalogue of bad inputs to the ota32 command line (issue 26 item 10): tests/e2e/data/cli_bad_inputs.txt
// lists each input with its exit code and its one-line message; this test makes the inputs, runs every case
// against the built binary and checks the exit code, that stderr holds exactly that one "ota32: " line (and
// otherwise only the known progress / usage hint lines), and that no file of the input or output
// directories was created, changed or removed. The data file's header describes its format.
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/bytes.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "e2e/run_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

namespace fs = std::filesystem;

class Catalogue {
 public:
  Catalogue() {
    fs::create_directories(in_);
    fs::create_directories(out_);
    Bytes existing(64);
    for (size_t i = 0; i < existing.size(); ++i) existing[i] = static_cast<uint8_t>(i);
    EXPECT_TRUE(write_file_atomic(out_ / "existing.bin", existing));
  }

  std::string subst(std::string s) const {
    for (const auto& [key, value] : {std::pair<std::string, std::string>{"{in}", in_.string()},
                                     {"{out}", out_.string()},
                                     {"{src}", OTA32_SOURCE_DIR}}) {
      for (size_t at = s.find(key); at != std::string::npos; at = s.find(key, at + value.size()))
        s.replace(at, key.size(), value);
    }
    return s;
  }

  // Blank-separated words; 'single quotes' keep blanks.
  std::vector<std::string> words(std::string_view s) const {
    std::vector<std::string> out;
    std::string cur;
    bool quoted = false, any = false;
    for (char c : s) {
      if (c == '\'') {
        quoted = !quoted;
        any = true;
      } else if (c == ' ' && !quoted) {
        if (any) out.push_back(subst(cur));
        cur.clear();
        any = false;
      } else {
        cur += c;
        any = true;
      }
    }
    if (any) out.push_back(subst(cur));
    return out;
  }

  static Bytes unescape(std::string_view t) {
    Bytes out;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t[i] == '\\' && i + 1 < t.size()) {
        char n = t[i + 1];
        if (n == 'n' || n == 't' || n == '\\') {
          out.push_back(n == 'n' ? '\n' : n == 't' ? '\t' : '\\');
          ++i;
          continue;
        }
        if (n == 'x' && i + 3 < t.size()) {
          out.push_back(static_cast<uint8_t>(std::stoi(std::string(t.substr(i + 2, 2)), nullptr, 16)));
          i += 3;
          continue;
        }
      }
      out.push_back(static_cast<uint8_t>(t[i]));
    }
    return out;
  }

  fs::path source(const std::string& name) const {
    return name.find('/') != std::string::npos ? fs::path(subst(name)) : in_ / name;
  }

  // A fingerprint of every file and directory under {in} and {out}: size, modification time and inode for
  // each file (a rewrite or rename changes them), and the content of small files.
  std::map<std::string, std::string> snapshot() const {
    std::map<std::string, std::string> s;
    for (const auto& root : {in_, out_}) {
      for (const auto& e : fs::recursive_directory_iterator(root)) {
        struct stat st {};
        ::lstat(e.path().c_str(), &st);
        std::string v = e.is_directory()
                            ? "dir"
                            : std::to_string(st.st_size) + " " + std::to_string(st.st_mtim.tv_sec) + "." +
                                  std::to_string(st.st_mtim.tv_nsec) + " " + std::to_string(st.st_ino);
        if (e.is_regular_file() && st.st_size <= 64 * 1024) {
          auto b = read_file(e.path());
          if (b) v += " " + to_hex(sha256(*b));
        }
        s[e.path().string()] = v;
      }
    }
    return s;
  }

  fs::path in() const { return in_; }

 private:
  TempDir tmp_;
  fs::path in_ = tmp_.path() / "in", out_ = tmp_.path() / "out";
};

// Lines a failing command may print besides its one error: gen_esp32part's progress, CLI11's usage hint.
bool allowed_extra_line(const std::string& l) {
  static const std::set<std::string> kAllowed = {"Parsing CSV input...", "Parsing binary partition input...",
                                                 "Verifying table...",
                                                 "Run with --help for more information."};
  return l.empty() || kAllowed.count(l) > 0;
}

TEST(CliCatalogue, EveryBadInputFailsWithOneClearLineAndChangesNothing) {
  std::ifstream data(fs::path(OTA32_SOURCE_DIR) / "tests/e2e/data/cli_bad_inputs.txt");
  ASSERT_TRUE(data) << "tests/e2e/data/cli_bad_inputs.txt";
  Catalogue cat;
  std::string line;
  int number = 0, cases = 0;
  std::set<std::string> commands;
  while (std::getline(data, line)) {
    ++number;
    const std::string where = "cli_bad_inputs.txt:" + std::to_string(number) + ": ";
    if (line.empty() || line[0] == '#') continue;
    if (line.starts_with("file ")) {
      auto sp = line.find(' ', 5);
      ASSERT_NE(sp, std::string::npos) << where;
      ASSERT_TRUE(
          write_file_atomic(cat.in() / line.substr(5, sp - 5), Catalogue::unescape(line.substr(sp + 1))));
      continue;
    }
    if (line.starts_with("zeros ")) {
      auto w = cat.words(line);
      ASSERT_EQ(w.size(), 3u) << where;
      ASSERT_TRUE(write_file_atomic(cat.in() / w[1], Bytes(std::stoul(w[2]), 0)));
      continue;
    }
    if (line.starts_with("run ")) {
      auto r = run_ota32(cat.words(line.substr(4)));
      ASSERT_EQ(r.exit_code, 0) << where << r.err;
      continue;
    }
    if (line.starts_with("derive ")) {
      std::vector<std::string> w;
      std::istringstream ws(line);
      for (std::string x; ws >> x;) w.push_back(x);
      ASSERT_GE(w.size(), 3u) << where;
      auto b = read_file(cat.source(w[2]));
      ASSERT_TRUE(b) << where << b.error().message();
      Bytes bytes = *b;
      auto num = [](const std::string& s) { return std::stoul(s, nullptr, 0); };
      for (size_t i = 3; i < w.size();) {
        const std::string& op = w[i];
        if (op == "truncate") {
          bytes.resize(std::min<size_t>(bytes.size(), num(w.at(i + 1))));
          i += 2;
        } else if (op == "drop") {
          bytes.erase(bytes.begin(), bytes.begin() + std::min<size_t>(bytes.size(), num(w.at(i + 1))));
          i += 2;
        } else if (op == "xor") {
          bytes.at(num(w.at(i + 1))) ^= static_cast<uint8_t>(num(w.at(i + 2)));
          i += 3;
        } else if (op == "set" || op == "append") {
          const std::string& hex = w.at(i + (op == "set" ? 2 : 1));
          size_t at = op == "set" ? num(w.at(i + 1)) : bytes.size();
          for (size_t k = 0; k + 1 < hex.size(); k += 2) {
            if (at >= bytes.size()) bytes.resize(at + 1);
            bytes[at++] = static_cast<uint8_t>(std::stoi(hex.substr(k, 2), nullptr, 16));
          }
          i += op == "set" ? 3 : 2;
        } else {
          FAIL() << where << "unknown derive operation " << op;
        }
      }
      ASSERT_TRUE(write_file_atomic(cat.in() / w[1], bytes));
      continue;
    }
    // A case: EXIT | ARGS | MESSAGE
    auto bar1 = line.find(" | "), bar2 = line.find(" | ", bar1 == std::string::npos ? 0 : bar1 + 3);
    ASSERT_TRUE(bar1 != std::string::npos && bar2 != std::string::npos) << where << "not a case: " << line;
    const int exit_code = std::stoi(line.substr(0, bar1));
    const auto args = cat.words(line.substr(bar1 + 3, bar2 - bar1 - 3));
    std::string expected = cat.subst(line.substr(bar2 + 3));
    const bool prefix = expected.ends_with(" ...");
    if (prefix) expected.resize(expected.size() - 4);
    ++cases;
    commands.insert(args.size() >= 2 ? args[0] + " " + args[1] : args.at(0));

    const auto before = cat.snapshot();
    auto r = run_ota32(args);
    EXPECT_FALSE(r.timed_out) << where;
    EXPECT_EQ(r.exit_code, exit_code) << where << line << "\n" << r.err;
    std::vector<std::string> errors;
    std::istringstream es(r.err);
    for (std::string l; std::getline(es, l);) {
      if (l.starts_with("ota32: ")) {
        errors.push_back(l);
      } else {
        EXPECT_TRUE(allowed_extra_line(l)) << where << "unexpected stderr line: " << l;
      }
    }
    ASSERT_EQ(errors.size(), 1u) << where << line << "\n" << r.err;
    if (prefix) {
      EXPECT_TRUE(errors[0].starts_with(expected)) << where << errors[0] << "\ndoes not start with\n"
                                                   << expected;
    } else {
      EXPECT_EQ(errors[0], expected) << where;
    }
    EXPECT_EQ(cat.snapshot(), before) << where << "a failed command changed files: " << line;
  }
  EXPECT_GE(cases, 100);
  // Every format command and every device command has bad inputs in the catalogue.
  for (const char* c : {"part csv2bin",  "part bin2csv",   "part info",       "image info",
                        "image verify",  "image make",     "image elf2image", "otadata read",
                        "otadata write", "otadata switch", "sign key",        "sign sign",
                        "sign verify",   "sign info",      "sign pubkey",     "sign digest",
                        "device new",    "device flash",   "device boot",     "device set",
                        "device ota",    "device efuse",   "device esptool",  "device powercut-sweep",
                        "device run"})
    EXPECT_EQ(commands.count(c), 1u) << "no case for " << c;
}

}  // namespace
}  // namespace ota32::testing
