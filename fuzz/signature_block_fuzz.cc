// Secure Boot v2 signature sectors (format/secure_boot_v2: parse_signature_sector, split_signed_image), read
// by `sign verify`, `image info` and the device's check of a downloaded image. The option byte can mend the
// magic and CRC of each slot, so that the fuzzer reaches the version / curve / layout paths behind them.
// Asserted: a slot is valid exactly when it has a block, and its CRC and version are the ones stored; a
// block's fields have the scheme's sizes; an encoded block parses back to the same block; every status reads
// as one line; a signed file splits into a prefix and its last 4096 bytes.
#include <cstring>

#include "core/crc32.h"
#include "format/secure_boot_v2.h"
#include "fuzz_check.h"

using namespace ota32;

namespace {

bool same_block(const SignatureBlock& a, const SignatureBlock& b) {
  return a.scheme == b.scheme && a.image_digest == b.image_digest && a.key.stored == b.key.stored &&
         a.key.scheme == b.key.scheme && a.signature == b.signature;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t mend = in.take_u8();
  auto rest = in.rest();
  Bytes sector(kSigSectorSize, 0xff);
  std::memcpy(sector.data(), rest.data(), std::min(rest.size(), sector.size()));
  for (size_t i = 0; i < kSigMaxBlocks; ++i) {
    uint8_t* b = sector.data() + i * kSigBlockSize;
    if (mend & (1u << i)) b[0] = kSigBlockMagic;
    if (mend & (8u << i)) store_le32(b + kSigBlockCrcLength, crc32_le(0, ByteView(b, kSigBlockCrcLength)));
  }
  // A sector shorter than three blocks (a truncated file) is read too: the missing slots are absent.
  const size_t len = (mend & 0x40) ? std::min<size_t>(rest.size(), sector.size()) : sector.size();
  auto slots = parse_signature_sector(ByteView(sector).first(len));
  for (size_t i = 0; i < kSigMaxBlocks; ++i) {
    const SigBlockSlot& s = slots[i];
    const std::string why = s.describe();
    FUZZ_CHECK(!why.empty() && why.find('\n') == std::string::npos, "slot %zu: describe()", i);
    FUZZ_CHECK((s.status == SigBlockStatus::valid) == s.block.has_value(), "slot %zu: valid without a block",
               i);
    if (len < (i + 1) * kSigBlockSize) {
      FUZZ_CHECK(s.status == SigBlockStatus::absent, "slot %zu past the end is not absent", i);
      continue;
    }
    const uint8_t* b = sector.data() + i * kSigBlockSize;
    FUZZ_CHECK(s.magic == b[0] && s.version == b[1], "slot %zu: magic / version", i);
    FUZZ_CHECK(s.stored_crc == load_le32(b + kSigBlockCrcLength), "slot %zu: stored CRC", i);
    if (s.status != SigBlockStatus::absent) FUZZ_CHECK(b[0] == kSigBlockMagic, "slot %zu: not absent", i);
    if (s.status != SigBlockStatus::absent && s.status != SigBlockStatus::bad_crc)
      FUZZ_CHECK(s.stored_crc == s.computed_crc, "slot %zu: past the CRC check with a bad CRC", i);
    if (!s.block) continue;
    const SignatureBlock& blk = *s.block;
    const bool p384 = blk.scheme == SigScheme::ecdsa384;
    FUZZ_CHECK(blk.image_digest.size() == (p384 ? 48u : 32u), "slot %zu: digest size", i);
    const size_t key = blk.scheme == SigScheme::rsa3072 ? 776 : p384 ? 97 : 65;
    const size_t sig = blk.scheme == SigScheme::rsa3072 ? 384 : p384 ? 96 : 64;
    FUZZ_CHECK(blk.key.stored.size() == key && blk.signature.size() == sig, "slot %zu: key / signature size",
               i);
    Bytes enc = encode_signature_block(blk);
    FUZZ_CHECK(enc.size() == kSigBlockSize, "encoded block of %zu bytes", enc.size());
    auto again = parse_signature_sector(enc);
    FUZZ_CHECK(again[0].block && same_block(*again[0].block, blk), "slot %zu: encode/parse round trip", i);
    FUZZ_CHECK(again[1].status == SigBlockStatus::absent, "a lone block has a second slot");
  }
  // The file as espsecure reads it: the signed part and the last sector.
  ByteView file(rest.data(), rest.size());
  auto view = split_signed_image(file);
  FUZZ_CHECK(static_cast<bool>(view) == (!file.empty() && file.size() % kSigSectorSize == 0),
             "split verdict");
  if (view) {
    FUZZ_CHECK(view->sector.size() == kSigSectorSize && view->signed_data.data() == file.data() &&
                   view->sector.data() == file.data() + file.size() - kSigSectorSize,
               "split windows");
  } else {
    FUZZ_CHECK(view.error().code() == ErrorCode::corrupt, "split error code");
  }
  return 0;
}
