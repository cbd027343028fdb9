#include "format/secure_boot_v2.h"

#include <fmt/format.h>

#include <algorithm>
#include <cassert>

#include "core/crc32.h"

namespace ota32 {
namespace {

// Field offsets inside a block (ESP-IDF's ROM secure_boot.h; the P-384 layout is the ESP32-C5 one).
constexpr size_t kDigestOffset = 4;
constexpr size_t kRsaKeyOffset = 36, kRsaKeySize = 776, kRsaSigOffset = 812, kRsaSigSize = 384;
constexpr size_t kEcKeyOffset = 36, kEcKeySize = 65, kEcSigOffset = 101, kEcSigSize = 64;
constexpr size_t kEc384KeyOffset = 52, kEc384KeySize = 97, kEc384SigOffset = 149, kEc384SigSize = 96;
constexpr uint8_t kShaVersion384 = 1;

}  // namespace

std::string_view scheme_name(SigScheme s) {
  switch (s) {
    case SigScheme::rsa3072:
      return "rsa3072";
    case SigScheme::ecdsa192:
      return "ecdsa192";
    case SigScheme::ecdsa256:
      return "ecdsa256";
    case SigScheme::ecdsa384:
      return "ecdsa384";
  }
  return "?";
}

std::optional<SigScheme> parse_scheme(std::string_view name) {
  for (auto s : {SigScheme::rsa3072, SigScheme::ecdsa192, SigScheme::ecdsa256, SigScheme::ecdsa384})
    if (scheme_name(s) == name) return s;
  return std::nullopt;
}

std::string_view scheme_kind(SigScheme s) { return s == SigScheme::rsa3072 ? "RSA" : "ECDSA"; }

std::string_view scheme_key_description(SigScheme s) {
  switch (s) {
    case SigScheme::rsa3072:
      return "RSA 3072";
    case SigScheme::ecdsa192:
      return "ECDSA NIST192p";
    case SigScheme::ecdsa256:
      return "ECDSA NIST256p";
    case SigScheme::ecdsa384:
      return "ECDSA NIST384p";
  }
  return "?";
}

size_t ecdsa_coordinate_size(SigScheme s) {
  switch (s) {
    case SigScheme::ecdsa192:
      return 24;
    case SigScheme::ecdsa256:
      return 32;
    case SigScheme::ecdsa384:
      return 48;
    case SigScheme::rsa3072:
      break;
  }
  return 0;
}

Sha256Digest key_digest(const SbPublicKey& key) { return sha256(key.stored); }

Bytes encode_signature_block(const SignatureBlock& b) {
  Bytes out(kSigBlockSize, 0);
  auto put = [&](size_t off, ByteView v, size_t max) {
    assert(v.size() <= max);
    std::copy_n(v.begin(), std::min(v.size(), max), out.begin() + off);
  };
  out[0] = kSigBlockMagic;
  if (b.scheme == SigScheme::rsa3072) {
    out[1] = kSigBlockVersionRsa;
    put(kDigestOffset, b.image_digest, 32);
    put(kRsaKeyOffset, b.key.stored, kRsaKeySize);
    put(kRsaSigOffset, b.signature, kRsaSigSize);
  } else if (b.scheme == SigScheme::ecdsa384) {
    out[1] = kSigBlockVersionEcdsa;
    out[2] = kShaVersion384;
    put(kDigestOffset, b.image_digest, 48);
    put(kEc384KeyOffset, b.key.stored, kEc384KeySize);
    put(kEc384SigOffset, b.signature, kEc384SigSize);
  } else {
    out[1] = kSigBlockVersionEcdsa;
    put(kDigestOffset, b.image_digest, 32);
    put(kEcKeyOffset, b.key.stored, kEcKeySize);
    put(kEcSigOffset, b.signature, kEcSigSize);
  }
  store_le32(out.data() + kSigBlockCrcLength, crc32_le(0, ByteView(out).first(kSigBlockCrcLength)));
  return out;
}

std::string SigBlockSlot::describe() const {
  switch (status) {
    case SigBlockStatus::valid:
      return fmt::format("valid ({})", scheme_kind(block->scheme));
    case SigBlockStatus::absent:
      return fmt::format("absent (magic byte 0x{:02x}, not 0xe7)", magic);
    case SigBlockStatus::bad_crc:
      return fmt::format("damaged (block CRC 0x{:08x} stored, 0x{:08x} computed)", stored_crc, computed_crc);
    case SigBlockStatus::unknown_version:
      return fmt::format("unknown block version {} (2 = RSA, 3 = ECDSA)", version);
    case SigBlockStatus::unknown_curve:
      return "ECDSA block with an unknown curve_id (1, 2 or 3 expected)";
  }
  return "?";
}

std::array<SigBlockSlot, kSigMaxBlocks> parse_signature_sector(ByteView sector) {
  std::array<SigBlockSlot, kSigMaxBlocks> slots;
  for (size_t i = 0; i < kSigMaxBlocks; ++i) {
    SigBlockSlot& s = slots[i];
    if (sector.size() < (i + 1) * kSigBlockSize) break;  // absent
    ByteView b = sector.subspan(i * kSigBlockSize, kSigBlockSize);
    s.magic = b[0];
    s.version = b[1];
    s.stored_crc = load_le32(b.data() + kSigBlockCrcLength);
    s.computed_crc = crc32_le(0, b.first(kSigBlockCrcLength));
    if (s.magic != kSigBlockMagic) continue;
    if (s.stored_crc != s.computed_crc) {
      s.status = SigBlockStatus::bad_crc;
      continue;
    }
    SignatureBlock blk;
    auto slice = [&](size_t off, size_t n) { return Bytes(b.begin() + off, b.begin() + off + n); };
    if (s.version == kSigBlockVersionRsa) {
      blk.scheme = SigScheme::rsa3072;
      blk.image_digest = slice(kDigestOffset, 32);
      blk.key.stored = slice(kRsaKeyOffset, kRsaKeySize);
      blk.signature = slice(kRsaSigOffset, kRsaSigSize);
    } else if (s.version == kSigBlockVersionEcdsa) {
      // espsecure: sha_version 1 selects the P-384 layout, anything else the 64-byte-point one.
      bool is384 = b[2] == kShaVersion384;
      uint8_t curve = b[is384 ? kEc384KeyOffset : kEcKeyOffset];
      if (is384 ? curve != 3 : (curve != 1 && curve != 2)) {
        s.status = SigBlockStatus::unknown_curve;
        continue;
      }
      blk.scheme = is384 ? SigScheme::ecdsa384 : curve == 1 ? SigScheme::ecdsa192 : SigScheme::ecdsa256;
      blk.image_digest = slice(kDigestOffset, is384 ? 48 : 32);
      blk.key.stored = is384 ? slice(kEc384KeyOffset, kEc384KeySize) : slice(kEcKeyOffset, kEcKeySize);
      blk.signature = is384 ? slice(kEc384SigOffset, kEc384SigSize) : slice(kEcSigOffset, kEcSigSize);
    } else {
      s.status = SigBlockStatus::unknown_version;
      continue;
    }
    blk.key.scheme = blk.scheme;
    s.status = SigBlockStatus::valid;
    s.block = std::move(blk);
  }
  return slots;
}

SigScheme default_sign_scheme(std::string_view chip_name) {
  return chip_name == "esp32c2" || chip_name == "esp32c61" ? SigScheme::ecdsa256 : SigScheme::rsa3072;
}

size_t secure_boot_digest_slots(std::string_view chip_name) {
  return chip_name == "esp32" || chip_name == "esp32c2" ? 1 : kSigMaxBlocks;
}

std::vector<Sha256Digest> SecureBootEfuse::trusted() const {
  std::vector<Sha256Digest> out;
  for (size_t i = 0; i < kSigMaxBlocks; ++i)
    if (key_digests[i] && !revoked[i]) out.push_back(*key_digests[i]);
  return out;
}

Result<SignedImageView> split_signed_image(ByteView file) {
  if (file.empty() || file.size() % kSigSectorSize != 0) {
    return Error(
        ErrorCode::corrupt,
        fmt::format("not a signed image: size {} is not a non-zero multiple of 4096 (a Secure Boot v2 "
                    "image ends in a 4 KiB signature sector)",
                    file.size()));
  }
  return SignedImageView{file.first(file.size() - kSigSectorSize), file.last(kSigSectorSize)};
}

Bytes image_digest(SigScheme scheme, ByteView signed_data) {
  if (scheme == SigScheme::ecdsa384) {
    auto d = sha384(signed_data);
    return Bytes(d.begin(), d.end());
  }
  auto d = sha256(signed_data);
  return Bytes(d.begin(), d.end());
}

Result<SignOutcome> sign_image(ByteView input, std::span<const BlockSigner> signers, const SignRequest& req) {
  if (signers.empty()) return Error(ErrorCode::invalid_argument, "no signing key given");
  SignOutcome out;
  Bytes data(input.begin(), input.end());
  std::vector<Bytes> blocks;
  if (data.size() % kSigSectorSize != 0) {
    if (req.precomputed) {
      return Error(ErrorCode::invalid_argument,
                   "Secure Boot V2 requires the signature block to start from a 4KB aligned sector but the "
                   "datafile supplied is not sector aligned (pad it before making the signature)");
    }
    out.padded_by = kSigSectorSize - data.size() % kSigSectorSize;
    data.resize(data.size() + out.padded_by, 0xFF);
  } else if (!data.empty()) {
    auto slots = parse_signature_sector(ByteView(data).last(kSigSectorSize));
    size_t valid = 0;
    while (valid < kSigMaxBlocks && slots[valid].status == SigBlockStatus::valid) ++valid;
    if (!req.append) {
      out.ignored_valid_blocks = valid;
    } else if (valid == 0) {
      out.append_discarded = true;
    } else {
      if (valid == kSigMaxBlocks) {
        return Error(ErrorCode::invalid_argument,
                     "the signature sector already holds 3 signature blocks (at most 3 are supported; "
                     "ESP32 ECO3 checks only the first)");
      }
      ByteView sector = ByteView(data).last(kSigSectorSize);
      for (size_t i = 0; i < valid; ++i) {
        auto b = sector.subspan(i * kSigBlockSize, kSigBlockSize);
        blocks.emplace_back(b.begin(), b.end());
      }
      out.kept_blocks = valid;
      data.resize(data.size() - kSigSectorSize);
    }
  }
  if (signers.size() > kSigMaxBlocks - blocks.size()) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{} signing key(s) but only {} empty signature block(s) in the sector",
                             signers.size(), kSigMaxBlocks - blocks.size()));
  }
  for (const BlockSigner& signer : signers) {
    SignatureBlock blk;
    blk.scheme = signer.key.scheme;
    blk.key = signer.key;
    blk.image_digest = image_digest(blk.scheme, data);
    OTA32_ASSIGN(blk.signature, signer.sign(blk.image_digest));
    blocks.push_back(encode_signature_block(blk));
  }
  out.signed_length = data.size();
  out.total_blocks = blocks.size();
  out.output = std::move(data);
  out.output.reserve(out.signed_length + kSigSectorSize);
  for (const Bytes& b : blocks) out.output.insert(out.output.end(), b.begin(), b.end());
  out.output.resize(out.signed_length + kSigSectorSize, 0xFF);
  return out;
}

}  // namespace ota32
