// TLS for ota32-serve: zero-config certificates (a private CA and a server certificate whose SANs cover every
// local address, made with OpenSSL 3's C API) and the server's SSL_CTX with the suites ESP32 mbedTLS offers.
#pragma once

#include <openssl/ssl.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "core/result.h"

namespace ota32::server {

struct SslCtxDeleter {
  void operator()(SSL_CTX* ctx) const { SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxDeleter>;

// What a certificate says about itself, printed at start so that the operator can check it.
struct CertificateInfo {
  std::string subject;                    // "CN=ota32 server"
  std::string issuer;                     // "CN=ota32 private CA (host)"
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries, textual
  std::string sha256_fingerprint;  // "AB:CD:..." over the DER certificate, like `openssl x509 -fingerprint`
  std::string not_after;           // "2036-11-25 04:00:00 UTC"
  std::string key_type;            // "EC P-256", "RSA 2048"
};

Result<CertificateInfo> describe_certificate(const std::filesystem::path& pem);

// Every address of this host (getifaddrs: IPv4 and IPv6, loopback included, link-local IPv6 excluded because
// a SAN cannot carry its zone) and the names it is known by (hostname, its FQDN when resolvable, localhost).
std::vector<std::string> local_ip_addresses();
std::vector<std::string> local_host_names();

// The files of zero-config TLS inside the data directory.
struct ZeroConfigTls {
  std::filesystem::path ca_cert, ca_key, server_cert, server_key;
  bool created_ca = false;          // first start: a new CA was made
  bool issued_server_cert = false;  // a server certificate was (re)issued by the CA
  std::string reason;               // why it was (re)issued, for the start-up message
  // ca_cert.pem without ca_key.pem: the CA key is kept elsewhere (ota32 serve ca init) and the server
  // cannot issue certificates. `missing`: wanted names and addresses its certificate lacks (served as it is).
  bool offline_ca = false;
  std::vector<std::string> missing;
  // An exclusive lock on DATA/.tls.lock, held while this object (or a copy) lives: load the files
  // (make_server_context) before releasing it, so that another server starting on the same data
  // directory cannot rewrite them in between.
  std::shared_ptr<void> lock;
};

// Makes sure the data directory holds a CA (kept once made) and a server certificate signed by it whose SANs
// include every name and address given. A server certificate missing any of them (the host got a new
// address) is reissued by the same CA, so devices that trust ca_cert.pem keep working; the new certificate
// keeps the names the old one had (several hosts sharing one data directory end up in one certificate).
// Servers sharing the directory are serialised by a lock file (see ZeroConfigTls::lock).
// Keys are ECDSA P-256 (mbedTLS on the ESP32 verifies ECDSA and negotiates ECDHE-ECDSA), written 0600.
// With ca_cert.pem but no ca_key.pem (an offline CA) nothing is issued: a valid certificate that lacks names
// is kept (ZeroConfigTls::missing says which), a missing or unusable one is an error.
Result<ZeroConfigTls> ensure_zero_config_tls(const std::filesystem::path& data_dir,
                                             const std::vector<std::string>& dns_names,
                                             const std::vector<std::string>& ip_addresses);

// The data directory holds keys and the store. Absent: created 0700. Group- or world-writable: refused
// (another user could replace the keys or the database). Otherwise group- or world-accessible: a warning
// line is returned (its files are 0600 anyway); empty when it is private.
Result<std::string> prepare_data_dir(const std::filesystem::path& data_dir);

// `ota32 serve ca init`: a new CA (ECDSA P-256, 20 years) in ca_dir (created 0700): ca_cert.pem and
// ca_key.pem (0600). A directory that already holds a CA is refused, never overwritten.
Result<void> create_offline_ca(const std::filesystem::path& ca_dir);

// `ota32 serve ca issue` (and the second half of `ca init`): a new server key and certificate signed by the
// CA in ca_dir, for the names and addresses given plus those the current certificate has, written into
// data_dir with a copy of ca_cert.pem and never the CA key. Refused when data_dir holds a CA key of its own
// or the certificate of another CA.
struct IssuedCertificate {
  std::filesystem::path ca_cert, server_cert;
  std::string reason;  // why the previous certificate was replaced
};
Result<IssuedCertificate> issue_from_offline_ca(const std::filesystem::path& ca_dir,
                                                const std::filesystem::path& data_dir,
                                                const std::vector<std::string>& dns_names,
                                                const std::vector<std::string>& ip_addresses);

// The server context: TLS 1.2 and 1.3, ECDHE with AES-128-GCM / AES-256-GCM / ChaCha20 (ECDSA or RSA
// certificates), no renegotiation, no session cache or tickets (TLS 1.3 included: no NewSessionTicket;
// ESP-IDF does not resume by default, so a cache only costs memory), buffers released when idle. Checks that
// the key matches the certificate. kernel_tls: after a TLS 1.2 handshake OpenSSL hands the record encryption
// to the kernel (kTLS, SSL_OP_ENABLE_KTLS) when the kernel offers it for the negotiated cipher; the server
// then sends files with SSL_sendfile (no copy through user space). TLS 1.3 connections stay in user space:
// a KeyUpdate from the client would desynchronise the kernel's key (tls.cc). Without kernel support nothing
// changes.
Result<SslCtxPtr> make_server_context(const std::filesystem::path& cert_chain,
                                      const std::filesystem::path& key, bool kernel_tls = false);

// Whether this kernel offers the TLS upper-layer protocol (Linux kTLS): asks for it on a fresh, unconnected
// TCP socket, which makes the kernel load the `tls` module if it may (CAP_NET_ADMIN). The error says why not
// (no such ULP: the module is absent or not loaded).
Result<void> probe_kernel_tls();

}  // namespace ota32::server
