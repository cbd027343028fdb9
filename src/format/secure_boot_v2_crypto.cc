#include "format/secure_boot_v2_crypto.h"

#include <fmt/format.h>
#include <mbedtls/bignum.h>
#include <mbedtls/ecdsa.h>
#include <mbedtls/ecp.h>
#include <mbedtls/pk.h>
#include <mbedtls/rsa.h>

#include <algorithm>
#include <cassert>

namespace ota32 {
namespace {

constexpr size_t kRsaBytes = 384;

struct Mpi {
  mbedtls_mpi v;
  Mpi() { mbedtls_mpi_init(&v); }
  ~Mpi() { mbedtls_mpi_free(&v); }
  Mpi(const Mpi&) = delete;
  Mpi& operator=(const Mpi&) = delete;
};

Bytes reversed(ByteView b) { return Bytes(b.rbegin(), b.rend()); }

// Writes an MPI as exactly n big-endian bytes.
Bytes mpi_big_endian(const mbedtls_mpi& m, size_t n) {
  Bytes out(n);
  mbedtls_mpi_write_binary(&m, out.data(), n);
  return out;
}

Result<SigScheme> scheme_of_group(mbedtls_ecp_group_id id) {
  switch (id) {
    case MBEDTLS_ECP_DP_SECP192R1:
      return SigScheme::ecdsa192;
    case MBEDTLS_ECP_DP_SECP256R1:
      return SigScheme::ecdsa256;
    case MBEDTLS_ECP_DP_SECP384R1:
      return SigScheme::ecdsa384;
    default:
      break;
  }
  return Error(ErrorCode::invalid_argument,
               "the key uses a curve Secure Boot v2 does not take (it takes NIST P-192, P-256 and P-384: "
               "prime192v1 / secp192r1, prime256v1 / secp256r1, secp384r1)");
}

mbedtls_ecp_group_id group_of_scheme(SigScheme s) {
  switch (s) {
    case SigScheme::ecdsa192:
      return MBEDTLS_ECP_DP_SECP192R1;
    case SigScheme::ecdsa256:
      return MBEDTLS_ECP_DP_SECP256R1;
    case SigScheme::ecdsa384:
      return MBEDTLS_ECP_DP_SECP384R1;
    case SigScheme::rsa3072:
      break;
  }
  return MBEDTLS_ECP_DP_NONE;
}

// rinv and mdash of the ESP32 RSA accelerator's Montgomery form, derived from n.
Result<std::pair<Bytes, uint32_t>> rsa_montgomery(const mbedtls_mpi& n) {
  Mpi r;
  if (mbedtls_mpi_lset(&r.v, 1) != 0 || mbedtls_mpi_shift_l(&r.v, 2 * 3072) != 0 ||
      mbedtls_mpi_mod_mpi(&r.v, &r.v, &n) != 0) {
    return Error(ErrorCode::internal, "RSA: cannot compute 2^6144 mod n");
  }
  Bytes n_le = reversed(mpi_big_endian(n, kRsaBytes));
  uint32_t n0 = load_le32(n_le.data());  // n mod 2^32
  // Newton's iteration for n0^-1 mod 2^32 (n is odd): each step doubles the correct low bits.
  uint32_t inv = n0;
  for (int i = 0; i < 5; ++i) inv *= 2u - n0 * inv;
  return std::pair{reversed(mpi_big_endian(r.v, kRsaBytes)), static_cast<uint32_t>(0u - inv)};
}

Result<SbPublicKey> rsa_key_from_mpi(const mbedtls_mpi& n, const mbedtls_mpi& e) {
  size_t bits = mbedtls_mpi_bitlen(&n);
  if (bits != 3072) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("the RSA key has {} bits; Secure Boot v2 takes RSA-3072 only", bits));
  }
  if (mbedtls_mpi_get_bit(&n, 0) != 1 || mbedtls_mpi_bitlen(&e) > 32) {
    return Error(ErrorCode::invalid_argument,
                 "the RSA key's modulus is even or its exponent exceeds 32 bits");
  }
  OTA32_ASSIGN(auto mont, rsa_montgomery(n));
  Bytes e_be = mpi_big_endian(e, 4);
  ByteWriter w;
  w.bytes(reversed(mpi_big_endian(n, kRsaBytes)));
  w.bytes(reversed(e_be));
  w.bytes(mont.first);
  w.u32(mont.second);
  return SbPublicKey{SigScheme::rsa3072, w.take()};
}

