// Device states for power-cut sweeps: the seed's partition table with several otadata histories, and a
// table without a factory app. Every layout holds a synthetic bootloader at 0x1000 (esptool's write_flash
// scenario writes it back).
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "format/image_make.h"
#include "format/otadata.h"
#include "format/partition_table.h"
#include "sim/powercut_sweep.h"

namespace ota32::testing {

inline Bytes sweep_app(const std::string& version, uint32_t size, uint64_t seed = 1,
                       uint32_t secure_version = 0) {
  MakeImageOptions o;
  o.secure_version = secure_version;
  o.chip = find_chip("esp32");
  o.project = "simple_ota";
  o.version = version;
  o.size = size;
  o.seed = seed;
  auto img = make_app_image(o);
  if (!img) ADD_FAILURE() << "make_app_image: " << img.error().message();
  return img ? *img : Bytes();
}

inline std::vector<std::string> sweep_layouts() { return {"factory", "two-entries", "no-factory"}; }

// "factory": the seed after `idf.py flash` (factory v1 runs, otadata blank).
// "two-entries": factory v1, ota_0 v2 running (entry 0, seq 3, VALID), entry 1 (seq 2, VALID) still
//   naming ota_1, which holds an older v1: the next update overwrites the slot the inactive entry names.
// "no-factory": ota_0 / ota_1 only, ota_0 v1 running (entry 0, seq 1, VALID).
inline sim::DeviceState sweep_layout(const std::string& name) {
  const bool factory = name != "no-factory";
  std::string csv =
      "nvs,data,nvs,0x9000,0x4000,\notadata,data,ota,0xd000,0x2000,\nphy_init,data,phy,0xf000,0x1000,\n";
  if (factory) csv += "factory,app,factory,0x10000,1M,\n";
  csv += factory ? "ota_0,app,ota_0,,1M,\nota_1,app,ota_1,,1M,\n"
                 : "ota_0,app,ota_0,0x10000,1M,\nota_1,app,ota_1,,1M,\n";
  CsvOptions co;
  auto table = parse_partition_csv(csv, co, "partitions.csv");
  sim::DeviceState s;
  s.config.chip = "esp32";
  s.config.flash_size = 4u << 20;
  s.efuse.mac = "24:0a:c4:00:00:42";
  s.efuse.chip_revision = 100;
  s.flash.assign(s.config.flash_size, 0xFF);
  auto put = [&](uint32_t at, const Bytes& b) { std::copy(b.begin(), b.end(), s.flash.begin() + at); };
  MakeBootloaderOptions bo;
  bo.chip = find_chip("esp32");
  put(0x1000, *make_bootloader_image(bo));
  put(0x8000, partition_table_to_binary(*table));
  auto entry = [&](int i, uint32_t seq) {
    put(0xd000 + i * 0x1000, serialize_ota_select_entry(make_ota_select_entry(seq, kOtaStateValid)));
  };
  const PartitionEntry* ota0 = table->find("ota_0");
  const PartitionEntry* ota1 = table->find("ota_1");
  if (name == "factory") {
    put(0x10000, sweep_app("1", 200 * 1024, 11));
  } else if (name == "two-entries") {
    put(0x10000, sweep_app("1", 200 * 1024, 11));
    put(ota0->offset, sweep_app("2", 200 * 1024, 12));
    put(ota1->offset, sweep_app("1", 200 * 1024, 13));
    entry(0, 3);
    entry(1, 2);
  } else {
    put(ota0->offset, sweep_app("1", 200 * 1024, 11));
    (void)ota1;
    entry(0, 1);
  }
  return s;
}

}  // namespace ota32::testing
