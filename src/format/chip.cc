#include "format/chip.h"

#include <algorithm>
#include <array>
#include <cctype>

namespace ota32 {
namespace {

constexpr MemRegion kEsp32Map[] = {
    {0x00000000, 0x00010000, "PADDING"},
    {0x3F400000, 0x3F800000, "DROM"},
    {0x3F800000, 0x3FC00000, "EXTRAM_DATA"},
    {0x3FF80000, 0x3FF82000, "RTC_DRAM"},
    {0x3FF90000, 0x40000000, "BYTE_ACCESSIBLE"},
    {0x3FFAE000, 0x40000000, "DRAM"},
    {0x3FFE0000, 0x3FFFFFFC, "DIRAM_DRAM"},
    {0x40000000, 0x40070000, "IROM"},
    {0x40070000, 0x40078000, "CACHE_PRO"},
    {0x40078000, 0x40080000, "CACHE_APP"},
    {0x40080000, 0x400A0000, "IRAM"},
    {0x400A0000, 0x400BFFFC, "DIRAM_IRAM"},
    {0x400C0000, 0x400C2000, "RTC_IRAM"},
    {0x400D0000, 0x40400000, "IROM"},
    {0x50000000, 0x50002000, "RTC_DATA"},
};

constexpr MemRegion kEsp32S2Map[] = {
    {0x00000000, 0x00010000, "PADDING"},
    {0x3F000000, 0x3FF80000, "DROM"},
    {0x3F500000, 0x3FF80000, "EXTRAM_DATA"},
    {0x3FF9E000, 0x3FFA0000, "RTC_DRAM"},
    {0x3FF9E000, 0x40000000, "BYTE_ACCESSIBLE"},
    {0x3FF9E000, 0x40072000, "MEM_INTERNAL"},
    {0x3FFB0000, 0x40000000, "DRAM"},
    {0x40000000, 0x4001A100, "IROM_MASK"},
    {0x40020000, 0x40070000, "IRAM"},
    {0x40070000, 0x40072000, "RTC_IRAM"},
    {0x40080000, 0x40800000, "IROM"},
    {0x50000000, 0x50002000, "RTC_DATA"},
};

constexpr MemRegion kEsp32S3Map[] = {
    {0x00000000, 0x00010000, "PADDING"},
    {0x3C000000, 0x3D000000, "DROM"},
    {0x3D000000, 0x3E000000, "EXTRAM_DATA"},
    {0x600FE000, 0x60100000, "RTC_DRAM"},
    {0x3FC88000, 0x3FD00000, "BYTE_ACCESSIBLE"},
    {0x3FC88000, 0x403E2000, "MEM_INTERNAL"},
    {0x3FC88000, 0x3FD00000, "DRAM"},
    {0x40000000, 0x4001A100, "IROM_MASK"},
    {0x40370000, 0x403E0000, "IRAM"},
    {0x600FE000, 0x60100000, "RTC_IRAM"},
    {0x42000000, 0x42800000, "IROM"},
    {0x50000000, 0x50002000, "RTC_DATA"},
};

constexpr MemRegion kEsp32C3Map[] = {
    {0x00000000, 0x00010000, "PADDING"},       {0x3C000000, 0x3C800000, "DROM"},
    {0x3FC80000, 0x3FCE0000, "DRAM"},          {0x3FC88000, 0x3FD00000, "BYTE_ACCESSIBLE"},
    {0x3FF00000, 0x3FF20000, "DROM_MASK"},     {0x40000000, 0x40060000, "IROM_MASK"},
    {0x42000000, 0x42800000, "IROM"},          {0x4037C000, 0x403E0000, "IRAM"},
    {0x50000000, 0x50002000, "RTC_IRAM"},      {0x50000000, 0x50002000, "RTC_DRAM"},
    {0x600FE000, 0x60100000, "MEM_INTERNAL2"},
};

constexpr MemRegion kEsp32C2Map[] = {
    {0x00000000, 0x00010000, "PADDING"},   {0x3C000000, 0x3C400000, "DROM"},
    {0x3FCA0000, 0x3FCE0000, "DRAM"},      {0x3FC88000, 0x3FD00000, "BYTE_ACCESSIBLE"},
    {0x3FF00000, 0x3FF50000, "DROM_MASK"}, {0x40000000, 0x40090000, "IROM_MASK"},
    {0x42000000, 0x42400000, "IROM"},      {0x4037C000, 0x403C0000, "IRAM"},
};

// ESP32-C6 and ESP32-H2 share one table.
constexpr MemRegion kEsp32C6Map[] = {
    {0x00000000, 0x00010000, "PADDING"},       {0x42800000, 0x43000000, "DROM"},
    {0x40800000, 0x40880000, "DRAM"},          {0x40800000, 0x40880000, "BYTE_ACCESSIBLE"},
    {0x4004AC00, 0x40050000, "DROM_MASK"},     {0x40000000, 0x4004AC00, "IROM_MASK"},
    {0x42000000, 0x42800000, "IROM"},          {0x40800000, 0x40880000, "IRAM"},
    {0x50000000, 0x50004000, "RTC_IRAM"},      {0x50000000, 0x50004000, "RTC_DRAM"},
    {0x600FE000, 0x60100000, "MEM_INTERNAL2"},
};

constexpr MemRegion kEsp32C5Map[] = {
    {0x00000000, 0x00010000, "PADDING"},       {0x42800000, 0x43000000, "DROM"},
    {0x40800000, 0x40860000, "DRAM"},          {0x40800000, 0x40860000, "BYTE_ACCESSIBLE"},
    {0x4003A000, 0x40040000, "DROM_MASK"},     {0x40000000, 0x4003A000, "IROM_MASK"},
    {0x42000000, 0x42800000, "IROM"},          {0x40800000, 0x40860000, "IRAM"},
    {0x50000000, 0x50004000, "RTC_IRAM"},      {0x50000000, 0x50004000, "RTC_DRAM"},
    {0x600FE000, 0x60100000, "MEM_INTERNAL2"},
};

constexpr MemRegion kEsp32C61Map[] = {
    {0x00000000, 0x00010000, "PADDING"},       {0x41800000, 0x42000000, "DROM"},
    {0x40800000, 0x40860000, "DRAM"},          {0x40800000, 0x40860000, "BYTE_ACCESSIBLE"},
    {0x4004AC00, 0x40050000, "DROM_MASK"},     {0x40000000, 0x4004AC00, "IROM_MASK"},
    {0x41000000, 0x41800000, "IROM"},          {0x40800000, 0x40860000, "IRAM"},
    {0x50000000, 0x50004000, "RTC_IRAM"},      {0x50000000, 0x50004000, "RTC_DRAM"},
    {0x600FE000, 0x60100000, "MEM_INTERNAL2"},
};

constexpr MemRegion kEsp32C5Beta3Map[] = {
    {0x00000000, 0x00010000, "PADDING"},       {0x41800000, 0x42000000, "DROM"},
    {0x40800000, 0x40880000, "DRAM"},          {0x40800000, 0x40880000, "BYTE_ACCESSIBLE"},
    {0x4004A000, 0x40050000, "DROM_MASK"},     {0x40000000, 0x4004A000, "IROM_MASK"},
    {0x41000000, 0x41800000, "IROM"},          {0x40800000, 0x40880000, "IRAM"},
    {0x50000000, 0x50004000, "RTC_IRAM"},      {0x50000000, 0x50004000, "RTC_DRAM"},
    {0x600FE000, 0x60100000, "MEM_INTERNAL2"},
};

constexpr MemRegion kEsp32P4Map[] = {
    {0x00000000, 0x00010000, "PADDING"},       {0x40000000, 0x4C000000, "DROM"},
    {0x4FF00000, 0x4FFA0000, "DRAM"},          {0x4FF00000, 0x4FFA0000, "BYTE_ACCESSIBLE"},
    {0x4FC00000, 0x4FC20000, "DROM_MASK"},     {0x4FC00000, 0x4FC20000, "IROM_MASK"},
    {0x40000000, 0x4C000000, "IROM"},          {0x4FF00000, 0x4FFA0000, "IRAM"},
    {0x50108000, 0x50110000, "RTC_IRAM"},      {0x50108000, 0x50110000, "RTC_DRAM"},
    {0x600FE000, 0x60100000, "MEM_INTERNAL2"},
};

// The rows without a memory map (the ESP32-H2 betas).
constexpr std::span<const MemRegion> kNoMemoryMap{};

constexpr FlashFreq kEsp32Freqs[] = {{"80m", 0xF}, {"40m", 0x0}, {"26m", 0x1}, {"20m", 0x2}};
constexpr FlashFreq kEsp32C2Freqs[] = {{"60m", 0xF}, {"30m", 0x0}, {"20m", 0x1}, {"15m", 0x2}};
constexpr FlashFreq kEsp32C6Freqs[] = {{"80m", 0x0}, {"40m", 0x0}, {"20m", 0x2}};
constexpr FlashFreq kEsp32H2Freqs[] = {{"48m", 0xF}, {"24m", 0x0}, {"16m", 0x1}, {"12m", 0x2}};
constexpr FlashFreq kEsp32C5Freqs[] = {{"80m", 0xF}, {"40m", 0x0}, {"20m", 0x2}};

constexpr uint32_t k64K = 0x10000;
constexpr AddrRange kEsp32Irom{0x400D0000, 0x40400000}, kEsp32Drom{0x3F400000, 0x3F800000};
constexpr AddrRange kS2Irom{0x40080000, 0x40B80000}, kS2Drom{0x3F000000, 0x3F3F0000};
constexpr AddrRange kS3Irom{0x42000000, 0x44000000}, kS3Drom{0x3C000000, 0x3E000000};
constexpr AddrRange kC3Irom{0x42000000, 0x42800000}, kC3Drom{0x3C000000, 0x3C800000};
constexpr AddrRange kC2Irom{0x42000000, 0x42400000}, kC2Drom{0x3C000000, 0x3C400000};
constexpr AddrRange kC6Irom{0x42000000, 0x42800000}, kC6Drom{0x42800000, 0x43000000};
constexpr AddrRange kC5B3Win{0x41000000, 0x41800000};
constexpr AddrRange kP4Win{0x40000000, 0x4C000000};

// Released chips first (find_chip's "supported" list), then esptool v4.8.1's pre-release ids.
constexpr ChipInfo kChips[] = {
    {"esp32", "ESP32", 0x0000, true, 0x1000, k64K, false, kEsp32Irom, kEsp32Drom, kEsp32Map, kEsp32Freqs,
     0x3FFB0000, 0x40080000},
    {"esp32s2", "ESP32-S2", 0x0002, true, 0x1000, k64K, false, kS2Irom, kS2Drom, kEsp32S2Map, kEsp32Freqs,
     0x3FFBE000, 0x40022000},
    {"esp32s3", "ESP32-S3", 0x0009, true, 0x0, k64K, false, kS3Irom, kS3Drom, kEsp32S3Map, kEsp32Freqs,
     0x3FC90000, 0x40374000},
    {"esp32c2", "ESP32-C2", 0x000C, true, 0x0, k64K, true, kC2Irom, kC2Drom, kEsp32C2Map, kEsp32C2Freqs,
     0x3FCA0000, 0x4037C000},
    {"esp32c3", "ESP32-C3", 0x0005, true, 0x0, k64K, false, kC3Irom, kC3Drom, kEsp32C3Map, kEsp32Freqs,
     0x3FC88000, 0x40380000},
    {"esp32c6", "ESP32-C6", 0x000D, true, 0x0, k64K, true, kC6Irom, kC6Drom, kEsp32C6Map, kEsp32C6Freqs,
     0x40820000, 0x40800000},
    {"esp32h2", "ESP32-H2", 0x0010, true, 0x0, k64K, true, kC6Irom, kC6Drom, kEsp32C6Map, kEsp32H2Freqs,
     0x40820000, 0x40800000},
    {"esp32p4", "ESP32-P4", 0x0012, true, 0x2000, k64K, false, kP4Win, kP4Win, kEsp32P4Map, kEsp32Freqs,
     0x4FF10000, 0x4FF00000},
    {"esp32c5", "ESP32-C5", 0x0017, true, 0x2000, k64K, true, kC6Irom, kC6Drom, kEsp32C5Map, kEsp32C5Freqs,
     0x40820000, 0x40800000},
    {"esp32c61", "ESP32-C61", 0x0014, true, 0x0, k64K, true, kC6Irom, kC6Drom, kEsp32C61Map, kEsp32C5Freqs,
     0x40820000, 0x40800000},
    {"esp32s3beta2", "ESP32-S3(beta2)", 0x0004, false, 0x0, k64K, false, kS3Irom, kS3Drom, kEsp32S3Map,
     kEsp32Freqs, 0x3FC90000, 0x40374000},
    {"esp32c6beta", "ESP32-C6(beta)", 0x0007, false, 0x0, k64K, false, kC3Irom, kC3Drom, kEsp32C3Map,
     kEsp32Freqs, 0x3FC88000, 0x40380000},
    {"esp32h2beta1", "ESP32-H2(beta1)", 0x000A, false, 0x0, k64K, false, kC3Irom, kC3Drom, kNoMemoryMap,
     kEsp32H2Freqs, 0, 0},
    {"esp32h2beta2", "ESP32-H2(beta2)", 0x000E, false, 0x0, k64K, false, kC3Irom, kC3Drom, kNoMemoryMap,
     kEsp32H2Freqs, 0, 0},
    {"esp32c5beta3", "ESP32-C5(beta3)", 0x0011, false, 0x0, k64K, true, kC5B3Win, kC5B3Win, kEsp32C5Beta3Map,
     kEsp32C5Freqs, 0x40820000, 0x40800000},
};

constexpr MemRegion kEsp8266Map[] = {
    {0x3FF00000, 0x3FF00010, "DPORT"},
    {0x3FFE8000, 0x40000000, "DRAM"},
    {0x40100000, 0x40108000, "IRAM"},
    {0x40201010, 0x402E1010, "IROM"},
};

// chip_id 0xFFFF: ESP8266 headers have no chip id (and 0 would be the ESP32's).
constexpr ChipInfo kEsp8266{
    "esp8266",   "ESP8266",   0xFFFF,      true, 0x0, k64K, false, AddrRange{0x40200000, 0x40300000},
    AddrRange{}, kEsp8266Map, kEsp32Freqs, 0,    0};

struct SizeName {
  uint8_t bits;
  std::string_view name;
};
constexpr SizeName kEsp8266FlashSizes[] = {{0x00, "512KB"},  {0x10, "256KB"}, {0x20, "1MB"},
                                           {0x30, "2MB"},    {0x40, "4MB"},   {0x50, "2MB-c1"},
                                           {0x60, "4MB-c1"}, {0x80, "8MB"},   {0x90, "16MB"}};

constexpr std::string_view kFlashSizes[] = {"1MB", "2MB", "4MB", "8MB", "16MB", "32MB", "64MB", "128MB"};

}  // namespace

std::span<const ChipInfo> all_chips() { return kChips; }

const ChipInfo& esp8266_chip() { return kEsp8266; }
bool is_esp8266(const ChipInfo& chip) { return &chip == &kEsp8266; }

std::string_view esp8266_flash_size_name(uint8_t size_bits) {
  for (const auto& s : kEsp8266FlashSizes)
    if (s.bits == size_bits) return s.name;
  return {};
}

std::string normalise_chip_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c == '-' || c == '(' || c == ')') continue;
    out.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
  }
  return out;
}