Result<SbPublicKey> ec_key_from_point(SigScheme scheme, const mbedtls_mpi& x, const mbedtls_mpi& y) {
  size_t n = ecdsa_coordinate_size(scheme);
  Bytes stored;
  stored.push_back(scheme == SigScheme::ecdsa192 ? 1 : scheme == SigScheme::ecdsa256 ? 2 : 3);
  Bytes xl = reversed(mpi_big_endian(x, n)), yl = reversed(mpi_big_endian(y, n));
  stored.insert(stored.end(), xl.begin(), xl.end());
  stored.insert(stored.end(), yl.begin(), yl.end());
  stored.resize(scheme == SigScheme::ecdsa384 ? 97 : 65, 0);  // P-192's point is padded to 64 bytes
  return SbPublicKey{scheme, std::move(stored)};
}

// `rom`: the bootloader's ROM check, which uses rinv and mdash as stored. The app's mbedTLS check does not
// read them. `rc` receives mbedtls_rsa_rsassa_pss_verify's result (the app logs it).
Result<void> verify_rsa(const SignatureBlock& b, ByteView digest, PssSalt salt, bool rom = true,
                        int* pss_rc = nullptr) {
  if (b.key.stored.size() != 776 || b.signature.size() != kRsaBytes || digest.size() != 32)
    return Error(ErrorCode::invalid_argument, "RSA block with the wrong field sizes");
  ByteView k = b.key.stored;
  Bytes n_be = reversed(k.first(kRsaBytes));
  Bytes e_be = reversed(k.subspan(kRsaBytes, 4));
  Mpi n, e;
  mbedtls_mpi_read_binary(&n.v, n_be.data(), n_be.size());
  mbedtls_mpi_read_binary(&e.v, e_be.data(), e_be.size());
  // The ROM's accelerator uses rinv and mdash as stored: a block whose values do not belong to n fails on
  // the chip even though a software PSS check would pass.
  if (rom) {
    OTA32_ASSIGN(auto mont, rsa_montgomery(n.v));
    if (!std::equal(mont.first.begin(), mont.first.end(), k.begin() + kRsaBytes + 4) ||
        load_le32(k.data() + 2 * kRsaBytes + 4) != mont.second) {
      return Error(ErrorCode::bad_signature,
                   "the block's RSA key has rinv/mdash values that do not match its n");
    }
  }
  mbedtls_rsa_context rsa;
  mbedtls_rsa_init(&rsa, MBEDTLS_RSA_PKCS_V21, MBEDTLS_MD_SHA256);
  int rc = mbedtls_rsa_import(&rsa, &n.v, nullptr, nullptr, nullptr, &e.v);
  if (rc == 0) rc = mbedtls_rsa_complete(&rsa);
  if (rc == 0) rc = mbedtls_rsa_check_pubkey(&rsa);
  if (rc != 0) {
    mbedtls_rsa_free(&rsa);
    return Error(ErrorCode::invalid_argument, "the block's RSA public key is not a valid key");
  }
  Bytes sig_be = reversed(b.signature);
  rc = mbedtls_rsa_rsassa_pss_verify_ext(&rsa, nullptr, nullptr, MBEDTLS_RSA_PUBLIC, MBEDTLS_MD_SHA256, 32,
                                         digest.data(), MBEDTLS_MD_SHA256,
                                         salt == PssSalt::any ? MBEDTLS_RSA_SALT_LEN_ANY : 32, sig_be.data());
  mbedtls_rsa_free(&rsa);
  if (pss_rc) *pss_rc = rc;
  if (rc != 0) return Error(ErrorCode::bad_signature, "the RSA-PSS signature does not verify");
  return {};
}

Result<void> verify_ecdsa(const SignatureBlock& b, ByteView digest) {
  size_t n = ecdsa_coordinate_size(b.scheme);
  if (b.key.stored.size() < 1 + 2 * n || b.signature.size() < 2 * n)
    return Error(ErrorCode::invalid_argument, "ECDSA block with the wrong field sizes");
  ByteView point = ByteView(b.key.stored).subspan(1);
  ByteView sig = b.signature;
  Bytes x = reversed(point.first(n)), y = reversed(point.subspan(n, n));
  Bytes r = reversed(sig.first(n)), s = reversed(sig.subspan(n, n));
  mbedtls_ecp_group grp;
  mbedtls_ecp_point q;
  mbedtls_ecp_group_init(&grp);
  mbedtls_ecp_point_init(&q);
  Mpi mr, ms;
  int rc = mbedtls_ecp_group_load(&grp, group_of_scheme(b.scheme));
  if (rc == 0) rc = mbedtls_mpi_read_binary(&q.X, x.data(), n);
  if (rc == 0) rc = mbedtls_mpi_read_binary(&q.Y, y.data(), n);
  if (rc == 0) rc = mbedtls_mpi_lset(&q.Z, 1);
  bool key_ok = rc == 0 && mbedtls_ecp_check_pubkey(&grp, &q) == 0;
  if (key_ok) {
    mbedtls_mpi_read_binary(&mr.v, r.data(), n);
    mbedtls_mpi_read_binary(&ms.v, s.data(), n);
    rc = mbedtls_ecdsa_verify(&grp, digest.data(), digest.size(), &q, &mr.v, &ms.v);
  }
  mbedtls_ecp_point_free(&q);
  mbedtls_ecp_group_free(&grp);
  if (!key_ok)
    return Error(ErrorCode::invalid_argument, "the block's ECDSA public key is not a point on its curve");
  if (rc != 0) return Error(ErrorCode::bad_signature, "the ECDSA signature does not verify");
  return {};
}

}  // namespace

