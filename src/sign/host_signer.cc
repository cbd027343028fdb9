#include "sign/host_signer.h"

#include <fmt/format.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <memory>

#include "format/secure_boot_v2_crypto.h"

namespace ota32 {
namespace {

struct Deleter {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
  void operator()(BIO* p) const { BIO_free(p); }
  void operator()(ECDSA_SIG* p) const { ECDSA_SIG_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, Deleter>;
using BioPtr = std::unique_ptr<BIO, Deleter>;
using EcdsaSigPtr = std::unique_ptr<ECDSA_SIG, Deleter>;

// OpenSSL's reason for the last failure, for messages ("" when its queue is empty).
std::string openssl_reason() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Bytes reversed(ByteView b) { return Bytes(b.rbegin(), b.rend()); }

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

// No passphrase prompt: an encrypted key fails to load instead of waiting on the terminal.
int no_password(char*, int, int, void*) { return -1; }

Result<PkeyPtr> read_private_key(ByteView pem) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr));
  if (!key) {
    std::string why = openssl_reason();
    bool encrypted = as_chars(pem).find("ENCRYPTED") != std::string_view::npos;
    return Error(ErrorCode::invalid_argument,
                 encrypted ? std::string("the private key is encrypted; decrypt it first "
                                         "(openssl pkey -in KEY.pem -out PLAIN.pem)")
                           : fmt::format("does not appear to be an RSA or ECDSA private key in PEM format{}",
                                         why.empty() ? "" : " (" + why + ")"));
  }
  return key;
}

Result<std::string> write_public_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PUBKEY(bio.get(), key))
    return Error(ErrorCode::internal, "cannot encode the public key: " + openssl_reason());
  return bio_text(bio.get());
}

// r | s, each `n` bytes little-endian, from a DER ECDSA signature.
Result<Bytes> ecdsa_der_to_stored(ByteView der, size_t n) {
  const unsigned char* p = der.data();
  EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (!sig || p != der.data() + der.size())
    return Error(ErrorCode::invalid_argument, "the ECDSA signature is not DER-encoded (r, s)");
  const BIGNUM *r = nullptr, *s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  Bytes rb(n), sb(n);
  if (BN_bn2binpad(r, rb.data(), static_cast<int>(n)) < 0 ||
      BN_bn2binpad(s, sb.data(), static_cast<int>(n)) < 0)
    return Error(ErrorCode::invalid_argument, "the ECDSA signature's r or s is larger than the curve");
  Bytes out = reversed(rb);
  Bytes sl = reversed(sb);
  out.insert(out.end(), sl.begin(), sl.end());
  return out;
}

Result<Bytes> sign_digest(EVP_PKEY* key, SigScheme scheme, ByteView digest) {
  PkeyCtxPtr ctx(EVP_PKEY_CTX_new(key, nullptr));
  bool ok = ctx && EVP_PKEY_sign_init(ctx.get()) == 1;
  if (ok && scheme == SigScheme::rsa3072) {
    ok = EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_PSS_PADDING) == 1 &&
         EVP_PKEY_CTX_set_signature_md(ctx.get(), EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EVP_sha256()) == 1 &&
         EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx.get(), 32) == 1;
  }
  size_t len = 0;
  ok = ok && EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) == 1;
  Bytes sig(len);
  ok = ok && EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) == 1;
  if (!ok) return Error(ErrorCode::internal, "signing failed: " + openssl_reason());
  sig.resize(len);
  if (scheme == SigScheme::rsa3072) return reversed(sig);
  return ecdsa_der_to_stored(sig, ecdsa_coordinate_size(scheme));
}

}  // namespace

Result<std::string> generate_signing_key(SigScheme scheme) {
  PkeyPtr key;
  switch (scheme) {
    case SigScheme::rsa3072:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{3072}));
      break;
    case SigScheme::ecdsa192:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-192"));
      break;
    case SigScheme::ecdsa256:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"));
      break;
    case SigScheme::ecdsa384:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384"));
      break;
  }
  if (!key) return Error(ErrorCode::internal, "key generation failed: " + openssl_reason());
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey_traditional(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr))
    return Error(ErrorCode::internal, "cannot encode the private key: " + openssl_reason());
  return bio_text(bio.get());
}

Result<BlockSigner> load_signing_key(ByteView private_pem) {
  OTA32_ASSIGN(PkeyPtr key, read_private_key(private_pem));
  OTA32_ASSIGN(std::string pub, write_public_pem(key.get()));
  OTA32_ASSIGN(SbPublicKey sb, sb_public_key_from_pem(as_bytes(pub)));
  std::shared_ptr<EVP_PKEY> shared(key.release(), EVP_PKEY_free);
  SigScheme scheme = sb.scheme;
  return BlockSigner{std::move(sb),
                     [shared, scheme](ByteView digest) { return sign_digest(shared.get(), scheme, digest); }};
}

Result<std::string> public_key_pem(ByteView pem) {
  auto priv = read_private_key(pem);
  if (priv) return write_public_pem(priv->get());
  BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  PkeyPtr pub(PEM_read_bio_PUBKEY(bio.get(), nullptr, no_password, nullptr));
  ERR_clear_error();
  if (!pub) return priv.error();
  return write_public_pem(pub.get());
}

Result<BlockSigner> precomputed_signer(ByteView public_pem, Bytes signature) {
  OTA32_ASSIGN(SbPublicKey key, sb_public_key_from_pem(public_pem));
  Bytes stored;
  if (key.scheme == SigScheme::rsa3072) {
    if (signature.size() != 384) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("an RSA-3072 signature has 384 bytes, this one {}", signature.size()));
    }
    stored = reversed(signature);
  } else {
    OTA32_ASSIGN(stored, ecdsa_der_to_stored(signature, ecdsa_coordinate_size(key.scheme)));
  }
  return BlockSigner{key, [key, stored](ByteView digest) -> Result<Bytes> {
                       SignatureBlock b{key.scheme, Bytes(digest.begin(), digest.end()), key, stored};
                       if (!verify_block_signature(b, digest)) {
                         return Error(ErrorCode::bad_signature,
                                      "Signature verification failed: Invalid Signature: the pre-calculated "
                                      "signature was not made with the given public key over this image");
                       }
                       return stored;
                     }};
}

}  // namespace ota32
