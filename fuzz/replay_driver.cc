// The fuzz targets' main() in builds without libFuzzer (GCC, CTest): replays every corpus file, then runs a
// fixed number of deterministic mutations of them (a seeded PRNG: bit flips, byte and word sets, inserts,
// erases, truncations, splices), so CI exercises the same targets and invariants on every run and a failure
// reproduces with the same --seed. On a crash or a failed check the input being run is written to
// fuzz-failure-<target>.bin in the working directory.
//
//   fuzz_<target> [--iterations N] [--seed S] [--max-len BYTES] CORPUS_DIR_OR_FILE...
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/splitmix.h"
#include "fuzz_check.h"

namespace {

using Input = std::vector<uint8_t>;

// The input being run and where to save it; read by the crash handlers (async-signal-safe calls only).
const uint8_t* g_current = nullptr;
size_t g_current_size = 0;
char g_failure_path[512] = "fuzz-failure.bin";

void save_current_input() {
  static bool saved = false;
  if (saved || g_current == nullptr) return;
  saved = true;
  int fd = ::open(g_failure_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return;
  size_t done = 0;
  while (done < g_current_size) {
    ssize_t n = ::write(fd, g_current + done, g_current_size - done);
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  ::close(fd);
  const char msg[] = "replay driver: the failing input was saved to ";
  (void)!::write(2, msg, sizeof msg - 1);
  (void)!::write(2, g_failure_path, std::strlen(g_failure_path));
  (void)!::write(2, "\n", 1);
}

extern "C" void on_fatal_signal(int sig) {
  save_current_input();
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

constexpr uint32_t kInterestingWords[] = {0,       1,          0x7F,       0x80,       0xFF,
                                          0x100,   0x1000,     0x7FFF,     0x8000,     0xFFFF,
                                          0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFE, 0xFFFFFFFF};
constexpr char kTextTokens[] = "0123456789abcdefx,:;-=\r\n\t #$\"/[]?@";

// One mutation of `in`, chosen by the PRNG; `other` is another corpus entry for splices.
void mutate_once(Input& in, const Input& other, ota32::SplitMix64& rng, size_t max_len) {
  switch (rng.below(10)) {
    case 0:  // flip a bit
      if (!in.empty()) in[rng.below(in.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
      break;
    case 1:  // set a byte to anything
      if (!in.empty()) in[rng.below(in.size())] = static_cast<uint8_t>(rng.next());
      break;
    case 2: {  // set a little-endian 16- or 32-bit word to a boundary value
      size_t width = rng.below(2) ? 4 : 2;
      if (in.size() < width) break;
      uint32_t v = kInterestingWords[rng.below(std::size(kInterestingWords))];
      if (rng.below(4) == 0) v = static_cast<uint32_t>(in.size() + rng.below(64)) - 32;
      size_t at = rng.below(in.size() - width + 1);
      for (size_t i = 0; i < width; ++i) in[at + i] = static_cast<uint8_t>(v >> (8 * i));
      break;
    }
    case 3: {  // insert a text token (most parsers here read text or have text fields)
      size_t at = rng.below(in.size() + 1);
      in.insert(in.begin() + static_cast<std::ptrdiff_t>(at),
                static_cast<uint8_t>(kTextTokens[rng.below(sizeof kTextTokens - 1)]));
      break;
    }
    case 4: {  // erase a range
      if (in.empty()) break;
      size_t at = rng.below(in.size());
      size_t n = 1 + rng.below(std::min<size_t>(in.size() - at, 64));
      in.erase(in.begin() + static_cast<std::ptrdiff_t>(at),
               in.begin() + static_cast<std::ptrdiff_t>(at + n));
      break;
    }
    case 5:  // truncate
      in.resize(rng.below(in.size() + 1));
      break;
    case 6: {  // duplicate a range of the input somewhere else in it
      if (in.empty()) break;
      size_t from = rng.below(in.size());
      size_t n = 1 + rng.below(std::min<size_t>(in.size() - from, 256));
      Input chunk(in.begin() + static_cast<std::ptrdiff_t>(from),
                  in.begin() + static_cast<std::ptrdiff_t>(from + n));
      size_t at = rng.below(in.size() + 1);
      in.insert(in.begin() + static_cast<std::ptrdiff_t>(at), chunk.begin(), chunk.end());
      break;
    }
    case 7: {  // splice: a prefix of this input, then a suffix of another
      size_t keep = rng.below(in.size() + 1), from = rng.below(other.size() + 1);
      in.resize(keep);
      in.insert(in.end(), other.begin() + static_cast<std::ptrdiff_t>(from), other.end());
      break;
    }
    case 8: {  // overwrite a range with the same bytes of the other input
      if (in.empty() || other.empty()) break;
      size_t at = rng.below(std::min(in.size(), other.size()));
      size_t n = 1 + rng.below(std::min<size_t>(std::min(in.size(), other.size()) - at, 64));
      std::copy_n(other.begin() + static_cast<std::ptrdiff_t>(at), n,
                  in.begin() + static_cast<std::ptrdiff_t>(at));
      break;
    }
    default: {  // a run of equal bytes (0x00, 0xFF or random): erased flash, zeroed fields
      if (in.empty()) break;
      size_t at = rng.below(in.size());
      size_t n = 1 + rng.below(std::min<size_t>(in.size() - at, 128));
      uint8_t v = rng.below(3) == 0 ? 0x00 : rng.below(2) ? 0xFF : static_cast<uint8_t>(rng.next());
      std::fill_n(in.begin() + static_cast<std::ptrdiff_t>(at), n, v);
      break;
    }
  }
  if (in.size() > max_len) in.resize(max_len);
}

void run_one(const Input& in) {
  g_current = in.data();
  g_current_size = in.size();
  LLVMFuzzerTestOneInput(in.data(), in.size());
  g_current = nullptr;
}

bool read_input(const std::filesystem::path& p, Input& out) {
  std::ifstream f(p, std::ios::binary);
  if (!f) return false;
  out.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
  return true;
}

[[noreturn]] void usage(const char* argv0) {
  std::fprintf(stderr, "usage: %s [--iterations N] [--seed S] [--max-len BYTES] CORPUS_DIR_OR_FILE...\n",
               argv0);
  std::exit(2);
}

}  // namespace

// libFuzzer's optional initialiser: targets may define it; the driver calls it like libFuzzer does.
extern "C" __attribute__((weak)) int LLVMFuzzerInitialize(int* argc, char*** argv);
// Called by ASan / UBSan before they end the process (weak: absent in builds without sanitizers).
extern "C" __attribute__((weak)) void __sanitizer_set_death_callback(void (*callback)());

int main(int argc, char** argv) {
  uint64_t iterations = 0, seed = 1;
  size_t max_len = 64 * 1024;
  std::vector<std::filesystem::path> paths;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) usage(argv[0]);
      return argv[++i];
    };
    if (a == "--iterations") {
      iterations = std::strtoull(value().c_str(), nullptr, 0);
    } else if (a == "--seed") {
      seed = std::strtoull(value().c_str(), nullptr, 0);
    } else if (a == "--max-len") {
      max_len = std::strtoull(value().c_str(), nullptr, 0);
    } else if (a.starts_with("--")) {
      usage(argv[0]);
    } else {
      paths.emplace_back(a);
    }
  }
  if (paths.empty()) usage(argv[0]);
  if (LLVMFuzzerInitialize) LLVMFuzzerInitialize(&argc, &argv);

  std::string target = std::filesystem::path(argv[0]).filename().string();
  std::snprintf(g_failure_path, sizeof g_failure_path, "fuzz-failure-%s.bin", target.c_str());
  if (__sanitizer_set_death_callback) {
    // Under ASan / UBSan their own handlers report SEGV and friends (with the stack); they call us before
    // the process ends. SIGABRT (a failed FUZZ_CHECK or assert) is not theirs.
    __sanitizer_set_death_callback(save_current_input);
    ::signal(SIGABRT, on_fatal_signal);
  } else {
    for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) ::signal(sig, on_fatal_signal);
  }

  std::vector<Input> corpus;
  for (const auto& p : paths) {
    std::vector<std::filesystem::path> files;
    std::error_code ec;
    if (std::filesystem::is_directory(p, ec)) {
      for (const auto& e : std::filesystem::directory_iterator(p))
        if (e.is_regular_file()) files.push_back(e.path());
      std::sort(files.begin(), files.end());  // directory order differs between machines
    } else {
      files.push_back(p);
    }
    for (const auto& f : files) {
      Input in;
      if (!read_input(f, in)) {
        std::fprintf(stderr, "%s: cannot read %s\n", target.c_str(), f.c_str());
        return 2;
      }
      corpus.push_back(std::move(in));
    }
  }
  if (corpus.empty()) {
    std::fprintf(stderr, "%s: no inputs in the given paths\n", target.c_str());
    return 2;
  }

  auto start = std::chrono::steady_clock::now();
  for (const auto& in : corpus) run_one(in);
  ota32::SplitMix64 rng(seed);
  Input current;
  for (uint64_t it = 0; it < iterations; ++it) {
    // Mostly a fresh copy of a corpus entry; sometimes keep stacking on the last mutant (deeper changes).
    if (current.empty() || rng.below(4) != 0) current = corpus[rng.below(corpus.size())];
    size_t stack = 1 + rng.below(4);
    for (size_t m = 0; m < stack; ++m) mutate_once(current, corpus[rng.below(corpus.size())], rng, max_len);
    run_one(current);
  }
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("%s: %zu corpus inputs and %llu mutations (seed %llu) in %.2f s, no failure\n", target.c_str(),
              corpus.size(), static_cast<unsigned long long>(iterations),
              static_cast<unsigned long long>(seed), secs);
  return 0;
}
