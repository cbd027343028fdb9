#include "core/hash.h"

// OpenSSL's low-level digest functions (SHA256_Init/Update/Final, MD5_*, SHA384): deprecated in OpenSSL 3.0
// in favour of EVP, but they are the ones that need no provider machinery, so `ota32` links them statically
// from libcrypto.a (a few KiB: the digests, and the CPU feature probe that picks the SHA extensions) without
// loading libcrypto.so at start (design.md: start-up cost; docs/performance.md).
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/md5.h>
#include <openssl/sha.h>

namespace ota32 {

struct Sha256::Impl {
  SHA256_CTX ctx;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) { SHA256_Init(&impl_->ctx); }
Sha256::~Sha256() = default;
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(ByteView data) { SHA256_Update(&impl_->ctx, data.data(), data.size()); }

Sha256Digest Sha256::finish() {
  Sha256Digest d{};
  SHA256_Final(d.data(), &impl_->ctx);
  SHA256_Init(&impl_->ctx);
  return d;
}

struct Md5::Impl {
  MD5_CTX ctx;
};

Md5::Md5() : impl_(std::make_unique<Impl>()) { MD5_Init(&impl_->ctx); }
Md5::~Md5() = default;

void Md5::update(ByteView data) { MD5_Update(&impl_->ctx, data.data(), data.size()); }

Md5Digest Md5::finish() {
  Md5Digest d{};
  MD5_Final(d.data(), &impl_->ctx);
  MD5_Init(&impl_->ctx);
  return d;
}

Sha256Digest sha256(ByteView data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

Md5Digest md5(ByteView data) {
  Md5 h;
  h.update(data);
  return h.finish();
}

Sha384Digest sha384(ByteView data) {
  Sha384Digest d{};
  SHA384(data.data(), data.size(), d.data());
  return d;
}

}  // namespace ota32