const ChipInfo* find_chip(std::string_view name) {
  std::string n = normalise_chip_name(name);
  for (const auto& c : kChips)
    if (c.name == n) return &c;
  return nullptr;
}

const ChipInfo* find_chip_by_id(uint16_t chip_id) {
  for (const auto& c : kChips)
    if (c.chip_id == chip_id) return &c;
  return nullptr;
}

std::string supported_chip_names() {
  std::string s;
  for (const auto& c : kChips) {
    if (!c.released) continue;
    if (!s.empty()) s += ", ";
    s += c.name;
  }
  return s;
}

bool segment_is_mapped(const ChipInfo& chip, uint32_t load_addr) {
  return chip.irom_map.contains(load_addr) || chip.drom_map.contains(load_addr);
}

std::string memory_type_names(const ChipInfo& chip, uint32_t addr, std::string_view sep) {
  std::string s;
  for (const auto& r : chip.memory_map) {
    if (addr < r.start || addr >= r.end) continue;
    if (!s.empty()) s += sep;
    s += r.name;
  }
  return s;
}

bool has_memory_type(const ChipInfo& chip, uint32_t addr, std::string_view name) {
  return std::any_of(chip.memory_map.begin(), chip.memory_map.end(),
                     [&](const MemRegion& r) { return r.name == name && addr >= r.start && addr < r.end; });
}

std::string_view flash_freq_name(const ChipInfo& chip, uint8_t code) {
  for (const auto& f : chip.flash_freqs)
    if (f.code == code) return f.name;
  return {};
}

std::string_view flash_size_name(uint8_t size_bits) {
  unsigned idx = size_bits >> 4;
  return idx < std::size(kFlashSizes) ? kFlashSizes[idx] : std::string_view{};
}

std::span<const std::string_view> flash_size_names() { return kFlashSizes; }

std::optional<uint8_t> flash_size_code(std::string_view name) {
  for (size_t i = 0; i < std::size(kFlashSizes); ++i)
    if (kFlashSizes[i] == name) return static_cast<uint8_t>(i << 4);
  return std::nullopt;
}

std::string flash_size_list() {
  std::string out;
  for (auto n : kFlashSizes) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

}  // namespace ota32
