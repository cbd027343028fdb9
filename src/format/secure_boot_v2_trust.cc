#include "format/secure_boot_v2_trust.h"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "format/secure_boot_v2_crypto.h"

namespace ota32 {

std::string_view verdict_code(SignedAppVerdict v) {
  switch (v) {
    case SignedAppVerdict::verified:
      return "verified";
    case SignedAppVerdict::unsigned_image:
      return "unsigned";
    case SignedAppVerdict::untrusted:
      return "untrusted_signature";
    case SignedAppVerdict::damaged_block:
      return "damaged_signature_block";
    case SignedAppVerdict::bad_signature:
      return "bad_signature";
  }
  return "unknown";
}

namespace {

std::string join(const std::vector<std::string>& parts) {
  std::string s;
  for (const auto& p : parts) s += (s.empty() ? "" : "; ") + p;
  return s;
}

}  // namespace

SignedAppCheck check_signed_app(ByteView file, size_t image_len, std::span<const SbPublicKey> trusted) {
  SignedAppCheck r;
  const size_t sector_at = (image_len + kSigSectorSize - 1) / kSigSectorSize * kSigSectorSize;
  if (file.size() < sector_at + kSigSectorSize) {
    r.reason = fmt::format(
        "the image is not signed: it ends at {:#x} and has no Secure Boot v2 signature sector at {:#x} (the "
        "file has {} bytes, a signed one at least {})",
        image_len, sector_at, file.size(), sector_at + kSigSectorSize);
    return r;
  }
  std::vector<Sha256Digest> digests;
  for (const auto& k : trusted) digests.push_back(key_digest(k));
  const ByteView signed_data = file.first(sector_at);
  std::vector<std::string> bad, damaged, untrusted;
  const auto slots = parse_signature_sector(file.subspan(sector_at, kSigSectorSize));
  for (size_t i = 0; i < slots.size(); ++i) {
    const SigBlockSlot& slot = slots[i];
    if (slot.status == SigBlockStatus::absent) continue;
    if (slot.status != SigBlockStatus::valid) {
      damaged.push_back(fmt::format("block {}: {}", i, slot.describe()));
      continue;
    }
    const SignatureBlock& b = *slot.block;
    const Sha256Digest kd = key_digest(b.key);
    auto t = std::find(digests.begin(), digests.end(), kd);
    if (t == digests.end()) {
      untrusted.push_back(fmt::format("block {} is signed by the {} key with digest {}", i,
                                      scheme_name(b.scheme), to_hex(kd)));
      continue;
    }
    const size_t key_no = static_cast<size_t>(t - digests.begin());
    const Bytes digest = image_digest(b.scheme, signed_data);
    if (b.image_digest != digest) {
      bad.push_back(
          fmt::format("block {} (trusted key #{}) signed other contents: its image digest {} is "
                      "not the image's {}",
                      i, key_no + 1, to_hex(b.image_digest), to_hex(digest)));
      continue;
    }
    // IDF's app-side mbedTLS PSS check accepts any salt length.
    if (auto v = verify_block_signature(b, digest, PssSalt::any); !v) {
      bad.push_back(fmt::format("block {} (trusted key #{}): {}", i, key_no + 1, v.error().message()));
      continue;
    }
    r.verdict = SignedAppVerdict::verified;
    r.block = i;
    r.reason = fmt::format("block {} verified with trusted key #{}", i, key_no + 1);
    return r;
  }
  if (!bad.empty()) {
    r.verdict = SignedAppVerdict::bad_signature;
    r.reason = "the signature does not verify: " + join(bad);
  } else if (!damaged.empty()) {
    r.verdict = SignedAppVerdict::damaged_block;
    r.reason = "damaged signature block: " + join(damaged);
    if (!untrusted.empty()) r.reason += "; and " + join(untrusted) + ", which is not trusted";
  } else if (!untrusted.empty()) {
    r.verdict = SignedAppVerdict::untrusted;
    r.reason = "no signature block matches the trusted keys: " + join(untrusted);
  } else {
    r.reason = fmt::format("the image is not signed: the signature sector at {:#x} holds no signature block",
                           sector_at);
  }
  return r;
}

}  // namespace ota32
