// Hashing facade (SHA-256, MD5, SHA-384) over libcrypto's digest functions, which use the CPU's SHA
// extensions (SHA-NI) where it has them; ota32 links them statically (hash.cc; design.md "Start-up cost").
#pragma once

#include <array>
#include <memory>

#include "core/bytes.h"

namespace ota32 {

using Sha256Digest = std::array<uint8_t, 32>;
using Md5Digest = std::array<uint8_t, 16>;
using Sha384Digest = std::array<uint8_t, 48>;  // Secure Boot v2 ECDSA P-384 image digest

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  Sha256(Sha256&&) noexcept;
  Sha256& operator=(Sha256&&) noexcept;

  void update(ByteView data);
  Sha256Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class Md5 {
 public:
  Md5();
  ~Md5();
  Md5(const Md5&) = delete;
  Md5& operator=(const Md5&) = delete;

  void update(ByteView data);
  Md5Digest finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

Sha256Digest sha256(ByteView data);
Md5Digest md5(ByteView data);
Sha384Digest sha384(ByteView data);

}  // namespace ota32
