// Secure Boot v2 format and mbedTLS verification: the espsecure-signed bootloader of ../shared, the worked
// ECDSA P-256 example of the spec (secure-boot-v2.md §10), and every way a signed image can be wrong.
#include "format/secure_boot_v2.h"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>

#include "core/crc32.h"
#include "core/file_io.h"
#include "format/secure_boot_v2_crypto.h"
#include "test_support.h"

namespace ota32 {
namespace {

// esp-app-image.md §10: the 352-byte ESP32-C3 image.
constexpr const char* kSpecImageHex =
    "e902022f00003840ee0000000500030300c70000000000012000003c000100003254cdab010000000000000000000000"
    "312e302e3000000000000000000000000000000000000000000000000000000064656d6f000000000000000000000000"
    "0000000000000000000000000000000031323a30303a303000000000000000004a616e20203120323032350000000000"
    "76352e352e310000000000000000000000000000000000000000000000000000000102030405060708090a0b0c0d0e0f"
    "101112131415161718191a1b1c1d1e1f0000c70010000000000000000000000000000000000000000000000000000000"
    "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
    "0000384008000000130500003c00000000000000000000000000000000000034ab6c1415756ca2a005bc876b57127768"
    "092ca521e5034f222cba13ddbae14559";
// secure-boot-v2.md §10 step 4: bytes 0..0xA4 of its signature block (the rest up to the CRC is zero).
constexpr const char* kSpecBlockHeadHex =
    "e70300001d12877960f06bd9a49af35bcd4e41581092faa15e444d15d29e2b5a286ad49e0219e3db8efde6fb87327b69"
    "f8328bc274ba963a9d182fb7def79ff77706f0e4cfc36431ca7a39aeb006150aea8076b2f9cb40d557811a31a16e07e1"
    "dd234674b48b66a86cfde10e807319b3d2123d9118217bf73ab1e702668763945b8fecc1313aa7adcc3c9f7836399e3f"
    "bde7df748e9b37da3cf268bfcb14053895a9dd019c";

Bytes hex(const char* h) { return *from_hex(h); }

// The spec's signed file: the image padded with 0xFF to 4096, then the sector (block, 0xFF filler).
Bytes spec_signed_file() {
  Bytes file = hex(kSpecImageHex);
  file.resize(kSigSectorSize, 0xFF);
  Bytes block = hex(kSpecBlockHeadHex);
  block.resize(kSigBlockSize, 0);
  store_le32(block.data() + kSigBlockCrcLength, 0x0182867D);
  file.insert(file.end(), block.begin(), block.end());
  file.resize(2 * kSigSectorSize, 0xFF);
  return file;
}

std::filesystem::path secure_dir() { return testing::testdata_dir() / "secure"; }

SbPublicKey shared_pubkey() {
  auto pem = read_file(secure_dir() / "rsa_secure_boot_signing_pubkey.pem");
  EXPECT_TRUE(pem);
  auto key = sb_public_key_from_pem(*pem);
  EXPECT_TRUE(key) << key.error().message();
  return *key;
}

// Recomputes a block's CRC after a test changed a byte of it (so that only the changed field is wrong).
void fix_crc(Bytes& file, size_t block_index) {
  size_t off = file.size() - kSigSectorSize + block_index * kSigBlockSize;
  store_le32(file.data() + off + kSigBlockCrcLength,
             crc32_le(0, ByteView(file).subspan(off, kSigBlockCrcLength)));
}

TEST(SecureBootV2, SpecExampleParsesAndVerifies) {
  Bytes file = spec_signed_file();
  auto view = split_signed_image(file);
  ASSERT_TRUE(view);
  auto slots = parse_signature_sector(view->sector);
  ASSERT_EQ(slots[0].status, SigBlockStatus::valid) << slots[0].describe();
  EXPECT_EQ(slots[1].status, SigBlockStatus::absent);
  EXPECT_EQ(slots[2].status, SigBlockStatus::absent);
  const SignatureBlock& b = *slots[0].block;
  EXPECT_EQ(b.scheme, SigScheme::ecdsa256);
  EXPECT_EQ(to_hex(b.image_digest), "1d12877960f06bd9a49af35bcd4e41581092faa15e444d15d29e2b5a286ad49e");
  EXPECT_EQ(image_digest(b.scheme, view->signed_data), b.image_digest);
  EXPECT_EQ(to_hex(key_digest(b.key)), "3bd48ccb6b7db2f8ed792b4046155afcb12aabccb97ff2465322218232a20fc5");
  EXPECT_TRUE(verify_block_signature(b, b.image_digest));
  // Encoding the parsed block gives back the same 1216 bytes (CRC included).
  Bytes enc = encode_signature_block(b);
  EXPECT_TRUE(std::equal(enc.begin(), enc.end(), view->sector.begin()));
  auto report = verify_signed_image(file, b.key);
  ASSERT_TRUE(report);
  EXPECT_EQ(report->matched, 0u);
}

TEST(SecureBootV2, SharedSignedBootloaderVerifiesWithSharedPubkey) {
  OTA32_REQUIRE_TESTDATA();
  auto file = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(file);
  auto report = verify_signed_image(*file, shared_pubkey());
  ASSERT_TRUE(report) << report.error().message();
  EXPECT_EQ(report->matched, 0u);
  EXPECT_FALSE(report->digest_mismatch);
  EXPECT_EQ(report->blocks[1].slot.status, SigBlockStatus::absent);
  EXPECT_EQ(report->blocks[2].slot.status, SigBlockStatus::absent);
  // The ROM's RSA key form derived from the PEM equals what espsecure stored, byte for byte.
  auto slots = parse_signature_sector(ByteView(*file).last(kSigSectorSize));
  EXPECT_EQ(slots[0].block->key.stored, shared_pubkey().stored);
}

TEST(SecureBootV2, KeyDigestOfSharedPubkeyIsTheEfuseDigest) {
  OTA32_REQUIRE_TESTDATA();
  auto expected = read_file(secure_dir() / "rsa_public_key_digest.bin");
  ASSERT_TRUE(expected);
  auto d = key_digest(shared_pubkey());
  EXPECT_EQ(Bytes(d.begin(), d.end()), *expected);
}

TEST(SecureBootV2, TamperedCodeByteIsADigestMismatch) {
  Bytes file = spec_signed_file();
  file[0x128] ^= 0x01;  // segment 1's code
  auto slots = parse_signature_sector(ByteView(file).last(kSigSectorSize));
  auto report = verify_signed_image(file, slots[0].block->key);
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->matched);
  EXPECT_EQ(report->digest_mismatch, 0u);
  EXPECT_NE(report->blocks[0].why.find("the image changed after signing"), std::string::npos)
      << report->blocks[0].why;
}

TEST(SecureBootV2, TamperedSignatureByte) {
  Bytes file = spec_signed_file();
  auto key = parse_signature_sector(ByteView(file).last(kSigSectorSize))[0].block->key;
  file[kSigSectorSize + 101] ^= 0x01;  // r's lowest byte: the block CRC no longer matches
  auto slots = parse_signature_sector(ByteView(file).last(kSigSectorSize));
  EXPECT_EQ(slots[0].status, SigBlockStatus::bad_crc);
  EXPECT_NE(slots[0].describe().find("block CRC 0x0182867d stored"), std::string::npos)
      << slots[0].describe();
  auto report = verify_signed_image(file, key);
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->matched);
  // With the CRC made right again, the signature itself fails.
  fix_crc(file, 0);
  report = verify_signed_image(file, key);
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->matched);
  EXPECT_EQ(report->blocks[0].why, "the ECDSA signature does not verify");
}

