// ESP app / bootloader images: parse_image's structure walk, verify_image's bootloader checks, the app
// descriptor round trip, and esptool's image_info report, which must agree with the parser.
#include <cstring>
#include <string>

#include "format/app_image.h"
#include "format/chip.h"
#include "format/esp8266_image.h"
#include "format/image_info.h"
#include "fuzz_check.h"

using namespace ota32;

namespace {

void check_app_desc_round_trip(const AppDescription& d) {
  auto bytes = serialize_app_desc(d);
  auto back = parse_app_desc(bytes);
  FUZZ_CHECK(back.has_value(), "serialised app descriptor does not parse");
  FUZZ_CHECK(back->secure_version == d.secure_version && back->version == d.version &&
                 back->project_name == d.project_name && back->time == d.time && back->date == d.date &&
                 back->idf_ver == d.idf_ver && back->app_elf_sha256 == d.app_elf_sha256 &&
                 back->min_efuse_blk_rev_full == d.min_efuse_blk_rev_full &&
                 back->max_efuse_blk_rev_full == d.max_efuse_blk_rev_full &&
                 back->mmu_page_size == d.mmu_page_size,
             "app descriptor does not round-trip (version '%s')", d.version.c_str());
}

void check_structure(const AppImage& img, ByteView data) {
  FUZZ_CHECK(img.segments.size() <= kMaxSegments, "%zu segments accepted", img.segments.size());
  FUZZ_CHECK(img.segments.size() == img.header.segment_count, "segment count differs from the header");
  uint64_t pos = kImageHeaderSize;
  for (const auto& s : img.segments) {
    FUZZ_CHECK(s.data_offset == pos + kSegmentHeaderSize, "segment data at 0x%x, expected 0x%llx",
               s.data_offset, static_cast<unsigned long long>(pos + kSegmentHeaderSize));
    FUZZ_CHECK(uint64_t{s.data_offset} + s.data_len <= data.size(), "segment past the end");
    pos = uint64_t{s.data_offset} + s.data_len;
  }
  FUZZ_CHECK(
      img.checksum_offset < data.size() && img.checksum_offset % 16 == 15 && img.checksum_offset >= pos,
      "checksum offset 0x%x", img.checksum_offset);
  FUZZ_CHECK(img.stored_checksum == data[img.checksum_offset], "stored checksum not read from its offset");
  FUZZ_CHECK(img.calculated_checksum == image_checksum(img, data), "checksum not recomputable");
  FUZZ_CHECK(img.image_size == img.checksum_offset + 1 + (img.header.hash_appended ? 32u : 0u), "image_size");
  FUZZ_CHECK(
      img.stored_sha256.has_value() == (img.header.hash_appended == 1 && data.size() >= img.image_size),
      "stored hash presence");
  if (img.stored_sha256) {
    FUZZ_CHECK(std::memcmp(img.stored_sha256->data(), &data[img.checksum_offset + 1], 32) == 0,
               "stored hash not read from its offset");
  }
  if (img.app_desc) check_app_desc_round_trip(*img.app_desc);
  FUZZ_CHECK(!(img.app_desc && img.bootloader_desc), "both descriptors");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t flags = in.take_u8();
  Bytes image(in.rest().begin(), in.rest().end());

  auto parsed = parse_image(image, "fuzz.bin");
  if (!parsed) {
    FUZZ_CHECK(parsed.error().code() == ErrorCode::corrupt, "parse error not 'corrupt'");
    auto report = image_info_report(image, ImageInfoOptions{});
    // The report may read it as an ESP8266 image instead (esptool's fallback); never as an ESP32 one.
    FUZZ_CHECK(report.error.has_value() || (report.chip != nullptr && is_esp8266(*report.chip)),
               "image_info reports an image parse_image refuses: %s", parsed.error().message().c_str());
    std::vector<std::string> warnings;
    if (auto e = parse_esp8266_image(image, "fuzz.bin", warnings)) {
      for (const auto& seg : e->segments) {
        FUZZ_CHECK(seg.header_offset + 8 + uint64_t{seg.data_len} <= image.size(),
                   "ESP8266 segment past the end");
      }
      FUZZ_CHECK(e->checksum_offset < image.size(), "ESP8266 checksum past the end");
    }
    return 0;
  }
  // Most mutants fail the checksum or the hash first; with flag 1 the target makes both right (as a
  // malicious but careful image author would), so the checks behind them are reached too.
  if (flags & 1) {
    image[parsed->checksum_offset] = parsed->calculated_checksum;
    if (parsed->stored_sha256) {
      Sha256Digest h = image_sha256(*parsed, image);
      std::memcpy(&image[parsed->checksum_offset + 1], h.data(), h.size());
    }
    auto fixed = parse_image(image, "fuzz.bin");
    FUZZ_CHECK(fixed.has_value(), "fixing the checksum broke the structure");
    parsed = std::move(fixed);
  }
  const AppImage& img = *parsed;
  check_structure(img, image);

  auto chips = all_chips();
  VerifyOptions vo;
  vo.chip = (flags & 2) ? &chips[(flags >> 4) % chips.size()] : nullptr;
  vo.check_hash = (flags & 4) == 0;
  vo.kind = static_cast<ImageKind>((flags >> 2) % 3);
  vo.file_name = "fuzz.bin";
  auto verified = verify_image(img, image, vo);
  if (verified) {
    FUZZ_CHECK(img.stored_checksum == img.calculated_checksum, "verified with a bad checksum");
    if (vo.kind == ImageKind::app) FUZZ_CHECK(img.app_desc.has_value(), "app verified without a descriptor");
    if (vo.check_hash && img.header.hash_appended == 1) {
      FUZZ_CHECK(img.stored_sha256 && *img.stored_sha256 == image_sha256(img, image),
                 "verified with a bad hash");
    }
  } else {
    FUZZ_CHECK(verified.error().message().starts_with("fuzz.bin: "), "error without the file name: %s",
               verified.error().message().c_str());
  }

  ImageInfoOptions io;
  io.version = (flags & 8) ? 1 : 2;
  io.file_name = "fuzz.bin";
  auto report = image_info_report(image, io);
  FUZZ_CHECK(report.text.starts_with("File size: " + std::to_string(image.size()) + " (bytes)\n"),
             "report does not start with the file size");
  // The report's checksum line, when it gets that far, agrees with the parser (unless esptool's detection
  // took it for an ESP8266 image, which has its own layout).
  const bool esp32_reader = report.chip != nullptr && !is_esp8266(*report.chip);
  if (auto at = report.text.find("\nChecksum: "); esp32_reader && at != std::string::npos) {
    std::string line = report.text.substr(at + 1, report.text.find('\n', at + 1) - at - 1);
    bool says_valid = line.ends_with(" (valid)");
    FUZZ_CHECK(says_valid || line.find(" (invalid - calculated ") != std::string::npos, "checksum line '%s'",
               line.c_str());
    FUZZ_CHECK(says_valid == (img.stored_checksum == img.calculated_checksum),
               "image_info says '%s', parse_image stored %02x calculated %02x", line.c_str(),
               img.stored_checksum, img.calculated_checksum);
  }
  return 0;
}
