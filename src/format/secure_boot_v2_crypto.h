// Secure Boot v2 key reading and signature verification with mbedTLS, as the chip's bootloader and app do
// (ESP-IDF v5.5.5 secure_boot_rsa_signature.c / secure_boot_ecdsa_signature.c): used by the virtual device's
// bootloader and OTA agent and by `ota32 sign verify | info | digest`. Signing is host work (src/sign,
// OpenSSL).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "format/secure_boot_v2.h"

namespace ota32 {

// A PEM key, private or public (PKCS#8, "RSA PRIVATE KEY", "EC PRIVATE KEY", "PUBLIC KEY"), as a block
// stores its public half. invalid_argument: not a PEM RSA/EC key, RSA other than 3072 bits, another curve.
Result<SbPublicKey> sb_public_key_from_pem(ByteView pem);

// RSA-PSS salt rule: espsecure signs and verifies with a 32-byte salt; IDF's mbedTLS check accepts any.
enum class PssSalt { exactly_32, any };

// Checks the block's signature over `digest` with the key stored in the block. bad_signature when it does
// not verify, invalid_argument when the stored key is not a usable key.
Result<void> verify_block_signature(const SignatureBlock& block, ByteView digest,
                                    PssSalt salt = PssSalt::exactly_32);

// `ota32 sign verify`: every slot of a signed file checked against one key (espsecure verify_signature).
struct SigBlockCheck {
  SigBlockSlot slot;
  bool digest_matches = false;  // stored image_digest == digest of the signed data
  bool key_matches = false;     // the block holds the given key
  bool verified = false;        // all three, and the signature verifies
  std::string why;              // when not verified: what failed, for people
};
struct SigVerifyReport {
  std::vector<SigBlockCheck> blocks;  // always kSigMaxBlocks entries
  std::optional<size_t> matched;      // the first block that verified
  // A valid block whose stored digest differs from the data's: the image changed after signing. espsecure
  // stops with an error then, even when another block verified.
  std::optional<size_t> digest_mismatch;
};
// corrupt when the file is not a non-zero multiple of 4096 bytes.
Result<SigVerifyReport> verify_signed_image(ByteView file, const SbPublicKey& key);

// The 2nd-stage bootloader's check of an app (ESP-IDF v5.5.5 esp_image_format.c + secure_boot_v2
// secure_boot_signatures_bootloader.c, non-ESP32 path): the signature sector at ALIGN_UP(image_len, 4096)
// of the partition, blocks of the build's scheme only, a block verifies when its key digest is a trusted
// (burnt, not revoked) eFuse digest and its signature checks out. `lines` are the log lines it prints,
// each with its level and tag.
struct SbLogLine {
  char level;
  std::string tag, text;
};
struct SbBootCheck {
  bool verified = false;
  std::optional<size_t> block;  // the block that verified
  size_t signed_length = 0;     // image + padding + sector: the bytes the app occupies
  std::vector<SbLogLine> lines;
};
SbBootCheck verify_app_on_boot(ByteView partition, size_t image_len, SigScheme build_scheme,
                               const SecureBootEfuse& efuse);

// Where the app's verifier takes the key digests it trusts (secure_boot_signatures_app.c
// get_secure_boot_key_digests): with SECURE_BOOT_EN, the burnt and not revoked eFuse digests, each compared
// with blocks 0..2 of the new image; without it (CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT) the key of the
// first valid block of the running app, compared with block 0 of the new image only.
struct SbUpdateTrust {
  bool secure_boot_enabled = false;
  SecureBootEfuse efuse;
  // Without secure boot: the running app's signature sector (4096 bytes); empty when it has none (unsigned
  // running app, or one whose image could not be read).
  Bytes running_sector;
};

// The app-side check of a downloaded image, as esp_ota_end / esp_ota_set_boot_partition run it through
// esp_image_verify on a signed-apps build (ESP-IDF v5.5.5 esp_image_format.c verify_secure_boot_signature +
// secure_boot_signatures_app.c + secure_boot_rsa_signature.c): `digest` is SHA-256 of the image up to the
// 4 KiB-aligned signature `sector`; signatures are checked in software (mbedTLS: PSS with any salt, rinv /
// mdash unused). `simple_hash_ok` says whether the image's appended SHA-256 matches, for the last line
// ("image valid, signature bad" / "image corrupted on flash"). `lines` start with "Verifying image
// signature...".
struct SbUpdateCheck {
  bool verified = false;
  std::optional<size_t> block;  // the block that verified
  std::vector<SbLogLine> lines;
  std::string why;  // when not verified: one line for people (the error message)
};
SbUpdateCheck verify_app_on_update(ByteView digest, ByteView sector, SigScheme build_scheme,
                                   const SbUpdateTrust& trust, bool simple_hash_ok);

}  // namespace ota32