Result<SbPublicKey> sb_public_key_from_pem(ByteView pem) {
  Bytes text(pem.begin(), pem.end());
  text.push_back(0);  // mbedTLS takes PEM with its terminating NUL counted
  mbedtls_pk_context pk;
  mbedtls_pk_init(&pk);
  int rc = mbedtls_pk_parse_public_key(&pk, text.data(), text.size());
  if (rc != 0) {
    mbedtls_pk_free(&pk);
    mbedtls_pk_init(&pk);
    rc = mbedtls_pk_parse_key(&pk, text.data(), text.size(), nullptr, 0);
  }
  Result<SbPublicKey> out =
      Error(ErrorCode::invalid_argument,
            "does not appear to be an RSA or ECDSA private or public key in PEM format");
  if (rc == 0 && mbedtls_pk_get_type(&pk) == MBEDTLS_PK_RSA) {
    Mpi n, e;
    mbedtls_rsa_export(mbedtls_pk_rsa(pk), &n.v, nullptr, nullptr, nullptr, &e.v);
    out = rsa_key_from_mpi(n.v, e.v);
  } else if (rc == 0 &&
             (mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECKEY || mbedtls_pk_get_type(&pk) == MBEDTLS_PK_ECDSA)) {
    const mbedtls_ecp_keypair* ec = mbedtls_pk_ec(pk);
    auto scheme = scheme_of_group(ec->grp.id);
    out = scheme ? ec_key_from_point(*scheme, ec->Q.X, ec->Q.Y) : Result<SbPublicKey>(scheme.error());
  }
  mbedtls_pk_free(&pk);
  return out;
}

Result<void> verify_block_signature(const SignatureBlock& block, ByteView digest, PssSalt salt) {
  if (block.scheme == SigScheme::rsa3072) return verify_rsa(block, digest, salt);
  return verify_ecdsa(block, digest);
}

Result<SigVerifyReport> verify_signed_image(ByteView file, const SbPublicKey& key) {
  OTA32_ASSIGN(auto view, split_signed_image(file));
  auto slots = parse_signature_sector(view.sector);
  SigVerifyReport report;
  Bytes digest256 = image_digest(SigScheme::rsa3072, view.signed_data);
  std::optional<Bytes> digest384;
  for (size_t i = 0; i < slots.size(); ++i) {
    SigBlockCheck c;
    c.slot = slots[i];
    if (c.slot.status != SigBlockStatus::valid) {
      c.why = c.slot.describe();
      report.blocks.push_back(std::move(c));
      continue;
    }
    const SignatureBlock& b = *c.slot.block;
    const Bytes* digest = &digest256;
    if (b.scheme == SigScheme::ecdsa384) {
      if (!digest384) digest384 = image_digest(SigScheme::ecdsa384, view.signed_data);
      digest = &*digest384;
    }
    c.digest_matches = b.image_digest == *digest;
    c.key_matches = b.key.stored == key.stored;
    if (!c.digest_matches) {
      c.why = fmt::format("image digest {} stored, {} computed: the image changed after signing",
                          to_hex(b.image_digest), to_hex(*digest));
      if (!report.digest_mismatch) report.digest_mismatch = i;
    } else if (!c.key_matches) {
      c.why = fmt::format("signed by another key ({} key digest {}, the given key's is {})",
                          scheme_name(b.scheme), to_hex(key_digest(b.key)), to_hex(key_digest(key)));
    } else if (auto v = verify_block_signature(b, *digest); !v) {
      c.why = v.error().message();
    } else {
      c.verified = true;
      if (!report.matched) report.matched = i;
    }
    report.blocks.push_back(std::move(c));
  }
  return report;
}

}  // namespace ota32