TEST(SecureBootV2, WrongKeyNamesBothDigests) {
  OTA32_REQUIRE_TESTDATA();
  Bytes file = spec_signed_file();
  auto report = verify_signed_image(file, shared_pubkey());
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->matched);
  EXPECT_FALSE(report->blocks[0].key_matches);
  EXPECT_NE(report->blocks[0].why.find("signed by another key (ecdsa256 key digest 3bd48ccb"),
            std::string::npos)
      << report->blocks[0].why;
  EXPECT_NE(report->blocks[0].why.find("cb2791a3"), std::string::npos);
}

TEST(SecureBootV2, DamagedRsaKeyFieldsFailLikeTheRom) {
  OTA32_REQUIRE_TESTDATA();
  auto file = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(file);
  auto slots = parse_signature_sector(ByteView(*file).last(kSigSectorSize));
  SignatureBlock b = *slots[0].block;
  b.key.stored[776 - 1] ^= 0x80;  // mdash
  auto v = verify_block_signature(b, b.image_digest);
  ASSERT_FALSE(v);
  EXPECT_EQ(v.error().code(), ErrorCode::bad_signature);
}

TEST(SecureBootV2, UnsignedAndUnalignedFiles) {
  OTA32_REQUIRE_TESTDATA();
  auto unsigned_bl = read_file(secure_dir() / "bootloader_unsigned_v2.bin");
  ASSERT_TRUE(unsigned_bl);
  auto report = verify_signed_image(*unsigned_bl, shared_pubkey());
  ASSERT_TRUE(report);
  EXPECT_FALSE(report->matched);
  for (const auto& c : report->blocks) EXPECT_NE(c.slot.status, SigBlockStatus::valid);
  Bytes odd(352, 0xE9);
  auto r = verify_signed_image(odd, shared_pubkey());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::corrupt);
  EXPECT_NE(r.error().message().find("size 352 is not a non-zero multiple of 4096"), std::string::npos);
  EXPECT_FALSE(split_signed_image(Bytes{}));
}

