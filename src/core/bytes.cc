#include "core/bytes.h"

#include <fmt/format.h>

#include <cstring>

namespace ota32 {

Error ByteReader::truncated(size_t need) const {
  return Error(ErrorCode::corrupt, fmt::format("{}: truncated at offset {:#x}: need {} bytes, {} left", what_,
                                               base_ + pos_, need, remaining()));
}

Result<uint8_t> ByteReader::u8() {
  if (remaining() < 1) return truncated(1);
  return data_[pos_++];
}

Result<uint16_t> ByteReader::u16() {
  if (remaining() < 2) return truncated(2);
  uint16_t v = load_le16(data_.data() + pos_);
  pos_ += 2;
  return v;
}

Result<uint32_t> ByteReader::u32() {
  if (remaining() < 4) return truncated(4);
  uint32_t v = load_le32(data_.data() + pos_);
  pos_ += 4;
  return v;
}

Result<ByteView> ByteReader::bytes(size_t n) {
  if (remaining() < n) return truncated(n);
  ByteView v = data_.subspan(pos_, n);
  pos_ += n;
  return v;
}

Result<void> ByteReader::skip(size_t n) {
  if (remaining() < n) return truncated(n);
  pos_ += n;
  return {};
}

Result<void> ByteReader::seek(size_t pos) {
  if (pos > data_.size()) {
    return Error(ErrorCode::corrupt, fmt::format("{}: offset {:#x} is past the end ({:#x} bytes)", what_,
                                                 base_ + pos, data_.size()));
  }
  pos_ = pos;
  return {};
}

Result<std::string> ByteReader::fixed_string(size_t n) {
  auto b = bytes(n);
  if (!b) return b.error();
  const auto* p = reinterpret_cast<const char*>(b->data());
  return std::string(p, strnlen(p, n));
}

void ByteWriter::u16(uint16_t v) {
  uint8_t b[2];
  store_le16(b, v);
  out_.insert(out_.end(), b, b + 2);
}

void ByteWriter::u32(uint32_t v) {
  uint8_t b[4];
  store_le32(b, v);
  out_.insert(out_.end(), b, b + 4);
}

void ByteWriter::fixed_string(std::string_view s, size_t n) {
  size_t k = s.size() < n ? s.size() : n;
  out_.insert(out_.end(), s.begin(), s.begin() + static_cast<std::ptrdiff_t>(k));
  out_.insert(out_.end(), n - k, 0);
}

void ByteWriter::patch_u32(size_t pos, uint32_t v) {
  if (pos + 4 > out_.size()) out_.resize(pos + 4, 0);
  store_le32(out_.data() + pos, v);
}

std::string to_hex(ByteView b) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string s;
  s.resize(b.size() * 2);
  for (size_t i = 0; i < b.size(); ++i) {
    s[2 * i] = kDigits[b[i] >> 4];
    s[2 * i + 1] = kDigits[b[i] & 15];
  }
  return s;
}

static int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<Bytes> from_hex(std::string_view hex) {
  if (hex.size() % 2 != 0)
    return Error(ErrorCode::invalid_argument, "hex string has an odd number of digits");
  Bytes out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("not a hex digit at position {}", hi < 0 ? 2 * i : 2 * i + 1));
    }
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return out;
}

}  // namespace ota32
