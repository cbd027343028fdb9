#include "format/secure_boot_v2_trust.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "core/crc32.h"
#include "core/file_io.h"
#include "format/app_image.h"
#include "format/secure_boot_v2_crypto.h"
#include "test_support.h"

namespace ota32 {
namespace {

using ::testing::HasSubstr;

// The shared sample: an ESP32 bootloader signed by espsecure v4.8.1 with an RSA-3072 key.
struct Sample {
  Bytes signed_file, unsigned_file;
  SbPublicKey key;
  size_t image_len = 0;
};

Sample load_sample() {
  auto dir = testing::testdata_dir() / "secure";
  Sample s;
  s.signed_file = read_file(dir / "bootloader_signed_v2.bin").value();
  s.unsigned_file = read_file(dir / "bootloader_unsigned_v2.bin").value();
  s.key = sb_public_key_from_pem(read_file(dir / "rsa_secure_boot_signing_pubkey.pem").value()).value();
  s.image_len = parse_image(s.signed_file).value().image_size;
  return s;
}

// Another key: a P-256 point (the bytes only need to differ; nothing verifies with it).
SbPublicKey other_key() {
  SbPublicKey k;
  k.scheme = SigScheme::ecdsa256;
  k.stored.assign(65, 0x42);
  k.stored[0] = 2;
  return k;
}

TEST(SignedAppCheck, TrustedKeyVerifiesAndOthersDoNot) {
  OTA32_REQUIRE_TESTDATA();
  Sample s = load_sample();
  const SbPublicKey both[] = {other_key(), s.key};
  auto ok = check_signed_app(s.signed_file, s.image_len, both);
  EXPECT_EQ(ok.verdict, SignedAppVerdict::verified) << ok.reason;
  EXPECT_EQ(ok.block, 0u);
  EXPECT_EQ(ok.reason, "block 0 verified with trusted key #2");

  const SbPublicKey only_other[] = {other_key()};
  auto untrusted = check_signed_app(s.signed_file, s.image_len, only_other);
  EXPECT_EQ(untrusted.verdict, SignedAppVerdict::untrusted);
  EXPECT_EQ(verdict_code(untrusted.verdict), "untrusted_signature");
  EXPECT_THAT(untrusted.reason, HasSubstr("no signature block matches the trusted keys: block 0 is signed by "
                                          "the rsa3072 key with digest " +
                                          to_hex(key_digest(s.key))));
}

TEST(SignedAppCheck, UnsignedImages) {
  OTA32_REQUIRE_TESTDATA();
  Sample s = load_sample();
  const SbPublicKey keys[] = {s.key};
  // No sector after the image at all.
  auto none = check_signed_app(s.unsigned_file, s.image_len, keys);
  EXPECT_EQ(none.verdict, SignedAppVerdict::unsigned_image);
  EXPECT_EQ(verdict_code(none.verdict), "unsigned");
  EXPECT_EQ(
      none.reason,
      "the image is not signed: it ends at 0x7710 and has no Secure Boot v2 signature sector at 0x8000 (the "
      "file has 32768 bytes, a signed one at least 36864)");
  // An erased sector (0xFF) where the blocks would be.
  Bytes erased = s.unsigned_file;
  erased.resize(erased.size() + kSigSectorSize, 0xFF);
  auto empty = check_signed_app(erased, s.image_len, keys);
  EXPECT_EQ(empty.verdict, SignedAppVerdict::unsigned_image);
  EXPECT_EQ(empty.reason, "the image is not signed: the signature sector at 0x8000 holds no signature block");
}

TEST(SignedAppCheck, TamperedImagesAreRefusedNamingWhy) {
  OTA32_REQUIRE_TESTDATA();
  Sample s = load_sample();
  const SbPublicKey keys[] = {s.key};
  const size_t sector = 0x8000;

  Bytes code = s.signed_file;  // one code byte
  code[0x100] ^= 0x01;
  auto c = check_signed_app(code, s.image_len, keys);
  EXPECT_EQ(c.verdict, SignedAppVerdict::bad_signature);
  EXPECT_THAT(c.reason, HasSubstr("block 0 (trusted key #1) signed other contents"));

  Bytes sig = s.signed_file;  // one signature byte: the block's CRC no longer matches
  sig[sector + 812 + 7] ^= 0x01;
  auto d = check_signed_app(sig, s.image_len, keys);
  EXPECT_EQ(d.verdict, SignedAppVerdict::damaged_block);
  EXPECT_EQ(verdict_code(d.verdict), "damaged_signature_block");
  EXPECT_THAT(d.reason, HasSubstr("damaged signature block: block 0: "));

  // The same byte with the CRC made right again: a valid block whose signature does not verify.
  store_le32(&sig[sector + kSigBlockCrcLength],
             crc32_le(0, ByteView(sig).subspan(sector, kSigBlockCrcLength)));
  auto b = check_signed_app(sig, s.image_len, keys);
  EXPECT_EQ(b.verdict, SignedAppVerdict::bad_signature) << b.reason;
  EXPECT_THAT(b.reason, HasSubstr("the signature does not verify: block 0 (trusted key #1): "));
}

}  // namespace
}  // namespace ota32