TEST(SecureBootV2, UnknownVersionAndCurveAreNotValid) {
  Bytes file = spec_signed_file();
  Bytes v = file;
  v[kSigSectorSize + 1] = 0x04;
  fix_crc(v, 0);
  EXPECT_EQ(parse_signature_sector(ByteView(v).last(kSigSectorSize))[0].status,
            SigBlockStatus::unknown_version);
  Bytes c = file;
  c[kSigSectorSize + 36] = 0x07;
  fix_crc(c, 0);
  EXPECT_EQ(parse_signature_sector(ByteView(c).last(kSigSectorSize))[0].status,
            SigBlockStatus::unknown_curve);
}

TEST(SecureBootV2, PemErrors) {
  auto r = sb_public_key_from_pem(as_bytes("not a key"));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("PEM"), std::string::npos);
}

TEST(SecureBootV2, SignImageWithAFakeSignerLaysOutTheSector) {
  // The layout logic alone: a signer that returns a fixed pattern, an ECDSA P-256 key from the spec.
  Bytes file = spec_signed_file();
  auto key = parse_signature_sector(ByteView(file).last(kSigSectorSize))[0].block->key;
  BlockSigner fake{key, [](ByteView) -> Result<Bytes> { return Bytes(64, 0xAB); }};
  std::vector<BlockSigner> two{fake, fake};
  auto out = sign_image(hex(kSpecImageHex), two, {});
  ASSERT_TRUE(out);
  EXPECT_EQ(out->padded_by, 4096u - 352u);
  EXPECT_EQ(out->output.size(), 8192u);
  auto slots = parse_signature_sector(ByteView(out->output).last(kSigSectorSize));
  EXPECT_EQ(slots[0].status, SigBlockStatus::valid);
  EXPECT_EQ(slots[1].status, SigBlockStatus::valid);
  EXPECT_EQ(slots[2].status, SigBlockStatus::absent);
  EXPECT_EQ(out->output[kSigSectorSize + 2 * kSigBlockSize], 0xFF);
  // --append keeps both and adds a third; a fourth does not fit.
  std::vector<BlockSigner> one{fake};
  auto appended = sign_image(out->output, one, {.append = true});
  ASSERT_TRUE(appended);
  EXPECT_EQ(appended->kept_blocks, 2u);
  EXPECT_EQ(appended->total_blocks, 3u);
  EXPECT_EQ(appended->output.size(), 8192u);
  auto full = sign_image(appended->output, one, {.append = true});
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code(), ErrorCode::invalid_argument);
  // Without --append the signed input is data: it is noted, and signed as a whole.
  auto again = sign_image(out->output, one, {});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->ignored_valid_blocks, 2u);
  EXPECT_EQ(again->signed_length, 8192u);
  // Precomputed signatures need an aligned input.
  EXPECT_FALSE(sign_image(hex(kSpecImageHex), one, {.precomputed = true}));
}

