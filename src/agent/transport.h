// The byte pipe under the HTTP client: TCP, or TLS 1.2 over mbedTLS 2.28 (the chip's TLS library) with the
// server verified against a pinned CA the way esp-tls does it (cert_pem as trust anchor, host name / IP
// check unless skip_cert_common_name_check). Every connect, read and write has a timeout.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "agent/url.h"
#include "core/bytes.h"
#include "core/result.h"

namespace ota32::agent {

struct TlsOptions {
  std::string ca_pem;   // PEM trust anchor(s) (esp_http_client_config_t.cert_pem); empty = none given
  std::string ca_name;  // where ca_pem came from, for messages ("ca_cert.pem")
  // esp-tls skip_cert_common_name_check: no host name check and no SNI; the chain must still verify.
  bool skip_cert_common_name_check = false;
  // esp-tls common_name: check (and send as SNI) this name instead of the URL's host.
  std::string common_name;
};

class Connection {
 public:
  virtual ~Connection() = default;
  // Up to out.size() bytes; 0 when the peer closed cleanly (TCP FIN or TLS close_notify).
  // Errors: timeout (nothing within the timeout), unavailable (reset, TLS error).
  virtual Result<size_t> read(std::span<uint8_t> out) = 0;
  virtual Result<void> write_all(ByteView data) = 0;
};

// Opens TCP (http) or TLS (https) to url's host:port. Errors, each naming the host:
// - invalid_argument: https without a CA, a CA that does not parse;
// - unavailable: name not resolved, connection refused, TLS handshake failure;
// - timeout: no connection or handshake within `timeout`;
// - certificate_untrusted: "server certificate not trusted by the CA in <ca_name>", expired certificates;
// - certificate_name_mismatch: "server certificate is for <names>, not <host>".
Result<std::unique_ptr<Connection>> open_connection(const Url& url, const TlsOptions& tls,
                                                    std::chrono::milliseconds timeout);

// The names a certificate is valid for, as the verification sees them: subjectAltName DNS and IP entries,
// or the subject CN when there is no SAN. `der` is one DER certificate.
std::vector<std::string> certificate_names(ByteView der);

// True when `host` (a DNS name or an IP literal) is covered by the certificate: SAN DNS (exact or a single
// leading "*." label, case-insensitive), SAN iPAddress (for IP literals), or the CN when there is no SAN.
bool certificate_matches_host(ByteView der, const std::string& host);

}  // namespace ota32::agent
