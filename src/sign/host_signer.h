// Host-side Secure Boot v2 key generation and signing with OpenSSL 3 (espsecure.py generate_signing_key /
// sign_data --version 2). Linked into ota32-sign and ota32-serve only, never into ota32, whose format and
// device commands must not load libcrypto at start (design.md: start-up cost). Verification is mbedTLS's
// (format/secure_boot_v2_crypto.h), as on the chip.
#pragma once

#include <string>

#include "format/secure_boot_v2.h"

namespace ota32 {

// A new private key in PEM, as espsecure writes one: "RSA PRIVATE KEY" (3072 bits, e = 65537) or
// "EC PRIVATE KEY" (named curve).
Result<std::string> generate_signing_key(SigScheme scheme);

// A PEM private key as a block signer: RSA-PSS (SHA-256, MGF1-SHA-256, salt 32) or ECDSA over the
// pre-computed image digest. invalid_argument: not a PEM private key, encrypted, wrong size or curve.
Result<BlockSigner> load_signing_key(ByteView private_pem);

// The public half of a PEM private key, as "PUBLIC KEY" PEM (SubjectPublicKeyInfo). A public key is
// returned re-encoded.
Result<std::string> public_key_pem(ByteView pem);

// A signature made elsewhere (an HSM) for the key in `public_pem`: RSA the raw 384-byte big-endian PSS
// signature, ECDSA DER (r, s). The signer checks it against the digest (bad_signature) before it is used.
Result<BlockSigner> precomputed_signer(ByteView public_pem, Bytes signature);

}  // namespace ota32
