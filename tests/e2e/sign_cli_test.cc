// ota32 sign key | sign | verify | info | digest | pubkey, run as a user runs them (key, sign and pubkey
// go through the sibling ota32-sign).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

using ::testing::HasSubstr;

std::string secure(const char* name) { return (testdata_dir() / "secure" / name).string(); }

TEST(SignCli, SharedBootloaderVerifiesAndItsDigestMatches) {
  OTA32_REQUIRE_TESTDATA();
  TempDir dir;
  auto r = run_ota32({"sign", "verify", "--key", secure("rsa_secure_boot_signing_pubkey.pem"),
                      secure("bootloader_signed_v2.bin")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Signature block 0 is valid (RSA).\n"
            "Signature block 0 verification successful using the supplied key (RSA).\n"
            "Signature block 1 invalid. Skipping.\n"
            "Signature block 2 invalid. Skipping.\n");
  auto digest = (dir / "digest.bin").string();
  r = run_ota32({"sign", "digest", secure("rsa_secure_boot_signing_pubkey.pem"), "-o", digest});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(*read_file(digest), *read_file(secure("rsa_public_key_digest.bin")));
  r = run_ota32({"sign", "info", secure("bootloader_signed_v2.bin")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out,
              HasSubstr("Public key digest for block 0: cb 27 91 a3 71 b0 c0 32 2b f7 37 04 78 ba 09 62 "
                        "22 4c ab 1c f2 28 78 79 e4 29 67 3e 7d a8 44 63\n"
                        "Signature block 1 absent/invalid. Skipping checking next blocks.\n"));
  r = run_ota32({"sign", "verify", "--key", secure("rsa_secure_boot_signing_pubkey.pem"),
                 secure("bootloader_unsigned_v2.bin")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("bootloader_unsigned_v2.bin: no signature block verifies with"));
  EXPECT_THAT(r.err, HasSubstr("block 2: absent (magic byte 0xff, not 0xe7)"));
}

TEST(SignCli, KeySignVerifyAppendAndErrors) {
  TempDir dir;
  auto k1 = (dir / "k1.pem").string(), k2 = (dir / "k2.pem").string(), pub = (dir / "k1.pub.pem").string();
  auto r = run_ota32({"sign", "key", "--scheme", "ecdsa256", "-o", k1});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "ECDSA NIST256p private key in PEM format written to " + k1 + "\n");
  struct stat st {};
  ASSERT_EQ(::stat(k1.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  r = run_ota32({"sign", "key", "--scheme", "ecdsa256", "-o", k1});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("already exists"));
  r = run_ota32({"sign", "key", "--scheme", "ecdsa384", "-o", k2});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_ota32({"sign", "key", "--scheme", "rsa1024", "-o", (dir / "x.pem").string()});
  EXPECT_EQ(r.exit_code, 2);

  auto img = (dir / "app.bin").string(), s1 = (dir / "s1.bin").string(), s2 = (dir / "s2.bin").string();
  r = run_ota32({"image", "make", "-o", img, "--chip", "esp32c6", "--project", "p", "--version", "1",
                 "--size", "70000"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_ota32({"sign", "sign", "--key", k1, img, "-o", s1});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out,
            "Padding data contents by 3728 bytes so signature sector aligns at sector boundary\n"
            "1 signing key(s) found.\n"
            "Signed 73728 bytes of data from " +
                img + ". Signature sector now has 1 signature blocks.\n");
  r = run_ota32({"sign", "sign", "--append", "--key", k2, s1, "-o", s2});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("1 valid signature block(s) already present in the signature sector.\n"));
  EXPECT_THAT(r.out, HasSubstr("Signature sector now has 2 signature blocks.\n"));
  r = run_ota32({"sign", "verify", "--key", k2, s2});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out,
              HasSubstr("Signature block 0 is not signed by the supplied key. Checking the next block\n"
                        "Signature block 1 is valid (ECDSA).\n"
                        "Signature block 1 verification successful using the supplied key (ECDSA).\n"));
  r = run_ota32({"sign", "pubkey", k1, "-o", pub});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_ota32({"sign", "verify", "--json", "--key", pub, s2});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["matched_block"], 0);
  EXPECT_EQ(j["blocks"][1]["key_matches"], false);

  // One code byte changed: the digest no longer matches; exit 1 naming the block.
  Bytes bad = *read_file(s2);
  bad[0x30] ^= 1;
  auto tampered = (dir / "tampered.bin").string();
  ASSERT_TRUE(write_file_atomic(tampered, ByteView(bad)));
  r = run_ota32({"sign", "verify", "--key", pub, tampered});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("tampered.bin: signature block 0: image digest"));
  EXPECT_THAT(r.err, HasSubstr("the image changed after signing"));
  // One signature byte changed: the block's CRC is wrong, the block is skipped.
  bad = *read_file(s1);
  bad[bad.size() - 4096 + 120] ^= 1;
  ASSERT_TRUE(write_file_atomic(tampered, ByteView(bad)));
  r = run_ota32({"sign", "verify", "--key", pub, tampered});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("block 0: damaged (block CRC 0x"));
  // Unaligned input and same input/output.
  r = run_ota32({"sign", "verify", "--key", pub, img});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("app.bin: not a signed image: size 70000"));
  r = run_ota32({"sign", "sign", "--key", k1, img, "-o", img});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("should not be the same"));
  r = run_ota32({"sign", "digest", img, "-o", (dir / "d.bin").string()});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("app.bin: does not appear to be an RSA or ECDSA"));
  EXPECT_FALSE(std::filesystem::exists(dir / "d.bin"));
  r = run_ota32({"sign", "sign", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("Usage: ota32 sign sign"));
}