namespace ota32 {

SbBootCheck verify_app_on_boot(ByteView partition, size_t image_len, SigScheme build_scheme,
                               const SecureBootEfuse& efuse) {
  SbBootCheck c;
  auto log = [&](char level, const char* tag, std::string text) {
    c.lines.push_back({level, tag, std::move(text)});
  };
  const size_t start = (image_len + kSigSectorSize - 1) / kSigSectorSize * kSigSectorSize;
  c.signed_length = start + kSigSectorSize;
  if (c.signed_length > partition.size()) {
    log('E', "esp_image",
        fmt::format("Image length {} doesn't fit in partition length {}", c.signed_length, partition.size()));
    return c;
  }
  log('I', "esp_image", "Verifying image signature...");
  auto fail = [&](bool with_hash_line) {
    log('E', "secure_boot_v2", "Secure Boot V2 verification failed.");
    log('E', "esp_image", "Secure boot signature verification failed");
    if (with_hash_line) {
      // The simple hash was already checked by the image verification before this point.
      log('I', "esp_image", "Calculating simple hash to check for corruption...");
      log('W', "esp_image", "image valid, signature bad");
    }
    return c;
  };
  const auto trusted = efuse.trusted();
  if (trusted.empty()) {
    log('E', "secure_boot_v2", "Could not read eFuse secure boot digests!");
    return fail(false);
  }
  ByteView signed_data = partition.first(start);
  auto slots = parse_signature_sector(partition.subspan(start, kSigSectorSize));
  const uint8_t want_version =
      build_scheme == SigScheme::rsa3072 ? kSigBlockVersionRsa : kSigBlockVersionEcdsa;
  const bool want_rsa = build_scheme == SigScheme::rsa3072;
  std::vector<const SignatureBlock*> usable;
  for (const auto& s : slots) {
    if (!s.block) continue;
    if (s.version != want_version) {
      log('E', "secure_boot_v2",
          fmt::format("{} signing scheme selected but signature block generated for {} scheme",
                      scheme_kind(build_scheme), scheme_kind(s.block->scheme)));
      continue;
    }
    if (!want_rsa && s.block->scheme != build_scheme) {
      auto id = [](SigScheme x) { return x == SigScheme::ecdsa192 ? 1 : x == SigScheme::ecdsa256 ? 2 : 3; };
      log('E', "secure_boot_v2",
          fmt::format("ECDSA curve mismatch: actual (curve_id {}), expected (curve_id {})",
                      id(s.block->scheme), id(build_scheme)));
      continue;
    }
    usable.push_back(&*s.block);
  }
  if (usable.empty()) {
    log('E', "secure_boot_v2", "No signature block generated for valid scheme");
    log('E', "secure_boot_v2",
        fmt::format("{} signing scheme selected but no signature block for the selected scheme",
                    scheme_kind(build_scheme)));
    return fail(true);
  }
  log('I', "secure_boot_v2", want_rsa ? "Verifying with RSA-PSS..." : "Verifying with ECDSA...");
  Bytes digest = image_digest(build_scheme, signed_data);
  for (size_t i = 0; i < kSigMaxBlocks; ++i) {
    if (!slots[i].block) continue;
    const SignatureBlock& b = *slots[i].block;
    if (std::find(usable.begin(), usable.end(), &b) == usable.end()) continue;
    auto kd = key_digest(b.key);
    if (std::find(trusted.begin(), trusted.end(), kd) == trusted.end()) continue;
    if (verify_block_signature(b, digest, PssSalt::any)) {
      log('I', "secure_boot_v2", "Signature verified successfully!");
      c.verified = true;
      c.block = i;
      return c;
    }
  }
  return fail(true);
}

}  // namespace ota32

