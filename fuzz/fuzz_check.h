// What a fuzz target asserts. A failed check prints the condition and the target's message and aborts, which
// both libFuzzer and the replay driver report as a crash (the driver also saves the input). Unlike assert(),
// it is never compiled out: the GCC smoke runs in RelWithDebInfo (NDEBUG) too.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string_view>

// The target's entry point, as libFuzzer calls it; the replay driver calls the same function.
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                            \
  do {                                                                                   \
    if (!(cond)) {                                                                       \
      std::fprintf(stderr, "%s:%d: FUZZ_CHECK(%s) failed: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                                 \
      std::fprintf(stderr, "\n");                                                        \
      std::abort();                                                                      \
    }                                                                                    \
  } while (0)

namespace ota32::fuzz {

// Splits a fuzz input into small option values taken from its front and the payload behind them, so that
// one input chooses both the options and the bytes parsed (a byte past the end reads as 0).
class InputSplitter {
 public:
  InputSplitter(const uint8_t* data, size_t size) : data_(data, size) {}
  uint8_t take_u8() {
    if (data_.empty()) return 0;
    uint8_t v = data_.front();
    data_ = data_.subspan(1);
    return v;
  }
  uint32_t take_u32() {
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(take_u8()) << (8 * i);
    return v;
  }
  // The rest up to the next "\n--\n" separator (or the end), consumed with the separator.
  std::string_view take_part() {
    std::string_view all(reinterpret_cast<const char*>(data_.data()), data_.size());
    auto sep = all.find("\n--\n");
    std::string_view part = all.substr(0, sep);
    data_ = data_.subspan(sep == std::string_view::npos ? data_.size() : sep + 4);
    return part;
  }
  std::span<const uint8_t> rest() const { return data_; }

 private:
  std::span<const uint8_t> data_;
};

}  // namespace ota32::fuzz
