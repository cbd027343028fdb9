#include "core/hash.h"

#include <mbedtls/md5.h>
#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>

namespace ota32 {

struct Sha256::Impl {
  mbedtls_sha256_context ctx;
};

Sha256::Sha256() : impl_(std::make_unique<Impl>()) {
  mbedtls_sha256_init(&impl_->ctx);
  mbedtls_sha256_starts_ret(&impl_->ctx, 0);
}
Sha256::~Sha256() {
  if (impl_) mbedtls_sha256_free(&impl_->ctx);
}
Sha256::Sha256(Sha256&&) noexcept = default;
Sha256& Sha256::operator=(Sha256&&) noexcept = default;

void Sha256::update(ByteView data) { mbedtls_sha256_update_ret(&impl_->ctx, data.data(), data.size()); }

Sha256Digest Sha256::finish() {
  Sha256Digest d{};
  mbedtls_sha256_finish_ret(&impl_->ctx, d.data());
  mbedtls_sha256_starts_ret(&impl_->ctx, 0);
  return d;
}

struct Md5::Impl {
  mbedtls_md5_context ctx;
};

Md5::Md5() : impl_(std::make_unique<Impl>()) {
  mbedtls_md5_init(&impl_->ctx);
  mbedtls_md5_starts_ret(&impl_->ctx);
}
Md5::~Md5() { mbedtls_md5_free(&impl_->ctx); }

void Md5::update(ByteView data) { mbedtls_md5_update_ret(&impl_->ctx, data.data(), data.size()); }

Md5Digest Md5::finish() {
  Md5Digest d{};
  mbedtls_md5_finish_ret(&impl_->ctx, d.data());
  mbedtls_md5_starts_ret(&impl_->ctx);
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
  mbedtls_sha512_ret(data.data(), data.size(), d.data(), /*is384=*/1);
  return d;
}

}  // namespace ota32