// The app-side check a signed-apps build runs on a downloaded image (esp_ota_end): the lines of ESP-IDF
// v5.5.5's esp_image_format.c / secure_boot_signatures_app.c / secure_boot_rsa_signature.c.
struct AppCheckInput {
  Bytes digest, sector;
};
AppCheckInput app_check_input(ByteView file) {
  auto view = split_signed_image(file);
  EXPECT_TRUE(view);
  return {image_digest(SigScheme::rsa3072, view->signed_data),
          Bytes(view->sector.begin(), view->sector.end())};
}
std::vector<std::string> lines_of(const SbUpdateCheck& c) {
  std::vector<std::string> out;
  for (const auto& l : c.lines) out.push_back(fmt::format("{} {}: {}", l.level, l.tag, l.text));
  return out;
}
SbUpdateTrust efuse_trust(std::initializer_list<Sha256Digest> digests) {
  SbUpdateTrust t;
  t.secure_boot_enabled = true;
  size_t i = 0;
  for (const auto& d : digests) t.efuse.key_digests[i++] = d;
  return t;
}

TEST(SecureBootV2App, EfuseDigestVerifiesTheSharedSignedImage) {
  OTA32_REQUIRE_TESTDATA();
  auto file = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(file);
  auto in = app_check_input(*file);
  Sha256Digest other{};
  other.fill(0x11);
  auto c = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072,
                                efuse_trust({other, key_digest(shared_pubkey())}), true);
  EXPECT_TRUE(c.verified) << c.why;
  EXPECT_EQ(c.block, 0u);
  EXPECT_EQ(lines_of(c), (std::vector<std::string>{
                             "I esp_image: Verifying image signature...",
                             "I secure_boot_v2: Take trusted digest key(s) from eFuse block(s)",
                             "I secure_boot_v2: #0 app key digest == #1 trusted key digest",
                             "I secure_boot_v2: Verifying with RSA-PSS...",
                             "I secure_boot_v2_rsa: Signature verified successfully!",
                         }));
}

TEST(SecureBootV2App, TamperedCodeByteFailsThePssCheck) {
  OTA32_REQUIRE_TESTDATA();
  auto file = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(file);
  (*file)[0x100] ^= 0x01;
  auto in = app_check_input(*file);
  auto c = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072,
                                efuse_trust({key_digest(shared_pubkey())}), true);
  EXPECT_FALSE(c.verified);
  auto l = lines_of(c);
  ASSERT_EQ(l.size(), 8u);
  EXPECT_EQ(l[4],
            "E secure_boot_v2_rsa: Failed mbedtls_rsa_rsassa_pss_verify, err: -17280");  // VERIFY_FAILED
  EXPECT_EQ(l[5], "E esp_image: Secure boot signature verification failed");
  EXPECT_EQ(l[6], "I esp_image: Calculating simple hash to check for corruption...");
  EXPECT_EQ(l[7], "W esp_image: image valid, signature bad");
}

