// Secure Boot v2 signature sector and signature blocks (ESP-IDF v5.5.5 ets_secure_boot_sig_block_t,
// espsecure.py v4.8.1 sign_data / verify_signature / signature_info_v2 --version 2): the layout, parsing,
// the eFuse key digest and which bytes the image digest covers. Pure: no key handling and no signature
// maths here (those are secure_boot_v2_crypto.h, mbedTLS as on the chip, and src/sign, OpenSSL on the host).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/hash.h"
#include "core/result.h"

namespace ota32 {

constexpr size_t kSigSectorSize = 4096;  // the signature sector, 4 KiB aligned after the padded image
constexpr size_t kSigBlockSize = 1216;   // one ets_secure_boot_sig_block_t
constexpr size_t kSigMaxBlocks = 3;      // SECURE_BOOT_NUM_BLOCKS
constexpr size_t kSigBlockCrcLength = 1196;
constexpr uint8_t kSigBlockMagic = 0xE7;
constexpr uint8_t kSigBlockVersionRsa = 0x02;
constexpr uint8_t kSigBlockVersionEcdsa = 0x03;

// One firmware build uses one of these (CONFIG_SECURE_SIGNED_APPS_RSA_SCHEME / _ECDSA_V2_SCHEME + key size).
enum class SigScheme { rsa3072, ecdsa192, ecdsa256, ecdsa384 };

// "rsa3072", "ecdsa192", "ecdsa256", "ecdsa384" (espsecure's --scheme words) and back.
std::string_view scheme_name(SigScheme s);
std::optional<SigScheme> parse_scheme(std::string_view name);
// "RSA" or "ECDSA", as espsecure and the bootloader print a block's kind.
std::string_view scheme_kind(SigScheme s);
// espsecure generate_signing_key's words: "RSA 3072", "ECDSA NIST256p", ...
std::string_view scheme_key_description(SigScheme s);
// The ECDSA coordinate size in bytes (24, 32, 48); 0 for RSA.
size_t ecdsa_coordinate_size(SigScheme s);

// A public key exactly as a signature block stores it: the bytes the eFuse key digest covers.
//   RSA-3072: n (384, little-endian) | e (u32) | rinv = 2^6144 mod n (384, LE) | mdash = -n^-1 mod 2^32 (u32)
//   ECDSA:    curve_id (1 = P-192, 2 = P-256, 3 = P-384) | X | Y (each LE; P-192 pads to 64 bytes with 0)
struct SbPublicKey {
  SigScheme scheme = SigScheme::rsa3072;
  Bytes stored;  // 776 bytes (RSA), 65 (P-192, P-256), 97 (P-384)
};

// The eFuse key digest (KEY_PURPOSE SECURE_BOOT_DIGESTn, BLK2 on ESP32): SHA-256 of SbPublicKey::stored.
Sha256Digest key_digest(const SbPublicKey& key);

struct SignatureBlock {
  SigScheme scheme = SigScheme::rsa3072;
  Bytes image_digest;  // 32 bytes (SHA-256), 48 for P-384 (SHA-384)
  SbPublicKey key;
  Bytes signature;  // as stored, little-endian: RSA 384 bytes; ECDSA r | s (64 bytes, 96 for P-384)
};

// The 1216 bytes of a block: header, fields, CRC-32 of bytes 0..1195, zero padding.
Bytes encode_signature_block(const SignatureBlock& block);

// What a slot of the sector holds. Only `valid` blocks are used; the rest are skipped as IDF and espsecure
// do.
enum class SigBlockStatus {
  valid,
  absent,           // magic byte is not 0xE7 (erased sector: 0xFF)
  bad_crc,          // magic ok, CRC-32 over bytes 0..1195 does not match
  unknown_version,  // magic and CRC ok, version neither 2 (RSA) nor 3 (ECDSA)
  unknown_curve,    // ECDSA block whose curve_id is not 1, 2 or 3
};

struct SigBlockSlot {
  SigBlockStatus status = SigBlockStatus::absent;
  uint8_t magic = 0, version = 0;
  uint32_t stored_crc = 0, computed_crc = 0;
  std::optional<SignatureBlock> block;  // set when valid

