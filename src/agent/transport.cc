#include "agent/transport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>
#include <mbedtls/oid.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace ota32::agent {
namespace {

using std::chrono::milliseconds;

std::string host_port(const Url& url) {
  return url.host.find(':') != std::string::npos ? fmt::format("[{}]:{}", url.host, url.port)
                                                 : fmt::format("{}:{}", url.host, url.port);
}

std::string mbedtls_message(int ret) {
  char buf[160];
  mbedtls_strerror(ret, buf, sizeof buf);
  return fmt::format("{} (-0x{:04X})", buf, static_cast<unsigned>(-ret));
}

// A non-blocking TCP socket; every wait is a poll() bounded by the timeout.
class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  Socket(const Socket&) = delete;
  Socket& operator=(const Socket&) = delete;

  int fd() const { return fd_; }

  // 1 ready, 0 timed out, -1 error.
  int wait(short events, milliseconds timeout) const {
    pollfd p{fd_, events, 0};
    for (int attempt = 0; attempt < 100; ++attempt) {  // EINTR retries, bounded
      int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
      if (r >= 0) return r > 0 ? 1 : 0;
      if (errno != EINTR) return -1;
    }
    return -1;
  }

 private:
  int fd_ = -1;
};

Result<std::unique_ptr<Socket>> tcp_connect(const Url& url, milliseconds timeout) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string port = std::to_string(url.port);
  if (int rc = ::getaddrinfo(url.host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    return Error(ErrorCode::unavailable,
                 fmt::format("cannot resolve host '{}': {}", url.host, gai_strerror(rc)));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> guard(res, freeaddrinfo);
  std::string last_error = "no address";
  bool timed_out = false;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    int fd = ::socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      last_error = std::strerror(errno);
      continue;
    }
    auto sock = std::make_unique<Socket>(fd);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) return sock;
    if (errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    int w = sock->wait(POLLOUT, timeout);
    if (w == 0) {
      timed_out = true;
      last_error = fmt::format("no answer within {} ms", timeout.count());
      continue;
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (w > 0 && err == 0) return sock;
    last_error = std::strerror(err != 0 ? err : errno);
  }
  return Error(timed_out ? ErrorCode::timeout : ErrorCode::unavailable,
               fmt::format("cannot connect to {}: {}", host_port(url), last_error));
}

// Sends everything or fails; used by both transports.
Result<size_t> socket_send(const Socket& s, ByteView data, milliseconds timeout) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    ssize_t n = ::send(s.fd(), data.data(), data.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Error(ErrorCode::unavailable, fmt::format("send failed: {}", std::strerror(errno)));
    }
    int w = s.wait(POLLOUT, timeout);
    if (w == 0) return Error(ErrorCode::timeout, fmt::format("send timed out after {} ms", timeout.count()));
    if (w < 0) return Error(ErrorCode::unavailable, fmt::format("send failed: {}", std::strerror(errno)));
  }
  return Error(ErrorCode::unavailable, "send made no progress");
}

// 0 = peer closed.
Result<size_t> socket_recv(const Socket& s, std::span<uint8_t> out, milliseconds timeout) {
  for (int attempt = 0; attempt < 1000; ++attempt) {
    ssize_t n = ::recv(s.fd(), out.data(), out.size(), 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == ECONNRESET) return Error(ErrorCode::unavailable, "connection reset by peer");
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      return Error(ErrorCode::unavailable, fmt::format("receive failed: {}", std::strerror(errno)));
    }
    int w = s.wait(POLLIN, timeout);
    if (w == 0) {
      return Error(ErrorCode::timeout, fmt::format("no data from the server within {} ms", timeout.count()));
    }
    if (w < 0) return Error(ErrorCode::unavailable, fmt::format("receive failed: {}", std::strerror(errno)));
  }
  return Error(ErrorCode::unavailable, "receive made no progress");
}

class PlainConnection final : public Connection {
 public:
  PlainConnection(std::unique_ptr<Socket> s, milliseconds timeout) : sock_(std::move(s)), timeout_(timeout) {}
  Result<size_t> read(std::span<uint8_t> out) override { return socket_recv(*sock_, out, timeout_); }
  Result<void> write_all(ByteView data) override {
    while (!data.empty()) {
      OTA32_ASSIGN(size_t n, socket_send(*sock_, data, timeout_));
      data = data.subspan(n);
    }
    return {};
  }

