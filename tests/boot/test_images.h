// Synthetic flash contents for boot tests: images laid out segment by segment in a given order (no merging,
// unlike elf2image), so a test can reproduce the seed's exact segment map.
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "core/bytes.h"
#include "core/hash.h"
#include "format/app_image.h"
#include "format/partition_table.h"

namespace ota32::testing {

struct Seg {
  uint32_t addr;
  uint32_t len;
};

inline Bytes build_image(uint16_t chip_id, const std::vector<Seg>& segs, const Bytes& seg0_prefix,
                         uint8_t fill_seed = 1, uint8_t mode = 2, uint8_t speed_size = 0x20) {
  ImageHeader h;
  h.segment_count = static_cast<uint8_t>(segs.size());
  h.spi_mode = mode;
  h.spi_speed_size = speed_size;
  h.entry_addr = 0x40081150;
  h.chip_id = chip_id;
  h.hash_appended = 1;
  Bytes img(kImageHeaderSize);
  write_image_header(h, img.data());
  uint8_t checksum = kChecksumSeed;
  uint32_t x = fill_seed;
  for (size_t i = 0; i < segs.size(); ++i) {
    ByteWriter w;
    w.u32(segs[i].addr);
    w.u32(segs[i].len);
    Bytes data(segs[i].len);
    for (auto& b : data) {
      x = x * 1103515245u + 12345u;
      b = static_cast<uint8_t>(x >> 16);
    }
    if (i == 0 && !seg0_prefix.empty()) {
      std::memcpy(data.data(), seg0_prefix.data(), std::min(seg0_prefix.size(), data.size()));
    }
    for (auto b : data) checksum ^= b;
    img.insert(img.end(), w.view().begin(), w.view().end());
    img.insert(img.end(), data.begin(), data.end());
  }
  img.resize(img.size() + 15 - img.size() % 16, 0);
  img.push_back(checksum);
  auto digest = sha256(img);
  img.insert(img.end(), digest.begin(), digest.end());
  return img;
}

inline Bytes app_desc_bytes(const std::string& project, const std::string& version,
                            uint32_t secure_version = 0,
                            const std::string& idf = "v4.3-dev-1561-g357a27760") {
  AppDescription d;
  d.project_name = project;
  d.version = version;
  d.secure_version = secure_version;
  d.date = "Feb  4 2021";
  d.time = "18:10:53";
  d.idf_ver = idf;
  auto sha = from_hex("16c58cb2140dc9a6");
  std::copy(sha->begin(), sha->end(), d.app_elf_sha256.begin());
  auto b = serialize_app_desc(d);
  return Bytes(b.begin(), b.end());
}

// The seed's simple_ota factory app: six segments with the seed's sizes and addresses.
inline Bytes seed_factory_app(const std::string& version = "1", uint32_t secure_version = 0,
                              uint8_t fill = 1) {
  return build_image(0,
                     {{0x3f400020, 0x1e510},
                      {0x3ffb0000, 0x1ae0},
                      {0x400d0020, 0x90374},
                      {0x3ffb1ae0, 0x2428},
                      {0x40080000, 0x404},
                      {0x40080404, 0x1466c}},
                     app_desc_bytes("simple_ota", version, secure_version), fill);
}

// The seed's OTA image (what ended up in ota_0): its segment sizes differ a little.
inline Bytes seed_ota_app(const std::string& version = "2", uint32_t secure_version = 0, uint8_t fill = 2) {
  return build_image(0,
                     {{0x3f400020, 0x1e558},
                      {0x3ffb0000, 0x1a98},
                      {0x400d0020, 0x90374},
                      {0x3ffb1a98, 0x2470},
                      {0x40080000, 0x404},
                      {0x40080404, 0x1466c}},
                     app_desc_bytes("simple_ota", version, secure_version), fill);
}

// An ESP32 2nd-stage bootloader with the seed's ROM load map (DIO, 40 MHz, 4MB).
inline Bytes seed_bootloader() {
  return build_image(0, {{0x3fff0030, 4}, {0x3fff0034, 6928}, {0x40078000, 14328}, {0x40080400, 3660}},
                     Bytes{}, 7);
}

// The seed's partition layout (simple_ota_example's partitions_two_ota.csv).
inline PartitionTable seed_layout() {
  PartitionTable t;
  t.entries = {
      {"nvs", kPartitionTypeData, 0x02, 0x9000, 0x4000},
      {"otadata", kPartitionTypeData, kDataSubtypeOta, 0xd000, 0x2000},
      {"phy_init", kPartitionTypeData, 0x01, 0xf000, 0x1000},
      {"factory", kPartitionTypeApp, kAppSubtypeFactory, 0x10000, 0x100000},
      {"ota_0", kPartitionTypeApp, kAppSubtypeOta0, 0x110000, 0x100000},
      {"ota_1", kPartitionTypeApp, kAppSubtypeOta0 + 1, 0x210000, 0x100000},
  };
  return t;
}

// The seed's partition table (partitions_two_ota.csv) in its binary form.
inline Bytes seed_partition_table(bool with_factory = true) {
  PartitionTable t = seed_layout();
  if (!with_factory) t.entries.erase(t.entries.begin() + 3);
  return partition_table_to_binary(t);
}

}  // namespace ota32::testing
