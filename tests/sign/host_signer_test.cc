// Host signing (OpenSSL) checked by the device-side verifier (mbedTLS) and against the espsecure-signed
// bootloader of ../shared: our sector has the same structure as espsecure's for the same input.
#include "sign/host_signer.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include <algorithm>
#include <map>

#include "core/file_io.h"
#include "format/secure_boot_v2_crypto.h"
#include "test_support.h"

namespace ota32 {
namespace {

// One key per scheme for the whole suite (RSA-3072 generation takes a while).
const std::string& key_pem(SigScheme s) {
  static std::map<SigScheme, std::string> keys;
  auto it = keys.find(s);
  if (it == keys.end()) {
    auto pem = generate_signing_key(s);
    EXPECT_TRUE(pem) << pem.error().message();
    it = keys.emplace(s, *pem).first;
  }
  return it->second;
}

BlockSigner signer(SigScheme s) {
  auto k = load_signing_key(as_bytes(key_pem(s)));
  EXPECT_TRUE(k) << k.error().message();
  return *k;
}

std::filesystem::path secure_dir() { return testing::testdata_dir() / "secure"; }

class EveryScheme : public ::testing::TestWithParam<SigScheme> {};

TEST_P(EveryScheme, SignedImageVerifiesWithItsKeyOnly) {
  SigScheme s = GetParam();
  EXPECT_NE(key_pem(s).find(s == SigScheme::rsa3072 ? "BEGIN RSA PRIVATE KEY" : "BEGIN EC PRIVATE KEY"),
            std::string::npos);
  BlockSigner k = signer(s);
  EXPECT_EQ(k.key.scheme, s);
  Bytes image(5000, 0x5A);
  std::vector<BlockSigner> one{k};
  auto out = sign_image(image, one, {});
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(out->output.size(), 3 * kSigSectorSize);
  auto report = verify_signed_image(out->output, k.key);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->matched, 0u) << report->blocks[0].why;
  // The public key PEM gives the same block key (and so the same eFuse digest).
  auto pub = public_key_pem(as_bytes(key_pem(s)));
  ASSERT_TRUE(pub);
  EXPECT_NE(pub->find("BEGIN PUBLIC KEY"), std::string::npos);
  auto from_pub = sb_public_key_from_pem(as_bytes(*pub));
  ASSERT_TRUE(from_pub);
  EXPECT_EQ(key_digest(*from_pub), key_digest(k.key));
  // Another scheme's key does not verify it.
  SigScheme other = s == SigScheme::rsa3072 ? SigScheme::ecdsa256 : SigScheme::rsa3072;
  auto wrong = verify_signed_image(out->output, signer(other).key);
  ASSERT_TRUE(wrong);
  EXPECT_FALSE(wrong->matched);
}

INSTANTIATE_TEST_SUITE_P(Schemes, EveryScheme,
                         ::testing::Values(SigScheme::rsa3072, SigScheme::ecdsa192, SigScheme::ecdsa256,
                                           SigScheme::ecdsa384),
                         [](const auto& info) { return std::string(scheme_name(info.param)); });

TEST(HostSigner, SharedUnsignedBootloaderGetsEspsecuresSectorStructure) {
  OTA32_REQUIRE_TESTDATA();
  auto in = read_file(secure_dir() / "bootloader_unsigned_v2.bin");
  auto theirs = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(in && theirs);
  std::vector<BlockSigner> one{signer(SigScheme::rsa3072)};
  auto ours = sign_image(*in, one, {});
  ASSERT_TRUE(ours);
  EXPECT_EQ(ours->padded_by, 0u);
  ASSERT_EQ(ours->output.size(), theirs->size());
  size_t s = theirs->size() - kSigSectorSize;
  // Same data, same header and image digest, same exponent, same zero padding and 0xFF filler; only n, rinv,
  // mdash, the signature and the CRC (the key's) differ.
  EXPECT_TRUE(std::equal(theirs->begin(), theirs->begin() + s, ours->output.begin()));
  auto same = [&](size_t from, size_t to) {
    return std::equal(theirs->begin() + s + from, theirs->begin() + s + to, ours->output.begin() + s + from);
  };
  EXPECT_TRUE(same(0, 36));       // e7 02 00 00 + image digest
  EXPECT_TRUE(same(420, 424));    // e = 65537
  EXPECT_TRUE(same(1200, 4096));  // block padding and filler
  auto report = verify_signed_image(ours->output, one[0].key);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->matched, 0u);
}