 private:
  std::unique_ptr<Socket> sock_;
  milliseconds timeout_;
};

// ---- certificate names (DER walk of the subjectAltName extension; mbedTLS 2.28 keeps only dNSName) ----

constexpr unsigned char kSanOid[] = {0x55, 0x1D, 0x11};  // 2.5.29.17

struct SanEntries {
  bool present = false;
  std::vector<std::string> dns;
  std::vector<Bytes> ips;  // 4 or 16 raw bytes
};

bool skip_element(unsigned char** p, const unsigned char* end) {
  if (end - *p < 1) return false;
  ++*p;
  size_t len;
  if (mbedtls_asn1_get_len(p, end, &len) != 0) return false;
  *p += len;
  return true;
}

SanEntries parse_san(ByteView der) {
  SanEntries out;
  auto* p = const_cast<unsigned char*>(der.data());
  const unsigned char* end = p + der.size();
  size_t len;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) return out;
  if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) return out;
  const unsigned char* tbs_end = p + len;
  for (int guard = 0; p < tbs_end && guard < 32; ++guard) {
    if (*p != (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_ASN1_CONSTRUCTED | 3)) {
      if (!skip_element(&p, tbs_end)) return out;
      continue;
    }
    if (mbedtls_asn1_get_tag(&p, tbs_end, &len, *p) != 0) return out;
    if (mbedtls_asn1_get_tag(&p, tbs_end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
      return out;
    const unsigned char* exts_end = p + len;
    for (int g2 = 0; p < exts_end && g2 < 64; ++g2) {
      if (mbedtls_asn1_get_tag(&p, exts_end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) {
        return out;
      }
      const unsigned char* ext_end = p + len;
      unsigned char* q = p;
      p = const_cast<unsigned char*>(ext_end);
      if (mbedtls_asn1_get_tag(&q, ext_end, &len, MBEDTLS_ASN1_OID) != 0) continue;
      bool is_san = len == sizeof kSanOid && std::memcmp(q, kSanOid, len) == 0;
      q += len;
      if (!is_san) continue;
      if (q < ext_end && *q == MBEDTLS_ASN1_BOOLEAN && !skip_element(&q, ext_end)) return out;
      if (mbedtls_asn1_get_tag(&q, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0) return out;
      if (mbedtls_asn1_get_tag(&q, ext_end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0) {
        return out;
      }
      out.present = true;
      const unsigned char* names_end = q + len;
      for (int g3 = 0; q < names_end && g3 < 256; ++g3) {
        unsigned char tag = *q++;
        if (mbedtls_asn1_get_len(&q, names_end, &len) != 0) return out;
        if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 2)) {
          out.dns.emplace_back(reinterpret_cast<const char*>(q), len);
        } else if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | 7) && (len == 4 || len == 16)) {
          out.ips.emplace_back(q, q + len);
        }
        q += len;
      }
    }
    return out;
  }
  return out;
}

std::string format_ip(const Bytes& ip) {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ip.size() == 4 ? AF_INET : AF_INET6, ip.data(), buf, sizeof buf);
  return buf;
}

