// ESP application / bootloader images (esp_image_header_t, segments, checksum, appended SHA-256) and the
// descriptors inside them (esp_app_desc_t, esp_bootloader_desc_t). spec/esp-app-image.md §1-7.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/bytes.h"
#include "core/hash.h"
#include "core/result.h"
#include "format/chip.h"

namespace ota32 {

constexpr uint8_t kImageMagic = 0xE9;           // ESP_IMAGE_HEADER_MAGIC
constexpr uint8_t kChecksumSeed = 0xEF;         // ESP_CHECKSUM_MAGIC
constexpr uint32_t kAppDescMagic = 0xABCD5432;  // ESP_APP_DESC_MAGIC_WORD
constexpr uint8_t kBootloaderDescMagic = 0x50;  // ESP_BOOTLOADER_DESC_MAGIC_BYTE
constexpr size_t kImageHeaderSize = 24;
constexpr size_t kSegmentHeaderSize = 8;
constexpr size_t kAppDescSize = 256;
constexpr size_t kBootloaderDescSize = 80;
constexpr size_t kAppDescImageOffset = 0x20;  // header + first segment header
constexpr unsigned kMaxSegments = 16;         // ESP_IMAGE_MAX_SEGMENTS
constexpr uint32_t kMaxSegmentLength = 0x1000000;

enum class FlashMode : uint8_t { qio = 0, qout = 1, dio = 2, dout = 3 };
std::string_view flash_mode_name(uint8_t mode);  // "QIO".. or empty for other values

struct ImageHeader {
  uint8_t magic = kImageMagic;
  uint8_t segment_count = 0;
  uint8_t spi_mode = 0;
  uint8_t spi_speed_size = 0;  // low nibble speed code, high nibble size code
  uint32_t entry_addr = 0;
  uint8_t wp_pin = 0xEE;
  std::array<uint8_t, 3> spi_pin_drv{};
  uint16_t chip_id = 0;
  uint8_t min_chip_rev = 0;  // legacy
  uint16_t min_chip_rev_full = 0;
  uint16_t max_chip_rev_full = 0xFFFF;
  uint8_t hash_appended = 1;

  uint8_t spi_speed() const { return spi_speed_size & 0x0F; }
  uint8_t spi_size() const { return spi_speed_size & 0xF0; }
};

// Parses the 24 header bytes (only a short buffer and a wrong magic are errors here: the other fields are
// judged by verify_image, as the bootloader does).
Result<ImageHeader> parse_image_header(ByteView first_24_bytes);
void write_image_header(const ImageHeader& h, uint8_t out[kImageHeaderSize]);

struct ImageSegment {
  uint32_t load_addr = 0;
  uint32_t data_len = 0;
  uint32_t data_offset = 0;  // file offset of the data (its 8-byte header is just before)
  uint32_t header_offset() const { return data_offset - static_cast<uint32_t>(kSegmentHeaderSize); }
};

struct AppDescription {
  uint32_t magic_word = kAppDescMagic;
  uint32_t secure_version = 0;
  std::string version, project_name, time, date, idf_ver;  // up to the first NUL
  Sha256Digest app_elf_sha256{};
  uint16_t min_efuse_blk_rev_full = 0, max_efuse_blk_rev_full = 0;
  uint8_t mmu_page_size = 0;  // log2; 0 = legacy (default page size)
};
// Fails (not_found) when the magic word is wrong, like esp_ota_get_partition_description().
Result<AppDescription> parse_app_desc(ByteView b256);
// Serialises into 256 bytes (strings truncated to their fields).
std::array<uint8_t, kAppDescSize> serialize_app_desc(const AppDescription& d);

struct BootloaderDescription {
  uint8_t magic_byte = kBootloaderDescMagic;
  uint8_t secure_version = 0;
  uint32_t version = 0;
  std::string idf_ver, date_time;
};
Result<BootloaderDescription> parse_bootloader_desc(ByteView b80);
// Serialises into 80 bytes (strings truncated to their fields; reserved bytes 0).
std::array<uint8_t, kBootloaderDescSize> serialize_bootloader_desc(const BootloaderDescription& d);

struct AppImage {
  ImageHeader header;
  std::vector<ImageSegment> segments;
  uint8_t stored_checksum = 0;
  uint8_t calculated_checksum = 0;
  uint32_t checksum_offset = 0;
  std::optional<Sha256Digest> stored_sha256;  // absent if not appended, or the file ends early
  uint32_t image_size = 0;                    // bytes the bootloader reads: segments, padding, checksum, hash
  std::optional<AppDescription> app_desc;     // segment 0 data, if its magic matches
  std::optional<BootloaderDescription> bootloader_desc;  // segment 0 data, if no app desc and 0x50 magic
};

// Walks the structure: header, every segment within the file, checksum byte, stored hash. Errors (corrupt)
// name the file, the segment index and the offset. The checksum and hash values are not judged here.
Result<AppImage> parse_image(ByteView data, std::string_view file_name = "image");

enum class ImageKind { automatic, app, bootloader };

struct VerifyOptions {
  const ChipInfo* chip = nullptr;  // nullptr: the chip named by the header's chip_id
  bool check_hash = true;
  ImageKind kind = ImageKind::automatic;  // automatic: app if any segment is flash-mapped
  std::string_view file_name = "image";
};

// Checks what the ESP-IDF bootloader checks, and stops at the first failure: chip id, segment count,
// segment lengths, each segment inside the chip's memory map, flash-mapped segments on the right MMU page
// offset, the app descriptor in segment 0 (apps), checksum, SHA-256.
Result<void> verify_image(const AppImage& img, ByteView data, const VerifyOptions& opt);

// XOR checksum over the segments' data, seeded with 0xEF.
uint8_t image_checksum(const AppImage& img, ByteView data);
// SHA-256 of bytes [0, checksum_offset], what the appended hash should be.
Sha256Digest image_sha256(const AppImage& img, ByteView data);

}  // namespace ota32
