// The agent on a signed-apps build: esp_ota_end / esp_ota_set_boot_partition check a downloaded image's
// Secure Boot v2 signature against the eFuse key digests (SECURE_BOOT_EN) or the running app's key
// (CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT), with ESP-IDF v5.5.5's lines; a bad one is never selected.
// Also the anti-rollback check of esp_ota_set_boot_partition.
#include <gtest/gtest.h>

#include <map>

#include "agent/ota_writer.h"
#include "core/crc32.h"
#include "core/hash.h"
#include "flash/nor_flash.h"
#include "format/app_image.h"
#include "format/image_make.h"
#include "format/secure_boot_v2_crypto.h"
#include "ota_ops/ota_test_layout.h"
#include "sign/host_signer.h"

namespace ota32::agent {
namespace {

using ota32::testing::CollectLog;
using ota32::testing::get_seed_otadata;
using ota32::testing::seed_layout;

const BlockSigner& key(int n) {
  static std::map<int, BlockSigner> keys;
  auto it = keys.find(n);
  if (it == keys.end()) {
    auto pem = generate_signing_key(SigScheme::rsa3072);
    EXPECT_TRUE(pem);
    auto k = load_signing_key(as_bytes(*pem));
    EXPECT_TRUE(k);
    it = keys.emplace(n, *k).first;
  }
  return it->second;
}

Bytes make_image(std::string version, uint32_t secure_version = 0) {
  MakeImageOptions o;
  o.chip = find_chip("esp32");
  o.project = "simple_ota";
  o.version = std::move(version);
  o.size = 80 * 1024;
  o.secure_version = secure_version;
  o.seed = 7 + o.version.size();
  auto img = make_app_image(o);
  EXPECT_TRUE(img) << img.error().message();
  return *img;
}

Bytes signed_with(const Bytes& image, const BlockSigner& k) {
  std::vector<BlockSigner> one{k};
  auto r = sign_image(image, one, {});
  EXPECT_TRUE(r);
  return r->output;
}

class SignedOtaTest : public ::testing::Test {
 protected:
  SignedOtaTest() : flash_(4u << 20), table_(seed_layout()) {}

  OtaWriterOptions options(bool secure_boot, std::initializer_list<int> trusted = {}) {
    OtaWriterOptions o;
    o.chip = find_chip("esp32");
    SignedAppsOptions s;
    s.secure_boot_enabled = secure_boot;
    size_t i = 0;
    for (int k : trusted) s.efuse.key_digests[i++] = key_digest(key(k).key);
    s.efuse.enabled = secure_boot;
    o.signed_apps = s;
    return o;
  }
  // The whole esp_https_ota tail: begin, write, end, set_boot_partition; the first error.
  Result<VerifiedImage> install(const Bytes& img, OtaWriterOptions o) {
    OTA32_ASSIGN(auto w, OtaWriter::begin(flash_, table_, *table_.find("ota_0"), table_.factory(), o, &log_));
    for (size_t off = 0; off < img.size(); off += 1024) {
      OTA32_TRY(w->write(ByteView(img).subspan(off, std::min<size_t>(1024, img.size() - off))));
    }
    OTA32_ASSIGN(VerifiedImage v, w->end());
    OTA32_TRY(w->set_boot_partition());
    return v;
  }
  void put_factory(const Bytes& img) {
    ASSERT_TRUE(flash_.erase(0x10000, 0x100000));
    ASSERT_TRUE(flash_.program(0x10000, img));
  }
  bool selected() { return get_seed_otadata(flash_, 0).ota_seq != 0xFFFFFFFF; }

  MemFlash flash_;
  PartitionTable table_;
  CollectLog log_;
};

TEST_F(SignedOtaTest, ImageSignedWithABurntKeyIsSelected) {
  Bytes img = signed_with(make_image("2"), key(1));
  auto v = install(img, options(true, {0, 1}));
  ASSERT_TRUE(v) << v.error().message();
  EXPECT_EQ(v->size, img.size());  // image, padding and the signature sector: the file as served
  EXPECT_EQ(v->sha256, sha256(img));
  EXPECT_TRUE(selected());
  EXPECT_EQ(log_.count("I esp_image: Verifying image signature..."), 2u);  // esp_ota_end + set_boot_partition
  EXPECT_TRUE(log_.has("I secure_boot_v2: Take trusted digest key(s) from eFuse block(s)"));
  EXPECT_TRUE(log_.has("I secure_boot_v2: #0 app key digest == #1 trusted key digest"));
  EXPECT_TRUE(log_.has("I secure_boot_v2: Verifying with RSA-PSS..."));
  EXPECT_TRUE(log_.has("I secure_boot_v2_rsa: Signature verified successfully!"));
}

TEST_F(SignedOtaTest, UnsignedImageIsRefusedWhenSecureBootIsOn) {
  auto v = install(make_image("2"), options(true, {1}));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::corrupt);  // the sector would lie past the bytes received
  EXPECT_FALSE(selected());
}

// An attacker's edit: one code byte changed, the XOR checksum kept (a second bit flipped in the same
// segment) and the appended SHA-256 recomputed, so that only the signature tells.
TEST_F(SignedOtaTest, TamperedCodeByteIsNotSelected) {
  Bytes plain = make_image("2");
  auto parsed = parse_image(plain, "img");
  ASSERT_TRUE(parsed);
  Bytes img = signed_with(plain, key(1));
  const size_t at = parsed->segments[1].data_offset + 16;
  img[at] ^= 0x01;
  img[at + 4] ^= 0x01;
  const size_t hash_at = parsed->image_size - 32;
  Sha256Digest h = sha256(ByteView(img).first(hash_at));
  std::copy(h.begin(), h.end(), img.begin() + static_cast<long>(hash_at));
  auto v = install(img, options(true, {1}));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::bad_signature);
  EXPECT_NE(v.error().message().find("Secure Boot v2 signature"), std::string::npos) << v.error().message();
  EXPECT_TRUE(log_.has("E secure_boot_v2_rsa: Failed mbedtls_rsa_rsassa_pss_verify, err: -17280"));
  EXPECT_TRUE(log_.has("E esp_image: Secure boot signature verification failed"));
  EXPECT_TRUE(log_.has("W esp_image: image valid, signature bad"));
  EXPECT_TRUE(log_.has("E esp_ota_ops: New image failed verification"));
  EXPECT_FALSE(selected());
  // The same byte changed without the checksum fixed: the image check refuses it before the signature.
  log_.lines.clear();
  Bytes clumsy = signed_with(plain, key(1));
  clumsy[at] ^= 0x01;
  auto c = install(clumsy, options(true, {1}));
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message().find("checksum"), std::string::npos) << c.error().message();
  EXPECT_FALSE(selected());
}