std::string subject_cn(const mbedtls_x509_crt& crt) {
  for (const mbedtls_x509_name* n = &crt.subject; n != nullptr; n = n->next) {
    if (n->oid.p != nullptr && MBEDTLS_OID_CMP(MBEDTLS_OID_AT_CN, &n->oid) == 0) {
      return std::string(reinterpret_cast<const char*>(n->val.p), n->val.len);
    }
  }
  return {};
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

bool dns_matches(std::string_view pattern, std::string_view host) {
  if (iequals(pattern, host)) return true;
  if (pattern.starts_with("*.")) {
    auto dot = host.find('.');
    return dot != std::string_view::npos && dot > 0 && iequals(pattern.substr(1), host.substr(dot));
  }
  return false;
}

struct ParsedCert {
  mbedtls_x509_crt crt;
  bool ok = false;
  explicit ParsedCert(ByteView der) {
    mbedtls_x509_crt_init(&crt);
    ok = mbedtls_x509_crt_parse_der(&crt, der.data(), der.size()) == 0;
  }
  ~ParsedCert() { mbedtls_x509_crt_free(&crt); }
};

// ---- TLS over mbedTLS ----

struct VerifyRecord {
  uint32_t flags = 0;
  std::vector<std::string> leaf_names;
  std::string own_check_host;  // set when ota32 checks the name itself (IP literals)
};

int verify_callback(void* ctx, mbedtls_x509_crt* crt, int depth, uint32_t* flags) {
  auto* rec = static_cast<VerifyRecord*>(ctx);
  if (depth == 0) {
    ByteView der(crt->raw.p, crt->raw.len);
    rec->leaf_names = certificate_names(der);
    if (!rec->own_check_host.empty() && !certificate_matches_host(der, rec->own_check_host)) {
      *flags |= MBEDTLS_X509_BADCERT_CN_MISMATCH;
    }
  }
  rec->flags |= *flags;
  return 0;
}

int bio_send(void* ctx, const unsigned char* buf, size_t len);
int bio_recv_timeout(void* ctx, unsigned char* buf, size_t len, uint32_t timeout_ms);

class TlsConnection final : public Connection {
 public:
  TlsConnection(std::unique_ptr<Socket> s, milliseconds timeout) : sock_(std::move(s)), timeout_(timeout) {
    mbedtls_entropy_init(&entropy_);
    mbedtls_ctr_drbg_init(&drbg_);
    mbedtls_x509_crt_init(&ca_);
    mbedtls_ssl_config_init(&conf_);
    mbedtls_ssl_init(&ssl_);
  }
  ~TlsConnection() override {
    if (handshake_done_) mbedtls_ssl_close_notify(&ssl_);
    mbedtls_ssl_free(&ssl_);
    mbedtls_ssl_config_free(&conf_);
    mbedtls_x509_crt_free(&ca_);
    mbedtls_ctr_drbg_free(&drbg_);
    mbedtls_entropy_free(&entropy_);
  }

  Result<void> handshake(const Url& url, const TlsOptions& tls) {
    std::string ca_name = tls.ca_name.empty() ? "the given CA" : tls.ca_name;
    // mbedtls_x509_crt_parse wants PEM NUL-terminated with the NUL counted (esp-tls: cert_len = strlen+1).
    std::string pem = tls.ca_pem;
    int ret =
        mbedtls_x509_crt_parse(&ca_, reinterpret_cast<const unsigned char*>(pem.c_str()), pem.size() + 1);
    if (ret != 0) {
      return Error(
          ErrorCode::invalid_argument,
          fmt::format("{}: not a PEM CA certificate (mbedtls_x509_crt_parse of CA cert returned -0x{:04X})",
                      ca_name, static_cast<unsigned>(-ret)));
    }
    static const char kPers[] = "ota32-agent";
    ret = mbedtls_ctr_drbg_seed(&drbg_, mbedtls_entropy_func, &entropy_,
                                reinterpret_cast<const unsigned char*>(kPers), sizeof kPers - 1);
    if (ret != 0)
      return Error(ErrorCode::internal, "seeding the TLS random generator: " + mbedtls_message(ret));
    ret = mbedtls_ssl_config_defaults(&conf_, MBEDTLS_SSL_IS_CLIENT, MBEDTLS_SSL_TRANSPORT_STREAM,
                                      MBEDTLS_SSL_PRESET_DEFAULT);
    if (ret != 0) return Error(ErrorCode::internal, "TLS configuration: " + mbedtls_message(ret));
    // TLS 1.2 only, as esp-tls with CONFIG_MBEDTLS_SSL_PROTO_TLS1_3 off (the v5.5.5 default).
    mbedtls_ssl_conf_min_version(&conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_max_version(&conf_, MBEDTLS_SSL_MAJOR_VERSION_3, MBEDTLS_SSL_MINOR_VERSION_3);
    mbedtls_ssl_conf_authmode(&conf_, MBEDTLS_SSL_VERIFY_REQUIRED);
    mbedtls_ssl_conf_ca_chain(&conf_, &ca_, nullptr);
    mbedtls_ssl_conf_rng(&conf_, mbedtls_ctr_drbg_random, &drbg_);
    mbedtls_ssl_conf_read_timeout(&conf_, static_cast<uint32_t>(timeout_.count()));
    mbedtls_ssl_conf_verify(&conf_, verify_callback, &record_);
    ret = mbedtls_ssl_setup(&ssl_, &conf_);
    if (ret != 0) return Error(ErrorCode::internal, "TLS setup: " + mbedtls_message(ret));

    // Name check: mbedTLS checks DNS names (SAN dNSName, else CN) given to mbedtls_ssl_set_hostname, which
    // also sets SNI. mbedTLS 2.28 does not match SAN iPAddress, so IP literals are checked by ota32 (SAN IP,
    // SAN DNS text, or the CN when there is no SAN: the seed's CN=10.0.0.36 certificate) and sent without
    // SNI.
    std::string expected = tls.common_name.empty() ? url.host : tls.common_name;
    Url probe;
    probe.host = expected;
    if (!tls.skip_cert_common_name_check) {
      if (probe.host_is_ip()) {
        record_.own_check_host = expected;
      } else if ((ret = mbedtls_ssl_set_hostname(&ssl_, expected.c_str())) != 0) {
        return Error(ErrorCode::internal, "TLS host name: " + mbedtls_message(ret));
      }
    }
    mbedtls_ssl_set_bio(&ssl_, this, bio_send, nullptr, bio_recv_timeout);

    for (int attempt = 0; attempt < 64; ++attempt) {
      ret = mbedtls_ssl_handshake(&ssl_);
      if (ret == 0) {
        handshake_done_ = true;
        return {};
      }
      if (ret != MBEDTLS_ERR_SSL_WANT_READ && ret != MBEDTLS_ERR_SSL_WANT_WRITE) break;
    }
    std::string where = host_port(url);
    if (ret == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
      uint32_t flags = record_.flags | mbedtls_ssl_get_verify_result(&ssl_);
      std::string names;
      for (const auto& n : record_.leaf_names) names += (names.empty() ? "" : ", ") + n;
      if (names.empty()) names = "no name";
      if (flags & (MBEDTLS_X509_BADCERT_NOT_TRUSTED | MBEDTLS_X509_BADCERT_MISSING)) {
        return Error(
            ErrorCode::certificate_untrusted,
            fmt::format("{}: server certificate not trusted by the CA in {} (the certificate is for {})",
                        where, ca_name, names));
      }
      if (flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) {
        return Error(ErrorCode::certificate_name_mismatch,
                     fmt::format("{}: server certificate is for {}, not {}", where, names, expected));
      }
      char info[512];
      mbedtls_x509_crt_verify_info(info, sizeof info, "", flags);
      std::string text(info);
      while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
      for (auto& c : text) {
        if (c == '\n') c = ';';
      }
      return Error(ErrorCode::certificate_untrusted, fmt::format("{}: server certificate rejected: {}", where,
                                                                 text.empty() ? "verify failed" : text));
    }
    if (ret == MBEDTLS_ERR_SSL_TIMEOUT || timed_out_) {
      return Error(ErrorCode::timeout,
                   fmt::format("{}: TLS handshake timed out after {} ms", where, timeout_.count()));
    }
    return Error(ErrorCode::unavailable,
                 fmt::format("{}: TLS handshake failed: {}", where, mbedtls_message(ret)));
  }

  Result<size_t> read(std::span<uint8_t> out) override {
    for (int attempt = 0; attempt < 64; ++attempt) {
      int ret = mbedtls_ssl_read(&ssl_, out.data(), out.size());
      if (ret > 0) return static_cast<size_t>(ret);
      if (ret == 0 || ret == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || ret == MBEDTLS_ERR_SSL_CONN_EOF) return 0;
      if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) continue;
      if (ret == MBEDTLS_ERR_SSL_TIMEOUT) {
        return Error(ErrorCode::timeout,
                     fmt::format("no data from the server within {} ms", timeout_.count()));
      }
      return Error(ErrorCode::unavailable, fmt::format("TLS read failed: {}", mbedtls_message(ret)));
    }
    return Error(ErrorCode::unavailable, "TLS read made no progress");
  }

  Result<void> write_all(ByteView data) override {
    for (int attempt = 0; !data.empty() && attempt < 100000; ++attempt) {
      int ret = mbedtls_ssl_write(&ssl_, data.data(), data.size());
      if (ret > 0) {
        data = data.subspan(static_cast<size_t>(ret));
        continue;
      }
      if (ret == MBEDTLS_ERR_SSL_WANT_READ || ret == MBEDTLS_ERR_SSL_WANT_WRITE) continue;
      if (timed_out_) return Error(ErrorCode::timeout, "TLS write timed out");
      return Error(ErrorCode::unavailable, fmt::format("TLS write failed: {}", mbedtls_message(ret)));
    }
    if (!data.empty()) return Error(ErrorCode::unavailable, "TLS write made no progress");
    return {};
  }

  const Socket& socket() const { return *sock_; }
  milliseconds timeout() const { return timeout_; }
  bool timed_out_ = false;

 private:
  std::unique_ptr<Socket> sock_;
  milliseconds timeout_;
  mbedtls_entropy_context entropy_;
  mbedtls_ctr_drbg_context drbg_;
  mbedtls_x509_crt ca_;
  mbedtls_ssl_config conf_;
  mbedtls_ssl_context ssl_;
  VerifyRecord record_;
  bool handshake_done_ = false;
};

int bio_send(void* ctx, const unsigned char* buf, size_t len) {
  auto* c = static_cast<TlsConnection*>(ctx);
  auto n = socket_send(c->socket(), ByteView(buf, len), c->timeout());
  if (!n) {
    if (n.error().code() == ErrorCode::timeout) c->timed_out_ = true;
    return MBEDTLS_ERR_NET_SEND_FAILED;
  }
  return static_cast<int>(*n);
}

int bio_recv_timeout(void* ctx, unsigned char* buf, size_t len, uint32_t timeout_ms) {
  auto* c = static_cast<TlsConnection*>(ctx);
  auto n = socket_recv(c->socket(), std::span<uint8_t>(buf, len), milliseconds(timeout_ms));
  if (!n) {
    if (n.error().code() == ErrorCode::timeout) {
      c->timed_out_ = true;
      return MBEDTLS_ERR_SSL_TIMEOUT;
    }
    return MBEDTLS_ERR_NET_CONN_RESET;
  }
  return static_cast<int>(*n);
}

}  // namespace