TEST(SecureBootV2App, TamperedSignatureByteIsBadPadding) {
  OTA32_REQUIRE_TESTDATA();
  auto file = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(file);
  (*file)[file->size() - kSigSectorSize + 812] ^= 0x01;  // the signature's lowest byte
  fix_crc(*file, 0);
  auto in = app_check_input(*file);
  auto c = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072,
                                efuse_trust({key_digest(shared_pubkey())}), false);
  EXPECT_FALSE(c.verified);
  auto l = lines_of(c);
  EXPECT_NE(std::find(l.begin(), l.end(),
                      "E secure_boot_v2_rsa: Failed mbedtls_rsa_rsassa_pss_verify, err: -16640"),
            l.end());  // MBEDTLS_ERR_RSA_INVALID_PADDING
  EXPECT_EQ(l.back(), "W esp_image: image corrupted on flash");
}

TEST(SecureBootV2App, WrongAndRevokedKeysAreNotTrusted) {
  OTA32_REQUIRE_TESTDATA();
  auto file = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(file);
  auto in = app_check_input(*file);
  Sha256Digest other{};
  other.fill(0x22);
  auto wrong = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072, efuse_trust({other}), true);
  EXPECT_FALSE(wrong.verified);
  EXPECT_EQ(lines_of(wrong), (std::vector<std::string>{
                                 "I esp_image: Verifying image signature...",
                                 "I secure_boot_v2: Take trusted digest key(s) from eFuse block(s)",
                                 "E esp_image: Secure boot signature verification failed",
                                 "I esp_image: Calculating simple hash to check for corruption...",
                                 "W esp_image: image valid, signature bad",
                             }));
  auto revoked_trust = efuse_trust({other, key_digest(shared_pubkey())});
  revoked_trust.efuse.revoked[1] = true;
  auto revoked = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072, revoked_trust, true);
  EXPECT_FALSE(revoked.verified);
  EXPECT_NE(revoked.why.find("burnt (and not revoked)"), std::string::npos) << revoked.why;
  revoked_trust.efuse.revoked[0] = true;  // nothing left to trust
  auto none = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072, revoked_trust, true);
  EXPECT_FALSE(none.verified);
  EXPECT_EQ(lines_of(none)[2], "E secure_boot_v2: Could not read secure boot digests!");
}

TEST(SecureBootV2App, WithoutSecureBootTheRunningAppsKeyIsTrusted) {
  OTA32_REQUIRE_TESTDATA();
  auto file = read_file(secure_dir() / "bootloader_signed_v2.bin");
  ASSERT_TRUE(file);
  auto in = app_check_input(*file);
  SbUpdateTrust t;
  t.running_sector = in.sector;  // the running app was signed with the same key
  auto c = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072, t, true);
  EXPECT_TRUE(c.verified) << c.why;
  EXPECT_EQ(lines_of(c)[1], "I secure_boot_v2: Take trusted digest key(s) from running app");
  EXPECT_EQ(lines_of(c)[2], "I secure_boot_v2: #0 app key digest == #0 trusted key digest");
  SbUpdateTrust unsigned_running;
  auto u = verify_app_on_update(in.digest, in.sector, SigScheme::rsa3072, unsigned_running, true);
  EXPECT_FALSE(u.verified);
  EXPECT_EQ(lines_of(u)[2], "E secure_boot_v2: No signatures were found for the running app");
  EXPECT_EQ(lines_of(u)[3], "E secure_boot_v2: Could not read secure boot digests!");
  // An ECDSA build meets an RSA block: logged and skipped.
  auto e = verify_app_on_update(in.digest, in.sector, SigScheme::ecdsa256,
                                efuse_trust({key_digest(shared_pubkey())}), true);
  EXPECT_FALSE(e.verified);
  EXPECT_EQ(lines_of(e)[2],
            "E secure_boot_v2: ECDSA signing scheme selected but signature block generated for RSA scheme");
}

}  // namespace
}  // namespace ota32
