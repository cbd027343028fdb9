// Is a signed app trusted by a set of public keys? The app side's check of a downloaded image (ESP-IDF
// v5.5.5 esp_image_verify() -> secure_boot_signatures_app.c: the signature sector at ALIGN_UP(image_len,
// 4096), every valid block whose key digest is trusted is tried, first success wins) with ota32's stricter
// rule that the stored image_digest equals the image's (spec/secure-boot-v2.md §7.2). `ota32 serve
// --require-signed` uses it to refuse uploads its devices would refuse.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "format/secure_boot_v2.h"

namespace ota32 {

enum class SignedAppVerdict {
  verified,
  unsigned_image,  // no signature sector after the image, or no block in it (magic 0xE7 nowhere)
  untrusted,       // valid blocks, none with a trusted key
  damaged_block,   // a slot with the block magic but a bad CRC, version or curve, and nothing verified
  bad_signature,   // a block of a trusted key that does not verify (the image or signature changed)
};

// "unsigned", "untrusted_signature", "damaged_signature_block", "bad_signature" ("verified").
std::string_view verdict_code(SignedAppVerdict v);

struct SignedAppCheck {
  SignedAppVerdict verdict = SignedAppVerdict::unsigned_image;
  std::optional<size_t> block;  // the block that verified
  std::string reason;           // for people: what was found, block by block
};

// `file` holds the image (`image_len` bytes, as parse_image measures it), its padding and the sector.
SignedAppCheck check_signed_app(ByteView file, size_t image_len, std::span<const SbPublicKey> trusted);

}  // namespace ota32