std::vector<std::string> certificate_names(ByteView der) {
  std::vector<std::string> names;
  SanEntries san = parse_san(der);
  for (const auto& d : san.dns) names.push_back(d);
  for (const auto& ip : san.ips) names.push_back(format_ip(ip));
  if (!san.present) {
    ParsedCert pc(der);
    if (pc.ok) {
      std::string cn = subject_cn(pc.crt);
      if (!cn.empty()) names.push_back(cn);
    }
  }
  return names;
}

bool certificate_matches_host(ByteView der, const std::string& host) {
  SanEntries san = parse_san(der);
  unsigned char ip[16];
  size_t ip_len = 0;
  if (inet_pton(AF_INET, host.c_str(), ip) == 1) {
    ip_len = 4;
  } else if (inet_pton(AF_INET6, host.c_str(), ip) == 1) {
    ip_len = 16;
  }
  if (san.present) {
    for (const auto& e : san.ips) {
      if (ip_len == e.size() && std::memcmp(ip, e.data(), ip_len) == 0) return true;
    }
    for (const auto& d : san.dns) {
      if (ip_len != 0 ? iequals(d, host) : dns_matches(d, host)) return true;
    }
    return false;
  }
  ParsedCert pc(der);
  if (!pc.ok) return false;
  std::string cn = subject_cn(pc.crt);
  return ip_len != 0 ? iequals(cn, host) : dns_matches(cn, host);
}

Result<std::unique_ptr<Connection>> open_connection(const Url& url, const TlsOptions& tls,
                                                    milliseconds timeout) {
  if (url.https() && tls.ca_pem.empty()) {
    // esp_https_ota_begin refuses to run without a server verification option (cert_pem, bundle, store).
    return Error(ErrorCode::invalid_argument,
                 fmt::format("no CA certificate given for {}: pass the server's CA (--ca ca_cert.pem); "
                             "esp_https_ota refuses to connect without server verification",
                             url.str()));
  }
  OTA32_ASSIGN(auto sock, tcp_connect(url, timeout));
  if (!url.https())
    return std::unique_ptr<Connection>(std::make_unique<PlainConnection>(std::move(sock), timeout));
  auto conn = std::make_unique<TlsConnection>(std::move(sock), timeout);
  OTA32_TRY(conn->handshake(url, tls));
  return std::unique_ptr<Connection>(std::move(conn));
}

}  // namespace ota32::agent