TEST(HostSigner, PrecomputedSignatures) {
  Bytes image(kSigSectorSize, 0x11);
  Bytes digest = ota32::image_digest(SigScheme::rsa3072, image);
  // RSA: the raw big-endian PSS signature, as an HSM returns it.
  BlockSigner rsa = signer(SigScheme::rsa3072);
  auto le = rsa.sign(digest);
  ASSERT_TRUE(le);
  Bytes be(le->rbegin(), le->rend());
  auto pub = public_key_pem(as_bytes(key_pem(SigScheme::rsa3072)));
  ASSERT_TRUE(pub);
  auto pre = precomputed_signer(as_bytes(*pub), be);
  ASSERT_TRUE(pre);
  std::vector<BlockSigner> one{*pre};
  auto out = sign_image(image, one, {.precomputed = true});
  ASSERT_TRUE(out) << out.error().message();
  auto report = verify_signed_image(out->output, rsa.key);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->matched, 0u);
  // Over other data it is refused before anything is written.
  Bytes other(kSigSectorSize, 0x22);
  auto bad = sign_image(other, one, {.precomputed = true});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::bad_signature);
  EXPECT_NE(bad.error().message().find("Signature verification failed"), std::string::npos);

  // ECDSA: DER (r, s).
  BlockSigner ec = signer(SigScheme::ecdsa256);
  auto stored = ec.sign(digest);
  ASSERT_TRUE(stored);
  Bytes r(stored->begin(), stored->begin() + 32), s(stored->begin() + 32, stored->end());
  std::reverse(r.begin(), r.end());
  std::reverse(s.begin(), s.end());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  ECDSA_SIG_set0(sig, BN_bin2bn(r.data(), 32, nullptr), BN_bin2bn(s.data(), 32, nullptr));
  unsigned char* der = nullptr;
  int n = i2d_ECDSA_SIG(sig, &der);
  Bytes der_bytes(der, der + n);
  OPENSSL_free(der);
  ECDSA_SIG_free(sig);
  auto ec_pub = public_key_pem(as_bytes(key_pem(SigScheme::ecdsa256)));
  auto ec_pre = precomputed_signer(as_bytes(*ec_pub), der_bytes);
  ASSERT_TRUE(ec_pre);
  EXPECT_TRUE(ec_pre->sign(digest));
  EXPECT_FALSE(precomputed_signer(as_bytes(*ec_pub), Bytes{1, 2, 3}));
  EXPECT_FALSE(precomputed_signer(as_bytes(*pub), Bytes(100, 0)));
}

TEST(HostSigner, KeyErrors) {
  auto junk = load_signing_key(as_bytes("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"));
  ASSERT_FALSE(junk);
  EXPECT_EQ(junk.error().code(), ErrorCode::invalid_argument);
  // A public key cannot sign.
  auto pub = public_key_pem(as_bytes(key_pem(SigScheme::ecdsa256)));
  ASSERT_TRUE(pub);
  EXPECT_FALSE(load_signing_key(as_bytes(*pub)));
  // RSA-2048 is not a Secure Boot v2 key.
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  ASSERT_NE(k, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, k, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string pem(data, static_cast<size_t>(n));
  BIO_free(bio);
  EVP_PKEY_free(k);
  auto r = load_signing_key(as_bytes(pem));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "the RSA key has 2048 bits; Secure Boot v2 takes RSA-3072 only");
}

}  // namespace
}  // namespace ota32
