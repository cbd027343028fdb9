// The bootloader with Secure Boot v2 on: each app's signature block checked against the eFuse key digests
// (ESP-IDF v5.5.5's log lines), falling back to another slot or refusing to boot.
#include <gtest/gtest.h>

#include <algorithm>

#include "boot/bootloader.h"
#include "boot_test_util.h"
#include "flash/nor_flash.h"
#include "format/secure_boot_v2_crypto.h"
#include "sign/host_signer.h"
#include "test_images.h"

namespace ota32 {
namespace {

using testing::has_line;
using testing::put;
using testing::seed_bootloader;
using testing::seed_factory_app;
using testing::seed_flash;
using testing::seed_ota_app;
using testing::seed_partition_table;
using testing::texts;

const BlockSigner& key(SigScheme s, int n = 0) {
  static std::map<std::pair<SigScheme, int>, BlockSigner> keys;
  auto it = keys.find({s, n});
  if (it == keys.end()) {
    auto pem = generate_signing_key(s);
    EXPECT_TRUE(pem);
    auto k = load_signing_key(as_bytes(*pem));
    EXPECT_TRUE(k);
    it = keys.emplace(std::pair{s, n}, *k).first;
  }
  return it->second;
}

Bytes signed_with(const Bytes& image, const BlockSigner& k) {
  std::vector<BlockSigner> one{k};
  auto r = sign_image(image, one, {});
  EXPECT_TRUE(r);
  return r->output;
}

// seed_flash(): factory at 0x10000, ota_0 at 0x110000, ota_1 at 0x210000; no otadata (factory boots first).
BootEfuse efuse_trusting(std::initializer_list<const BlockSigner*> keys) {
  BootEfuse e{100, 0, 32};
  e.secure_boot.enabled = true;
  size_t i = 0;
  for (const auto* k : keys) e.secure_boot.key_digests[i++] = key_digest(k->key);
  return e;
}

BootResult boot(Flash& f, const BootEfuse& e) {
  auto r = run_bootloader(f, *find_chip("esp32"), {}, e);
  EXPECT_TRUE(r) << r.error().message();
  return std::move(*r);
}

TEST(SecureBoot, SignedAppBootsWithItsKeyDigestBurned) {
  const auto& k = key(SigScheme::rsa3072);
  auto f = seed_flash(signed_with(seed_factory_app(), k));
  auto r = boot(*f, efuse_trusting({&k}));
  ASSERT_TRUE(r.app) << r.failure;
  EXPECT_EQ(r.app->index, kFactoryIndex);
  auto t = texts(r);
  auto at = std::find(t.begin(), t.end(), "I esp_image: Verifying image signature...");
  ASSERT_NE(at, t.end());
  EXPECT_EQ(*(at + 1), "I secure_boot_v2: Verifying with RSA-PSS...");
  EXPECT_EQ(*(at + 2), "I secure_boot_v2: Signature verified successfully!");
  EXPECT_EQ(*(at + 3), "I boot: Loaded app from partition at offset 0x10000");
}

TEST(SecureBoot, OffMeansUnsignedAppsBootUnchecked) {
  auto f = seed_flash(seed_factory_app());
  BootEfuse e{100, 0, 32};
  auto r = boot(*f, e);
  ASSERT_TRUE(r.app);
  EXPECT_FALSE(has_line(r, "I esp_image: Verifying image signature..."));
}

TEST(SecureBoot, WrongKeyAndUnsignedSlotsFallBackToTheSignedOne) {
  const auto& k = key(SigScheme::rsa3072);
  const auto& other = key(SigScheme::rsa3072, 1);
  auto f = seed_flash(signed_with(seed_factory_app(), other));  // signed by an untrusted key
  put(*f, 0x110000, seed_ota_app("2"));                         // not signed at all
  put(*f, 0x210000, signed_with(seed_ota_app("3"), k));
  auto r = boot(*f, efuse_trusting({&k}));
  ASSERT_TRUE(r.app) << r.failure;
  EXPECT_EQ(r.app->index, 1);
  EXPECT_TRUE(has_line(r, "E secure_boot_v2: Secure Boot V2 verification failed."));
  EXPECT_TRUE(has_line(r, "W esp_image: image valid, signature bad"));
  EXPECT_TRUE(has_line(r, "E secure_boot_v2: No signature block generated for valid scheme"));
  EXPECT_TRUE(has_line(r, "E boot: Factory app partition is not bootable"));
  EXPECT_TRUE(has_line(r, "E boot: OTA app partition slot 0 is not bootable"));
  EXPECT_TRUE(has_line(r, "I boot: Loaded app from partition at offset 0x210000"));
}

TEST(SecureBoot, RevokedKeyAndOtherSchemeRefuseToBoot) {
  const auto& k = key(SigScheme::rsa3072);
  const auto& k2 = key(SigScheme::rsa3072, 1);
  auto f = seed_flash(signed_with(seed_factory_app(), k));
  put(*f, 0x110000, signed_with(seed_ota_app("2"), key(SigScheme::ecdsa256)));
  BootEfuse e = efuse_trusting({&k, &k2});
  e.secure_boot.revoked[0] = true;
  auto r = boot(*f, e);
  EXPECT_FALSE(r.app);
  EXPECT_TRUE(has_line(r,
                       "E secure_boot_v2: RSA signing scheme selected but signature block generated for "
                       "ECDSA scheme"));
  EXPECT_TRUE(has_line(r, "E boot: No bootable app partitions in the partition table"));
  // The same flash boots while key 0 is trusted.
  e.secure_boot.revoked[0] = false;
  EXPECT_TRUE(boot(*f, e).app);
}

TEST(SecureBoot, NoDigestBurnedAndTamperedCode) {
  const auto& k = key(SigScheme::rsa3072);
  Bytes app = signed_with(seed_factory_app(), k);
  auto f = seed_flash(app);
  BootEfuse none{100, 0, 32};
  none.secure_boot.enabled = true;
  auto r = boot(*f, none);
  EXPECT_FALSE(r.app);
  EXPECT_TRUE(has_line(r, "E secure_boot_v2: Could not read eFuse secure boot digests!"));
  // A code byte changed and the image's checksum and hash recomputed: only the signature catches it.
  Bytes bad = seed_factory_app("1", 0, 2);
  bad.resize(app.size() - kSigSectorSize, 0xFF);
  bad.insert(bad.end(), app.end() - kSigSectorSize, app.end());
  put(*f, 0x10000, bad);
  r = boot(*f, efuse_trusting({&k}));
  EXPECT_FALSE(r.app);
  EXPECT_TRUE(has_line(r, "W esp_image: image valid, signature bad"));
}

}  // namespace
}  // namespace ota32