TEST_F(SignedOtaTest, TamperedSignatureByteIsNotSelected) {
  Bytes img = signed_with(make_image("2"), key(1));
  const size_t block = img.size() - kSigSectorSize;
  img[block + 812] ^= 0x01;  // the signature's lowest byte; CRC made right so that the signature decides
  store_le32(img.data() + block + kSigBlockCrcLength,
             crc32_le(0, ByteView(img).subspan(block, kSigBlockCrcLength)));
  auto v = install(img, options(true, {1}));
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::bad_signature);
  EXPECT_TRUE(log_.has("E secure_boot_v2_rsa: Failed mbedtls_rsa_rsassa_pss_verify, err: -16640"));
  EXPECT_FALSE(selected());
}

TEST_F(SignedOtaTest, WrongKeyAndRevokedKeyAreNotSelected) {
  Bytes img = signed_with(make_image("2"), key(2));
  auto wrong = install(img, options(true, {1}));
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code(), ErrorCode::bad_signature);
  EXPECT_FALSE(log_.has("app key digest =="));
  EXPECT_FALSE(selected());
  auto o = options(true, {1, 2});
  o.signed_apps->efuse.revoked[1] = true;  // key 2's digest revoked
  auto revoked = install(img, o);
  ASSERT_FALSE(revoked);
  EXPECT_EQ(revoked.error().code(), ErrorCode::bad_signature);
  EXPECT_NE(revoked.error().message().find("not revoked"), std::string::npos) << revoked.error().message();
  EXPECT_FALSE(selected());
  o.signed_apps->efuse.revoked[1] = false;
  ASSERT_TRUE(install(img, o));
  EXPECT_TRUE(selected());
}

TEST_F(SignedOtaTest, WithoutSecureBootTheRunningAppsKeyDecides) {
  put_factory(signed_with(make_image("1"), key(1)));
  auto bad = install(signed_with(make_image("2"), key(2)), options(false));
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::bad_signature);
  EXPECT_TRUE(log_.has("I secure_boot_v2: Take trusted digest key(s) from running app"));
  EXPECT_FALSE(selected());
  auto good = install(signed_with(make_image("2"), key(1)), options(false));
  ASSERT_TRUE(good) << good.error().message();
  EXPECT_TRUE(selected());
  // An unsigned running app has no key to trust.
  put_factory(make_image("1"));
  log_.lines.clear();
  auto none = install(signed_with(make_image("3"), key(1)), options(false));
  ASSERT_FALSE(none);
  EXPECT_TRUE(log_.has("E secure_boot_v2: No signatures were found for the running app"));
  EXPECT_TRUE(log_.has("E secure_boot_v2: Could not read secure boot digests!"));
}

// Anti-rollback (esp_https_ota's header check, advanced_https_ota_example's words): an image whose
// secure_version is below the eFuse counter is refused from its first bytes, before a byte is written.
TEST_F(SignedOtaTest, LowerSecureVersionIsRefusedBeforeAByteIsWritten) {
  Bytes old_contents(8192, 0x5A);
  ASSERT_TRUE(flash_.erase(0x110000, 0x2000));
  ASSERT_TRUE(flash_.program(0x110000, old_contents));
  OtaWriterOptions o;
  o.chip = find_chip("esp32");
  o.efuse_secure_version = 2;
  auto w = OtaWriter::begin(flash_, table_, *table_.find("ota_0"), table_.factory(), o, &log_);
  ASSERT_TRUE(w);
  auto r = (*w)->write(make_image("2", 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::rollback_refused);
  EXPECT_EQ(r.error().message(), "New firmware security version is less than eFuse programmed, 1 < 2");
  Bytes slot(8192);
  ASSERT_TRUE(flash_.read(0x110000, slot));
  EXPECT_EQ(slot, old_contents);  // not even erased
  EXPECT_FALSE(selected());
  // Equal to the counter is fine.
  auto ok = install(make_image("3", 2), o);
  EXPECT_TRUE(ok) << ok.error().message();
}

}  // namespace
}  // namespace ota32::agent
