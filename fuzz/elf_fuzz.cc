// The ELF32 reader and elf2image: bounded reads of every header, and an output image that ota32's own
// image parser reads back with a right checksum and hash.
#include <string>

#include "core/crc32.h"
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
  o.chip = &chips[(chip_pick & 0x3F) % chips.size()];
  // The top two bits of chip_pick: the default layout, --ram-only-header, ESP8266 --version 3 or 2.
  const unsigned layout = chip_pick >> 6;
  o.ram_only_header = layout == 1;
  if (layout >= 2) o.chip = &esp8266_chip(), o.version = layout == 2 ? 3 : 2;
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
  if (layout == 2) {  // ESP8266 v3: common header, segments, checksum, SHA-256 of all before it
    FUZZ_CHECK(r->image.size() >= 16 + 32 && r->image[0] == 0xE9, "ESP8266 v3 header");
    Sha256Digest d = sha256(ByteView(r->image).first(r->image.size() - 32));
    FUZZ_CHECK(std::equal(d.begin(), d.end(), r->image.end() - 32), "ESP8266 v3 SHA-256");
    return 0;
  }
  if (layout == 3) {  // ESP8266 v2: 0xEA header, ..., esptool's CRC-32 of all before it
    FUZZ_CHECK(r->image.size() >= 8 + 8 + 16 + 4 && r->image[0] == 0xEA, "ESP8266 v2 header");
    uint32_t crc = crc32_le(0, ByteView(r->image).first(r->image.size() - 4));
    crc = (crc & 0x80000000u) ? crc ^ 0xFFFFFFFFu : crc + 1;
    FUZZ_CHECK(load_le32(&r->image[r->image.size() - 4]) == crc, "ESP8266 v2 CRC");
    return 0;
  }
  if (o.ram_only_header) o.append_digest = false;  // esptool clears it in this mode

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
