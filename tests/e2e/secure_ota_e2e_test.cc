// Issue 21's device side end to end with the real binaries: a virtual ESP32 with Secure Boot v2 on
// (`ota32 device efuse ... burn-key-digest / enable-secure-boot`) takes only OTA images signed with a burnt
// key (`ota32 sign`), served by `ota32 serve`; a wrongly signed or unsigned image is refused with one line
// and exit 1, and the running image keeps booting. With anti-rollback, a lower secure_version is refused.
#include <gtest/gtest.h>

#include <algorithm>

#include "e2e/run_process.h"
#include "e2e/seed_device.h"
#include "e2e/serve_process.h"
#include "test_support.h"

namespace ota32 {
namespace {

namespace fs = std::filesystem;
using testing::run_ota32;
using testing::run_ota32_ok;

class SecureOta : public ::testing::Test {
 protected:
  fs::path image(const std::string& version, const std::string& secure_version = "0") {
    fs::path out = dir_ / ("v" + version + ".bin");
    run_ota32_ok({"image", "make", "-o", out.string(), "--chip", "esp32", "--project", "simple_ota",
                  "--version", version, "--size", "120K", "--secure-version", secure_version});
    return out;
  }
  fs::path signed_image(const fs::path& in, const fs::path& key, const fs::path& out) {
    run_ota32_ok({"sign", "sign", "--key", key.string(), in.string(), "-o", out.string()});
    return out;
  }
  fs::path key(const std::string& name) {
    fs::path k = dir_ / (name + ".pem");
    run_ota32_ok({"sign", "key", "--scheme", "rsa3072", "-o", k.string()});
    return k;
  }
  std::unique_ptr<testing::ServeProcess> serve() {
    std::string why;
    auto s = testing::ServeProcess::start(
        {"--dir", (dir_ / "www").string(), "--data", (dir_ / "data").string(), "--access-log", "off"}, dir_,
        &why);
    EXPECT_TRUE(s) << why;
    return s;
  }
  testing::ProcessResult ota(const fs::path& dev, testing::ServeProcess& s, const std::string& file) {
    return run_ota32(
        {"device", "ota", dev.string(), s.url("/" + file), "--ca", (dir_ / "data" / "ca_cert.pem").string()});
  }

