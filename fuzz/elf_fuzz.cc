// The ELF32 reader and elf2image: bounded reads of every header, and an output image that ota32's own
// image parser reads back with a right checksum and hash.
#include <string>

#include "core/hash.h"
#include "format/app_image.h"
#include "format/chip.h"
#include "format/elf.h"
#include "format/elf2image.h"
#include "fuzz_check.h"

using namespace ota32;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t flags = in.take_u8();
  const uint8_t chip_pick = in.take_u8();
  ByteView elf_bytes = in.rest();

  auto elf = parse_elf(elf_bytes, "fuzz.elf");
  if (!elf) {
    FUZZ_CHECK(elf.error().code() == ErrorCode::invalid_argument, "ELF error code");
  } else {
    for (const auto* list : {&elf->sections, &elf->segments})
      for (const auto& c : *list) FUZZ_CHECK(c.data.size() <= elf_bytes.size(), "chunk larger than the file");
  }

  auto chips = all_chips();
  Elf2ImageOptions o;
  o.chip = &chips[chip_pick % chips.size()];
  o.use_segments = flags & 1;
  o.append_digest = (flags & 2) == 0;
  o.elf_sha256_offset = (flags & 4) ? 0xB0 : 0;
  static const char* const kModes[] = {"qio", "qout", "dio", "dout"};
  o.flash_mode = kModes[(flags >> 3) & 3];
  if (flags & 0x20) o.pad_to_size = "4KB";
  if (flags & 0x40) o.secure_pad_v2 = true;
  std::vector<std::string> console;
  auto r = elf2image(elf_bytes, "fuzz.elf", o, &console);
  if (!r) {
    FUZZ_CHECK(r.error().code() == ErrorCode::invalid_argument, "elf2image error code: %s",
               r.error().message().c_str());
    return 0;
  }
  FUZZ_CHECK(elf.has_value(), "elf2image accepted an ELF that parse_elf refuses");

  auto img = parse_image(r->image, "out.bin");
  FUZZ_CHECK(img.has_value(), "elf2image output does not parse: %s", img.error().message().c_str());
  FUZZ_CHECK(img->header.chip_id == o.chip->chip_id, "chip id %u, wanted %u", img->header.chip_id,
             o.chip->chip_id);
  FUZZ_CHECK(img->stored_checksum == img->calculated_checksum, "elf2image wrote a wrong checksum");
  FUZZ_CHECK(img->header.hash_appended == (o.append_digest ? 1 : 0), "hash_appended byte");
  if (o.append_digest) {
    FUZZ_CHECK(img->stored_sha256 && *img->stored_sha256 == image_sha256(*img, r->image),
               "elf2image wrote a wrong SHA-256");
  }
  if (o.pad_to_size == "4KB") FUZZ_CHECK(r->image.size() % 4096 == 0, "not padded to 4 KiB");
  return 0;
}
