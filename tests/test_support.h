// Helpers shared by the test suites.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

namespace ota32::testing {

// ../shared next to the checkout: reference data from real ESP-IDF builds. Absent in a user's clone.
inline std::filesystem::path shared_dir() { return OTA32_SHARED_DIR; }
inline std::filesystem::path testdata_dir() { return shared_dir() / "testdata"; }

// The directory where the build puts executables (the ota32 binary, ota32-serve).
inline std::filesystem::path binary_dir() { return OTA32_BINARY_DIR; }

// A free TCP port on 127.0.0.1 (bound, read back and released; good enough for tests), or -1.
int free_port();

// A fresh empty directory for one test, removed at destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace ota32::testing

// Skips the test with a message when ../shared/testdata is absent (a user's own clone).
#define OTA32_REQUIRE_TESTDATA()                                                                  \
  do {                                                                                            \
    if (!std::filesystem::exists(::ota32::testing::testdata_dir()))                               \
      GTEST_SKIP() << "reference data not found at " << ::ota32::testing::testdata_dir().string() \
                   << " (the shared/ folder beside the checkout); skipping";                      \
  } while (0)