  testing::TempDir tmp_;
  fs::path dir_ = tmp_.path();
};

TEST_F(SecureOta, OnlyImagesSignedWithABurntKeyAreSelected) {
  OTA32_REQUIRE_TESTDATA();
  const fs::path a = key("a"), b = key("b");
  fs::create_directories(dir_ / "www");
  const fs::path dev = dir_ / "dev";
  testing::flash_seed_device(dir_, dev, signed_image(image("1"), a, dir_ / "v1-signed.bin"), {});
  run_ota32_ok({"device", "efuse", dev.string(), "burn-key-digest", a.string()});
  run_ota32_ok({"device", "efuse", dev.string(), "enable-secure-boot"});
  EXPECT_EQ(testing::booted_app(dev), "factory 1");
  signed_image(image("2"), a, dir_ / "www" / "good.bin");
  signed_image(image("3"), b, dir_ / "www" / "other-key.bin");
  fs::copy_file(image("4"), dir_ / "www" / "unsigned.bin");
  auto server = serve();
  ASSERT_TRUE(server);

  for (const char* bad : {"other-key.bin", "unsigned.bin"}) {
    auto r = ota(dev, *server, bad);
    EXPECT_EQ(r.exit_code, 1) << bad << ": " << r.out;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_NE(r.err.find("new image failed verification"), std::string::npos) << r.err;
    EXPECT_EQ(testing::booted_app(dev), "factory 1") << bad;
  }
  auto wrong = ota(dev, *server, "other-key.bin");
  EXPECT_NE(wrong.err.find("Secure Boot v2 signature: no signature block is made with a key whose digest is "
                           "burnt"),
            std::string::npos)
      << wrong.err;
  EXPECT_NE(wrong.out.find("secure_boot_v2: Take trusted digest key(s) from eFuse block(s)"),
            std::string::npos)
      << wrong.out;
  EXPECT_NE(wrong.out.find("esp_image: image valid, signature bad"), std::string::npos) << wrong.out;

  auto good = ota(dev, *server, "good.bin");
  ASSERT_EQ(good.exit_code, 0) << good.err;
  EXPECT_NE(good.out.find("secure_boot_v2_rsa: Signature verified successfully!"), std::string::npos)
      << good.out;
  EXPECT_EQ(testing::booted_app(dev), "ota_0 2");
}

TEST_F(SecureOta, SignedAppsWithoutSecureBootTrustTheRunningAppsKey) {
  OTA32_REQUIRE_TESTDATA();
  const fs::path a = key("a"), b = key("b");
  fs::create_directories(dir_ / "www");
  const fs::path dev = dir_ / "dev";
  testing::flash_seed_device(dir_, dev, signed_image(image("1"), a, dir_ / "v1-signed.bin"),
                             {"--signed-apps"});
  signed_image(image("2"), b, dir_ / "www" / "other-key.bin");
  signed_image(image("3"), a, dir_ / "www" / "same-key.bin");
  auto server = serve();
  ASSERT_TRUE(server);
  auto r = ota(dev, *server, "other-key.bin");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("secure_boot_v2: Take trusted digest key(s) from running app"), std::string::npos)
      << r.out;
  EXPECT_EQ(testing::booted_app(dev), "factory 1");
  auto ok = ota(dev, *server, "same-key.bin");
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_EQ(testing::booted_app(dev), "ota_0 3");
  // `device set` turns the setting off: an unsigned build takes any image.
  testing::ProcessResult set;
  run_ota32_ok({"device", "set", dev.string(), "signed_apps=false"}, &set);
  EXPECT_NE(set.out.find("bootloader.signed_apps_no_secure_boot"), std::string::npos) << set.out;
  auto any = ota(dev, *server, "other-key.bin");
  EXPECT_EQ(any.exit_code, 0) << any.err;
  EXPECT_EQ(any.out.find("Verifying image signature"), std::string::npos) << any.out;
}

// Anti-rollback end to end: a newer app's confirmation burns the counter
// (esp_ota_mark_app_valid_cancel_rollback), `device efuse summary` shows it, and an image with a lower
// secure_version is refused from its first bytes.
TEST_F(SecureOta, AntiRollbackBurnsOnConfirmAndRefusesADowngrade) {
  OTA32_REQUIRE_TESTDATA();
  fs::create_directories(dir_ / "www");
  const fs::path dev = dir_ / "dev";
  testing::flash_seed_device(dir_, dev, image("1", "1"), {"--anti-rollback", "--secure-version", "1"});
  fs::copy_file(image("2", "2"), dir_ / "www" / "v2.bin");
  fs::copy_file(image("3", "1"), dir_ / "www" / "v3-old-secure-version.bin");
  auto server = serve();
  ASSERT_TRUE(server);
  auto up = ota(dev, *server, "v2.bin");
  ASSERT_EQ(up.exit_code, 0) << up.err;
  // The new app boots (PENDING_VERIFY), passes its self-test and confirms itself: VALID, then the eFuse.
  std::string out = testing::run_device(dev);
  EXPECT_NE(out.find("efuse: Anti-rollback is set. eFuse field is updated(2)."), std::string::npos) << out;
  EXPECT_EQ(testing::booted_app(dev), "ota_0 2");
  testing::ProcessResult summary;
  run_ota32_ok({"device", "efuse", dev.string(), "summary"}, &summary);
  EXPECT_NE(summary.out.find("SECURE_VERSION             = 2 (of 32 bits)"), std::string::npos)
      << summary.out;

  auto down = ota(dev, *server, "v3-old-secure-version.bin");
  EXPECT_EQ(down.exit_code, 1);
  EXPECT_NE(down.err.find("New firmware security version is less than eFuse programmed, 1 < 2"),
            std::string::npos)
      << down.err;
  EXPECT_EQ(std::count(down.err.begin(), down.err.end(), '\n'), 1) << down.err;
  EXPECT_EQ(testing::booted_app(dev), "ota_0 2");
}

}  // namespace
}  // namespace ota32
