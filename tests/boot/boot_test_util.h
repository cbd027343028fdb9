// Helpers the bootloader tests share: laying images into a flash, the seed's flash, and the boot log's lines.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <string>
#include <vector>

#include "boot/bootloader.h"
#include "flash/nor_flash.h"
#include "test_images.h"

namespace ota32::testing {

// Erases whole sectors at addr, then programs data.
inline void put(NorFlash& f, uint32_t addr, const Bytes& data) {
  ASSERT_TRUE(f.erase(addr, static_cast<uint32_t>((data.size() + 0xFFF) & ~size_t{0xFFF})));
  ASSERT_TRUE(f.program(addr, data));
}

// The seed's flash after `idf.py flash`: bootloader, table, blank otadata, factory app.
inline std::unique_ptr<MemFlash> seed_flash(const Bytes& factory = seed_factory_app()) {
  auto f = std::make_unique<MemFlash>(4u << 20);
  EXPECT_TRUE(f->program(0x1000, seed_bootloader()));
  EXPECT_TRUE(f->program(0x8000, seed_partition_table()));
  EXPECT_TRUE(f->program(0x10000, factory));
  return f;
}

// "L tag: text" of every line (timestamps are hardware-dependent).
inline std::vector<std::string> texts(const BootResult& r) {
  std::vector<std::string> out;
  for (const auto& l : r.log) out.push_back(std::string(1, l.level) + " " + l.tag + ": " + l.text);
  return out;
}

inline bool has_line(const BootResult& r, const std::string& line) {
  auto t = texts(r);
  return std::find(t.begin(), t.end(), line) != t.end();
}

}  // namespace ota32::testing