TEST(SignCli, DeviceEfuseSecureBoot) {
  TempDir dir;
  auto d = (dir / "dev").string(), key = (dir / "k.pem").string(), other = (dir / "o.pem").string();
  auto csv = (dir / "p.csv").string(), pt = (dir / "p.bin").string(), bl = (dir / "bl.bin").string();
  auto app = (dir / "app.bin").string(), sapp = (dir / "app.s.bin").string();
  ASSERT_TRUE(write_file_atomic(csv, std::string_view("otadata, data, ota, 0xd000, 0x2000,\n"
                                                      "ota_0, app, ota_0, 0x10000, 0x100000,\n"
                                                      "ota_1, app, ota_1, 0x110000, 0x100000,\n")));
  for (auto args : std::vector<std::vector<std::string>>{
           {"sign", "key", "--scheme", "rsa3072", "-o", key},
           {"sign", "key", "--scheme", "rsa3072", "-o", other},
           {"part", "csv2bin", "-q", csv, pt},
           {"image", "make", "--bootloader", "-o", bl, "--chip", "esp32s3"},
           {"image", "make", "-o", app, "--chip", "esp32s3", "--project", "p", "--version", "1", "--size",
            "90000"},
           {"sign", "sign", "--key", key, app, "-o", sapp},
           {"device", "new", d, "--chip", "esp32s3"},
           {"device", "flash", d, "0x0", bl, "0x8000", pt, "0x10000", sapp}}) {
    auto r = run_ota32(args);
    ASSERT_EQ(r.exit_code, 0) << args[0] << " " << args[1] << ": " << r.err;
  }
  auto r = run_ota32({"device", "efuse", d, "enable-secure-boot"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("no usable key digest burned"));
  r = run_ota32({"device", "efuse", d, "burn-key-digest", key});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("into SECURE_BOOT_DIGEST0\n"));
  r = run_ota32({"device", "efuse", d, "burn-key-digest", key, "--block", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("already burned in SECURE_BOOT_DIGEST0"));
  r = run_ota32({"device", "efuse", d, "enable-secure-boot"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_ota32({"device", "boot", d});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("secure_boot_v2: Signature verified successfully!\n"));
  r = run_ota32({"device", "efuse", d, "revoke-key", "0"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("last usable key digest"));
  // Signed by another key: the only slot is refused, nothing boots.
  r = run_ota32({"sign", "sign", "--key", other, app, "-o", sapp + ".2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_ota32({"device", "flash", d, "0x10000", sapp + ".2"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = run_ota32({"device", "boot", d});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("E ("));
  EXPECT_THAT(r.out, HasSubstr("esp_image: image valid, signature bad\n"));
  r = run_ota32({"device", "efuse", d, "summary", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["secure_boot_enabled"], true);
  EXPECT_TRUE(j["key_digests"][0]["digest"].is_string());
  EXPECT_TRUE(j["key_digests"][1]["digest"].is_null());
}

}  // namespace
}  // namespace ota32::testing