  // Why the slot is not valid, for people: "absent (magic 0xff, not 0xe7)", "CRC 0x... stored, 0x...
  // computed", ...; "valid (RSA)" for a valid one.
  std::string describe() const;
};

// Parses the three block slots of a 4096-byte signature sector.
std::array<SigBlockSlot, kSigMaxBlocks> parse_signature_sector(ByteView sector);

// espsecure's reading of a signed file: the sector is the last 4096 bytes, everything before it is signed.
// corrupt when the size is zero or not a multiple of 4096.
struct SignedImageView {
  ByteView signed_data;  // image + padding: what the image digest covers
  ByteView sector;
};
Result<SignedImageView> split_signed_image(ByteView file);

// The digest a block of this scheme signs: SHA-256 of the signed data (RSA, P-192, P-256), SHA-384 (P-384).
Bytes image_digest(SigScheme scheme, ByteView signed_data);

// The Secure Boot v2 eFuses: up to 3 key digests (KEY_PURPOSE SECURE_BOOT_DIGEST0..2; ESP32: BLK2 only),
// their revocation bits (SECURE_BOOT_KEY_REVOKE0..2) and SECURE_BOOT_EN.
struct SecureBootEfuse {
  bool enabled = false;
  std::array<std::optional<Sha256Digest>, kSigMaxBlocks> key_digests{};
  std::array<bool, kSigMaxBlocks> revoked{};

  // The digests a verifier trusts: burnt and not revoked.
  std::vector<Sha256Digest> trusted() const;
};

// The scheme a chip's ESP-IDF build uses by default: RSA-3072 where the ROM has it (SOC_SECURE_BOOT_V2_RSA),
// ECDSA P-256 on ESP32-C2 and ESP32-C61.
SigScheme default_sign_scheme(std::string_view chip_name);
// How many key digests the chip's eFuse holds (SOC_EFUSE_SECURE_BOOT_KEY_DIGESTS): 1 on ESP32 (BLK2) and
// ESP32-C2, 3 elsewhere.
size_t secure_boot_digest_slots(std::string_view chip_name);

// --- signing (espsecure sign_data --version 2), the crypto supplied by the caller ---------------------

// Makes one block's signature over a digest; `signature` is stored little-endian (SignatureBlock::signature).
struct BlockSigner {
  SbPublicKey key;
  std::function<Result<Bytes>(ByteView digest)> sign;
};

struct SignRequest {
  bool append = false;       // espsecure --append_signatures: keep the valid blocks already in the sector
  bool precomputed = false;  // signatures made elsewhere (--pub-key + --signature): input must be aligned
};

struct SignOutcome {
  Bytes output;                   // signed data | signature sector
  size_t padded_by = 0;           // 0xFF bytes added to align the sector
  size_t signed_length = 0;       // the bytes the digest covers
  size_t kept_blocks = 0;         // blocks kept from the input's sector (--append)
  size_t total_blocks = 0;        // blocks in the new sector
  bool append_discarded = false;  // --append given but the input had no valid block
  size_t ignored_valid_blocks =
      0;  // without --append: valid blocks in the input's last sector, signed as data
};

// Pads with 0xFF to 4096, or with `append` strips an existing sector and keeps its valid blocks (from block 0
// up to the first invalid one), then appends one block per signer, in order, and 0xFF filler. Errors
// (invalid_argument) follow espsecure's: more signers than free slots, unaligned input with precomputed
// signatures, no signer.
Result<SignOutcome> sign_image(ByteView input, std::span<const BlockSigner> signers, const SignRequest& req);

}  // namespace ota32