namespace ota32 {
namespace {

// esp_secure_boot_get_scheme_name: what a block's version byte names.
std::string_view version_kind(uint8_t version) {
  if (version == kSigBlockVersionRsa) return "RSA";
  if (version == kSigBlockVersionEcdsa || version == 0) return "ECDSA";
  return "Unknown";
}

// A slot IDF's app side accepts (validate_signature_block): magic, CRC and the build's scheme; a valid
// block of another scheme is logged.
const SignatureBlock* app_valid_block(const SigBlockSlot& s, uint8_t want_version, SigScheme build,
                                      std::vector<SbLogLine>& lines) {
  const bool crc_ok = s.magic == kSigBlockMagic && s.stored_crc == s.computed_crc;
  if (!crc_ok) return nullptr;
  if (s.version != want_version) {
    lines.push_back({'E', "secure_boot_v2",
                     fmt::format("{} signing scheme selected but signature block generated for {} scheme",
                                 scheme_kind(build), version_kind(s.version))});
    return nullptr;
  }
  return s.block ? &*s.block : nullptr;
}

}  // namespace

SbUpdateCheck verify_app_on_update(ByteView digest, ByteView sector, SigScheme build_scheme,
                                   const SbUpdateTrust& trust, bool simple_hash_ok) {
  SbUpdateCheck c;
  auto log = [&](char level, const char* tag, std::string text) {
    c.lines.push_back({level, tag, std::move(text)});
  };
  log('I', "esp_image", "Verifying image signature...");
  const bool rsa = build_scheme == SigScheme::rsa3072;
  const uint8_t want_version = rsa ? kSigBlockVersionRsa : kSigBlockVersionEcdsa;
  auto fail = [&](std::string why) {
    log('E', "esp_image", "Secure boot signature verification failed");
    log('I', "esp_image", "Calculating simple hash to check for corruption...");
    log('W', "esp_image", simple_hash_ok ? "image valid, signature bad" : "image corrupted on flash");
    c.why = std::move(why);
    return c;
  };

  // The trusted digests, by index: eFuse slot, or (from the running app) its valid blocks in order.
  std::array<std::optional<Sha256Digest>, kSigMaxBlocks> trusted{};
  size_t blocks_to_check = kSigMaxBlocks;
  if (trust.secure_boot_enabled) {
    log('I', "secure_boot_v2", "Take trusted digest key(s) from eFuse block(s)");
    for (size_t i = 0; i < kSigMaxBlocks; ++i)
      if (trust.efuse.key_digests[i] && !trust.efuse.revoked[i]) trusted[i] = trust.efuse.key_digests[i];
  } else {
    log('I', "secure_boot_v2", "Take trusted digest key(s) from running app");
    blocks_to_check = 1;  // CONFIG_SECURE_SIGNED_ON_UPDATE_NO_SECURE_BOOT: block 0 against the first key
    size_t n = 0;
    if (trust.running_sector.size() == kSigSectorSize) {
      for (const auto& s : parse_signature_sector(trust.running_sector)) {
        if (const SignatureBlock* b = app_valid_block(s, want_version, build_scheme, c.lines))
          trusted[n++] = key_digest(b->key);
      }
    }
    if (n == 0) log('E', "secure_boot_v2", "No signatures were found for the running app");
  }
  if (std::none_of(trusted.begin(), trusted.end(), [](const auto& d) { return d.has_value(); })) {
    log('E', "secure_boot_v2", "Could not read secure boot digests!");
    return fail(trust.secure_boot_enabled
                    ? "no usable key digest in the eFuses (none burnt, or all revoked)"
                    : "the running app carries no signature block to take the trusted key from");
  }

  const auto slots = parse_signature_sector(sector);
  bool any_trusted = false;
  std::string last_failure;
  for (size_t i = 0; i < blocks_to_check; ++i) {
    const SignatureBlock* b = app_valid_block(slots[i], want_version, build_scheme, c.lines);
    if (b == nullptr) continue;
    const Sha256Digest kd = key_digest(b->key);
    std::optional<size_t> t;
    for (size_t k = 0; k < blocks_to_check && !t; ++k)
      if (trusted[k] && *trusted[k] == kd) t = k;
    if (!t) continue;
    log('I', "secure_boot_v2", fmt::format("#{} app key digest == #{} trusted key digest", i, *t));
    any_trusted = true;
    if (rsa) {
      log('I', "secure_boot_v2", "Verifying with RSA-PSS...");
      int rc = 0;
      auto v = verify_rsa(*b, digest, PssSalt::any, false, &rc);
      if (v) {
        log('I', "secure_boot_v2_rsa", "Signature verified successfully!");
        c.verified = true;
        c.block = i;
        return c;
      }
      if (rc != 0)
        log('E', "secure_boot_v2_rsa", fmt::format("Failed mbedtls_rsa_rsassa_pss_verify, err: {}", rc));
      last_failure = fmt::format("signature block {}: {}", i, v.error().message());
    } else {
      log('I', "secure_boot_v2", "Verifying with ECDSA...");
      auto v = verify_ecdsa(*b, digest);
      if (v) {
        c.verified = true;
        c.block = i;
        return c;
      }
      last_failure = fmt::format("signature block {}: {}", i, v.error().message());
    }
  }
  if (!any_trusted) {
    return fail(trust.secure_boot_enabled
                    ? "no signature block is made with a key whose digest is burnt (and not revoked) in eFuse"
                    : "signature block 0 is not made with the running app's key");
  }
  return fail(last_failure);
}

}  // namespace ota32
