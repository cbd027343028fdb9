// Byte spans and bounds-checked little-endian readers / writers. Parsers never index raw buffers.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.h"

namespace ota32 {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;

inline ByteView as_bytes(std::string_view s) {
  return ByteView(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}
inline std::string_view as_chars(ByteView b) {
  return std::string_view(reinterpret_cast<const char*>(b.data()), b.size());
}

inline uint16_t load_le16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }
inline uint32_t load_le32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}
inline void store_le16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}
inline void store_le32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

// Reads from a span, failing with ErrorCode::corrupt ("<what>: truncated at offset 0x.. ...") instead of
// reading past the end. Offsets in messages are relative to the span's start plus `base`.
class ByteReader {
 public:
  explicit ByteReader(ByteView data, std::string what = "data", uint64_t base = 0)
      : data_(data), what_(std::move(what)), base_(base) {}

  size_t offset() const { return pos_; }
  size_t size() const { return data_.size(); }
  size_t remaining() const { return data_.size() - pos_; }
  bool at_end() const { return pos_ == data_.size(); }
  ByteView data() const { return data_; }

  Result<uint8_t> u8();
  Result<uint16_t> u16();
  Result<uint32_t> u32();
  Result<ByteView> bytes(size_t n);
  Result<void> skip(size_t n);
  Result<void> seek(size_t pos);
  // Reads a fixed-size field holding a NUL-terminated (or full-width) string.
  Result<std::string> fixed_string(size_t n);

  Error truncated(size_t need) const;

 private:
  ByteView data_;
  std::string what_;
  uint64_t base_;
  size_t pos_ = 0;
};

// Appends little-endian values to a byte vector.
class ByteWriter {
 public:
  ByteWriter() = default;
  explicit ByteWriter(Bytes initial) : out_(std::move(initial)) {}

  void u8(uint8_t v) { out_.push_back(v); }
  void u16(uint16_t v);
  void u32(uint32_t v);
  void bytes(ByteView b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void fill(size_t n, uint8_t v) { out_.insert(out_.end(), n, v); }
  // Writes s into a field of n bytes, NUL-padded (s must fit).
  void fixed_string(std::string_view s, size_t n);
  void patch_u32(size_t pos, uint32_t v);

  size_t size() const { return out_.size(); }
  const Bytes& view() const { return out_; }
  Bytes take() { return std::move(out_); }

 private:
  Bytes out_;
};

// Lower-case hex of the bytes, and the reverse (accepts upper or lower case, no separators).
std::string to_hex(ByteView b);
Result<Bytes> from_hex(std::string_view hex);

}  // namespace ota32
