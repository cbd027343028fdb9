#include "server/tls.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <set>

namespace ota32::server {

namespace fs = std::filesystem;

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct NamesFree {
  void operator()(GENERAL_NAMES* n) const { GENERAL_NAMES_free(n); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// The first queued OpenSSL error as text (and the queue cleared), for one-line messages.
std::string openssl_error() {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

Error tls_error(std::string what) { return Error(ErrorCode::internal, what + ": " + openssl_error()); }

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

Result<X509Ptr> read_cert(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return Error(errno == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
                 fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  }
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert)
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: not a PEM certificate ({})", path.string(), openssl_error()));
  return cert;
}

Result<PkeyPtr> read_key(const fs::path& path) {
  BioPtr bio(BIO_new_file(path.c_str(), "r"));
  if (!bio) {
    ERR_clear_error();
    return Error(errno == ENOENT ? ErrorCode::not_found : ErrorCode::io_error,
                 fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  }
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key)
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: not a PEM private key ({})", path.string(), openssl_error()));
  return key;
}

// Written to a 0600 temporary file in the same directory and renamed: never readable by others, never half
// written.
Result<void> write_file_private(const fs::path& path, const std::string& text, mode_t mode) {
  std::string tmpl = (path.parent_path() / ("." + path.filename().string() + ".tmp.XXXXXX")).string();
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    return Error(ErrorCode::io_error,
                 fmt::format("{}: cannot create: {}", path.string(), std::strerror(errno)));
  size_t done = 0;
  bool ok = true;
  while (ok && done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0)
      ok = false;
    else
      done += static_cast<size_t>(n);
  }
  ok = ok && ::fchmod(fd, mode) == 0 && ::fsync(fd) == 0;
  int err = errno;
  ::close(fd);
  if (!ok || ::rename(tmpl.c_str(), path.c_str()) != 0) {
    if (ok) err = errno;
    ::unlink(tmpl.c_str());
    return Error(ErrorCode::io_error, fmt::format("{}: cannot write: {}", path.string(), std::strerror(err)));
  }
  return {};
}

Result<void> write_pem_cert(const fs::path& path, X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_X509(bio.get(), cert)) return tls_error("PEM_write_bio_X509");
  return write_file_private(path, bio_text(bio.get()), 0644);
}

Result<void> write_pem_key(const fs::path& path, EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr))
    return tls_error("PEM_write_bio_PrivateKey");
  return write_file_private(path, bio_text(bio.get()), 0600);
}

Result<PkeyPtr> new_p256_key() {
  PkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return tls_error("EVP_EC_gen(P-256)");
  return key;
}

Result<void> add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return tls_error(fmt::format("certificate extension {}={}", OBJ_nid2sn(nid), value));
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (!ok) return tls_error("X509_add_ext");
  return {};
}

// A v3 certificate for `key`, signed by `issuer_key` (self-signed when issuer is null).
Result<X509Ptr> make_cert(EVP_PKEY* key, const std::string& common_name, X509* issuer, EVP_PKEY* issuer_key,
                          long days, bool is_ca, const std::string& san) {
  X509Ptr cert(X509_new());
  if (!cert) return tls_error("X509_new");
  X509_set_version(cert.get(), 2);
  BIGNUM* serial = BN_new();
  bool ok = serial && BN_rand(serial, 63, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
            BN_to_ASN1_INTEGER(serial, X509_get_serialNumber(cert.get()));
  BN_free(serial);
  if (!ok) return tls_error("certificate serial");
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -24 * 3600);  // tolerate a client clock a day behind
  X509_time_adj_ex(X509_getm_notAfter(cert.get()), static_cast<int>(days), 0, nullptr);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>("ota32"), -1,
                             -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(common_name.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  if (!X509_set_pubkey(cert.get(), key)) return tls_error("X509_set_pubkey");
  X509* signer = issuer ? issuer : cert.get();
  if (is_ca) {
    OTA32_TRY(add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:TRUE,pathlen:0"));
    OTA32_TRY(add_ext(cert.get(), signer, NID_key_usage, "critical,keyCertSign,cRLSign"));
  } else {
    OTA32_TRY(add_ext(cert.get(), signer, NID_basic_constraints, "critical,CA:FALSE"));
    OTA32_TRY(add_ext(cert.get(), signer, NID_key_usage, "critical,digitalSignature"));
    OTA32_TRY(add_ext(cert.get(), signer, NID_ext_key_usage, "serverAuth"));
    OTA32_TRY(add_ext(cert.get(), signer, NID_subject_alt_name, san));
  }
  OTA32_TRY(add_ext(cert.get(), signer, NID_subject_key_identifier, "hash"));
  if (issuer) OTA32_TRY(add_ext(cert.get(), signer, NID_authority_key_identifier, "keyid:always"));
  if (!X509_sign(cert.get(), issuer_key ? issuer_key : key, EVP_sha256())) return tls_error("X509_sign");
  return cert;
}

std::string name_text(X509_NAME* name) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(bio.get(), name, 0, XN_FLAG_RFC2253);
  return bio_text(bio.get());
}

CertificateInfo describe(X509* cert) {
  CertificateInfo info;
  info.subject = name_text(X509_get_subject_name(cert));
  info.issuer = name_text(X509_get_issuer_name(cert));
  std::unique_ptr<GENERAL_NAMES, NamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  for (int i = 0; names && i < sk_GENERAL_NAME_num(names.get()); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(names.get(), i);
    if (gn->type == GEN_DNS) {
      const ASN1_STRING* s = gn->d.dNSName;
      info.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                  static_cast<size_t>(ASN1_STRING_length(s)));
    } else if (gn->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* s = gn->d.iPAddress;
      char buf[INET6_ADDRSTRLEN] = {};
      int len = ASN1_STRING_length(s);
      if (len == 4 || len == 16)
        inet_ntop(len == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(s), buf, sizeof buf);
      info.ip_addresses.emplace_back(buf);
    }
  }
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  X509_digest(cert, EVP_sha256(), md, &md_len);
  for (unsigned i = 0; i < md_len; ++i)
    info.sha256_fingerprint += fmt::format("{}{:02X}", i ? ":" : "", md[i]);
  struct tm tm {};
  if (ASN1_TIME_to_tm(X509_get0_notAfter(cert), &tm) == 1) {
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    info.not_after = buf;
  }
  EVP_PKEY* pub = X509_get0_pubkey(cert);
  if (pub) {
    int id = EVP_PKEY_get_base_id(pub);
    if (id == EVP_PKEY_EC) {
      char group[64] = {};
      size_t glen = 0;
      EVP_PKEY_get_group_name(pub, group, sizeof group, &glen);
      info.key_type = fmt::format("EC {}", group);
    } else if (id == EVP_PKEY_RSA) {
      info.key_type = fmt::format("RSA {}", EVP_PKEY_get_bits(pub));
    } else {
      info.key_type = OBJ_nid2sn(id);
    }
  }
  return info;
}

// Addresses in a canonical textual form so that "::1" and "0:0::1" compare equal.
std::string canonical_ip(const std::string& ip) {
  unsigned char buf[16];
  char out[INET6_ADDRSTRLEN] = {};
  if (inet_pton(AF_INET, ip.c_str(), buf) == 1) return inet_ntop(AF_INET, buf, out, sizeof out);
  if (inet_pton(AF_INET6, ip.c_str(), buf) == 1) return inet_ntop(AF_INET6, buf, out, sizeof out);
  return ip;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

Result<CertificateInfo> describe_certificate(const fs::path& pem) {
  OTA32_ASSIGN(auto cert, read_cert(pem));
  return describe(cert.get());
}

std::vector<std::string> local_ip_addresses() {
  std::set<std::string> out = {"127.0.0.1", "::1"};
  struct ifaddrs* list = nullptr;
  if (getifaddrs(&list) == 0) {
    for (auto* ifa = list; ifa; ifa = ifa->ifa_next) {
      if (!ifa->ifa_addr || !(ifa->ifa_flags & IFF_UP)) continue;
      char buf[INET6_ADDRSTRLEN] = {};
      if (ifa->ifa_addr->sa_family == AF_INET) {
        auto* sin = reinterpret_cast<sockaddr_in*>(ifa->ifa_addr);
        inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf);
      } else if (ifa->ifa_addr->sa_family == AF_INET6) {
        auto* sin6 = reinterpret_cast<sockaddr_in6*>(ifa->ifa_addr);
        if (IN6_IS_ADDR_LINKLOCAL(&sin6->sin6_addr)) continue;
        inet_ntop(AF_INET6, &sin6->sin6_addr, buf, sizeof buf);
      } else {
        continue;
      }
      out.insert(buf);
    }
    freeifaddrs(list);
  }
  return {out.begin(), out.end()};
}

std::vector<std::string> local_host_names() {
  std::set<std::string> out = {"localhost"};
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) == 0 && host[0]) out.insert(lower(host));
  return {out.begin(), out.end()};
}

namespace {

struct Names {
  std::set<std::string> dns, ip;
};

Names wanted_names(const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses) {
  Names n;
  for (const auto& d : dns_names) n.dns.insert(lower(d));
  for (const auto& a : ip_addresses) n.ip.insert(canonical_ip(a));
  return n;
}

// The directory, made 0700 when absent (its parents with the default mode).
Result<void> make_private_dir(const fs::path& dir, std::string_view what) {
  std::error_code ec;
  if (fs::is_directory(dir, ec)) return {};
  if (dir.has_parent_path()) fs::create_directories(dir.parent_path(), ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Error(ErrorCode::io_error,
                 fmt::format("{}: cannot create {}: {}", dir.string(), what, std::strerror(errno)));
  return {};
}

// An exclusive lock on DIR/.tls.lock, released when the last copy of the result goes.
Result<std::shared_ptr<void>> lock_tls_files(const fs::path& dir) {
  fs::path lock_path = dir / ".tls.lock";
  int lock_fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0)
    return Error(ErrorCode::io_error,
                 fmt::format("{}: cannot open: {}", lock_path.string(), std::strerror(errno)));
  std::shared_ptr<void> lock(nullptr, [lock_fd](void*) { ::close(lock_fd); });
  while (::flock(lock_fd, LOCK_EX) != 0)
    if (errno != EINTR)
      return Error(ErrorCode::io_error,
                   fmt::format("{}: cannot lock: {}", lock_path.string(), std::strerror(errno)));
  return lock;
}

// A CA certificate with its key, checked to belong together.
Result<std::pair<X509Ptr, PkeyPtr>> read_ca(const fs::path& cert_path, const fs::path& key_path) {
  OTA32_ASSIGN(auto cert, read_cert(cert_path));
  OTA32_ASSIGN(auto key, read_key(key_path));
  if (X509_check_private_key(cert.get(), key.get()) != 1) {
    ERR_clear_error();
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: does not belong to {}", key_path.string(), cert_path.string()));
  }
  return std::make_pair(std::move(cert), std::move(key));
}

// Whether the server certificate in z can be kept: empty when it can (signed by ca_cert, key matching,
// every wanted name in it), else why not. When it is valid, `had` gets the names it has and `missing` the
// wanted ones it lacks.
std::string check_server_cert(const ZeroConfigTls& z, X509* ca_cert, const Names& want, Names* had,
                              std::vector<std::string>* missing) {
  if (!fs::exists(z.server_cert) || !fs::exists(z.server_key)) return "no server certificate yet";
  auto cert = read_cert(z.server_cert);
  auto key = read_key(z.server_key);
  std::string reason;
  if (!cert || !key) {
    reason = (!cert ? cert.error() : key.error()).message();
  } else if (X509_check_private_key(cert->get(), key->get()) != 1) {
    reason = "server_key.pem does not match server_cert.pem";
  } else if (X509_verify(cert->get(), X509_get0_pubkey(ca_cert)) != 1) {
    reason = "server_cert.pem was not signed by ca_cert.pem";
  } else {
    auto info = describe(cert->get());
    Names have;
    for (auto& n : info.dns_names) have.dns.insert(lower(n));
    for (auto& a : info.ip_addresses) have.ip.insert(canonical_ip(a));
    for (auto& n : want.dns)
      if (!have.dns.count(n)) missing->push_back(n);
    for (auto& a : want.ip)
      if (!have.ip.count(a)) missing->push_back(a);
    if (!missing->empty()) reason = fmt::format("new local names/addresses: {}", fmt::join(*missing, ", "));
    *had = std::move(have);
  }
  ERR_clear_error();
  return reason;
}

// A new server key and certificate signed by the CA, for every name in `names`, written over z's files.
Result<void> issue_server_cert(const ZeroConfigTls& z, X509* ca_cert, EVP_PKEY* ca_key, const Names& names) {
  if (names.dns.empty() && names.ip.empty())
    return Error(ErrorCode::invalid_argument,
                 "no name or address for the server certificate: give them with --san");
  std::string san;
  for (auto& n : names.dns) san += (san.empty() ? "" : ",") + ("DNS:" + n);
  for (auto& a : names.ip) san += (san.empty() ? "" : ",") + ("IP:" + a);
  OTA32_ASSIGN(auto key, new_p256_key());
  std::string cn = names.dns.empty() ? "ota32 server" : *names.dns.rbegin();
  OTA32_ASSIGN(auto cert, make_cert(key.get(), cn, ca_cert, ca_key, 10 * 365, false, san));
  OTA32_TRY(write_pem_key(z.server_key, key.get()));
  OTA32_TRY(write_pem_cert(z.server_cert, cert.get()));
  return {};
}

ZeroConfigTls files_in(const fs::path& dir) {
  return ZeroConfigTls{dir / "ca_cert.pem", dir / "ca_key.pem", dir / "server_cert.pem",
                       dir / "server_key.pem"};
}

}  // namespace

Result<std::string> prepare_data_dir(const fs::path& data_dir) {
  std::error_code ec;
  if (!fs::exists(data_dir, ec)) {
    OTA32_TRY(make_private_dir(data_dir, "the data directory"));
    return std::string();
  }
  struct stat st {};
  if (::stat(data_dir.c_str(), &st) != 0)
    return Error(ErrorCode::io_error, fmt::format("{}: {}", data_dir.string(), std::strerror(errno)));
  if (!S_ISDIR(st.st_mode))
    return Error(ErrorCode::invalid_argument, fmt::format("--data {}: not a directory", data_dir.string()));
  const unsigned mode = st.st_mode & 07777;
  if (mode & (S_IWGRP | S_IWOTH))
    return Error(ErrorCode::invalid_argument,
                 fmt::format("--data {}: mode {:04o} lets other users replace the keys and the database; "
                             "refusing to start (chmod 700 {})",
                             data_dir.string(), mode, data_dir.string()));
  if (mode & (S_IRWXG | S_IRWXO))
    return fmt::format(
        "warning: --data {} is mode {:04o}: other users can list it (its files are 0600); "
        "chmod 700 {}",
        data_dir.string(), mode, data_dir.string());
  return std::string();
}

Result<ZeroConfigTls> ensure_zero_config_tls(const fs::path& data_dir,
                                             const std::vector<std::string>& dns_names,
                                             const std::vector<std::string>& ip_addresses) {
  OTA32_TRY(make_private_dir(data_dir, "the data directory"));
  ZeroConfigTls z = files_in(data_dir);
  // Servers sharing the data directory start one at a time here: two first starts would each make a CA and
  // overwrite the other's, and a reader could pair one start's server key with another's certificate.
  OTA32_ASSIGN(z.lock, lock_tls_files(data_dir));

  PkeyPtr ca_key;
  X509Ptr ca_cert;
  bool have_ca_cert = fs::exists(z.ca_cert), have_ca_key = fs::exists(z.ca_key);
  if (have_ca_key && !have_ca_cert)
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: found ca_key.pem without ca_cert.pem; restore it or remove both to create "
                             "a new CA",
                             data_dir.string()));
  if (have_ca_cert && have_ca_key) {
    OTA32_ASSIGN(auto ca, read_ca(z.ca_cert, z.ca_key));
    ca_cert = std::move(ca.first);
    ca_key = std::move(ca.second);
  } else if (have_ca_cert) {
    // The CA key is kept elsewhere (ota32 serve ca init): the server can only use the certificate it has.
    z.offline_ca = true;
    OTA32_ASSIGN(ca_cert, read_cert(z.ca_cert));
  } else {
    OTA32_ASSIGN(ca_key, new_p256_key());
    char host[256] = {};
    gethostname(host, sizeof host - 1);
    OTA32_ASSIGN(ca_cert, make_cert(ca_key.get(), fmt::format("ota32 private CA ({})", host), nullptr,
                                    nullptr, 20 * 365, true, ""));
    // The key first: a certificate without its key would be taken for an offline CA.
    OTA32_TRY(write_pem_key(z.ca_key, ca_key.get()));
    OTA32_TRY(write_pem_cert(z.ca_cert, ca_cert.get()));
    z.created_ca = true;
  }

  Names want = wanted_names(dns_names, ip_addresses), had;
  // Keep the server certificate when the CA signed it, its key matches, and it covers every wanted name.
  // When it lacks some, the new one keeps the names it had: servers on several hosts sharing the data
  // directory converge on one certificate covering all of them instead of reissuing it at every start.
  std::vector<std::string> missing;
  std::string reason = check_server_cert(z, ca_cert.get(), want, &had, &missing);
  if (reason.empty()) return z;
  if (z.offline_ca) {
    // No CA key here: a certificate that lacks names is served as it is (clients that use a missing name
    // or address fail to verify it) and the operator is told; one that is unusable stops the start.
    if (!missing.empty()) {
      z.missing = std::move(missing);
      return z;
    }
    return Error(
        ErrorCode::corrupt,
        fmt::format("{}: {}, and the CA key is not here (ca_cert.pem without ca_key.pem: an offline "
                    "CA); issue a server certificate with `ota32 serve ca issue <CA directory> --data "
                    "{}`",
                    data_dir.string(), reason, data_dir.string()));
  }
  want.dns.insert(had.dns.begin(), had.dns.end());
  want.ip.insert(had.ip.begin(), had.ip.end());
  OTA32_TRY(issue_server_cert(z, ca_cert.get(), ca_key.get(), want));
  z.issued_server_cert = true;
  z.reason = reason;
  return z;
}

Result<void> create_offline_ca(const fs::path& ca_dir) {
  OTA32_TRY(make_private_dir(ca_dir, "the CA directory"));
  ZeroConfigTls z = files_in(ca_dir);
  OTA32_ASSIGN(auto lock, lock_tls_files(ca_dir));
  if (fs::exists(z.ca_key) || fs::exists(z.ca_cert))
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: already holds a CA (ca_cert.pem / ca_key.pem): not overwritten (devices "
                             "built with it would stop trusting the server)",
                             ca_dir.string()));
  OTA32_ASSIGN(auto ca_key, new_p256_key());
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  OTA32_ASSIGN(auto ca_cert, make_cert(ca_key.get(), fmt::format("ota32 offline CA ({})", host), nullptr,
                                       nullptr, 20 * 365, true, ""));
  OTA32_TRY(write_pem_key(z.ca_key, ca_key.get()));
  OTA32_TRY(write_pem_cert(z.ca_cert, ca_cert.get()));
  return {};
}

Result<IssuedCertificate> issue_from_offline_ca(const fs::path& ca_dir, const fs::path& data_dir,
                                                const std::vector<std::string>& dns_names,
                                                const std::vector<std::string>& ip_addresses) {
  const ZeroConfigTls ca = files_in(ca_dir);
  if (!fs::exists(ca.ca_cert) || !fs::exists(ca.ca_key))
    return Error(
        ErrorCode::not_found,
        fmt::format("{}: no CA here (ca_cert.pem and ca_key.pem); make one with `ota32 serve ca init "
                    "{}`",
                    ca_dir.string(), ca_dir.string()));
  OTA32_ASSIGN(auto pair, read_ca(ca.ca_cert, ca.ca_key));
  auto& [ca_cert, ca_key] = pair;
  OTA32_TRY(make_private_dir(data_dir, "the data directory"));
  ZeroConfigTls z = files_in(data_dir);
  OTA32_ASSIGN(z.lock, lock_tls_files(data_dir));  // a server starting meanwhile waits
  std::error_code ec;
  if (fs::exists(z.ca_key))
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: holds a CA key of its own (ca_key.pem); to take that CA offline instead, "
                             "move ca_key.pem and ca_cert.pem into a private directory and issue from there",
                             data_dir.string()));
  if (fs::exists(z.ca_cert)) {
    auto current = read_cert(z.ca_cert);
    if (!current) return current.error();
    if (X509_cmp(current->get(), ca_cert.get()) != 0)
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}: ca_cert.pem is another CA than {}'s (devices trust that one); remove it "
                               "first if you are moving the server to this CA (docs/server.md, rotation)",
                               data_dir.string(), ca_dir.string()));
  }
  Names want = wanted_names(dns_names, ip_addresses), had;
  std::vector<std::string> missing;
  IssuedCertificate out{z.ca_cert, z.server_cert, check_server_cert(z, ca_cert.get(), want, &had, &missing)};
  if (out.reason.empty()) out.reason = "rotation: a new key and certificate";
  want.dns.insert(had.dns.begin(), had.dns.end());
  want.ip.insert(had.ip.begin(), had.ip.end());
  OTA32_TRY(issue_server_cert(z, ca_cert.get(), ca_key.get(), want));
  // The CA certificate beside it, never the key.
  if (!fs::exists(z.ca_cert)) OTA32_TRY(write_pem_cert(z.ca_cert, ca_cert.get()));
  return out;
}

Result<void> probe_kernel_tls() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Error(ErrorCode::io_error, fmt::format("socket: {}", std::strerror(errno)));
  // The ULP is looked up (and its module loaded) before tls_init refuses the unconnected socket with
  // ENOTCONN.
  int r = ::setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", sizeof "tls");
  int err = errno;
  ::close(fd);
  if (r == 0 || err == ENOTCONN) return {};
  if (err == ENOENT)
    return Error(
        ErrorCode::unsupported,
        "the kernel has no `tls` upper-layer protocol (module absent or not loaded: `modprobe tls`)");
  return Error(ErrorCode::unsupported, fmt::format("setsockopt(TCP_ULP, tls): {}", std::strerror(err)));
}

namespace {

// True when a ClientHello's supported_versions extension lists TLS 1.3.
bool offers_tls13(SSL* s) {
  const unsigned char* ext = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_supported_versions, &ext, &len) != 1 || len < 1) return false;
  size_t n = std::min<size_t>(ext[0], len - 1);
  for (size_t i = 0; i + 1 < n; i += 2)
    if (ext[1 + i] == 0x03 && ext[2 + i] == 0x04) return true;
  return false;
}

// kTLS for TLS 1.2 connections only. A TLS 1.3 peer may send KeyUpdate(update_requested); OpenSSL 3.0 then
// switches its own write key but cannot re-key the kernel (Linux before 6.14 has no TX rekey), and every
// later record reaches the client under the old key ("bad record mac"). ESP32 clients (mbedTLS) speak 1.2.
int kernel_tls_for_tls12_only(SSL* s, int*, void*) {
  // 1.3 is negotiated when the client offers it and this server does too (no max, or a max of 1.3:
  // `serve --tls-max 1.2` makes every connection 1.2, and so every one a kTLS one).
  const long max = SSL_get_max_proto_version(s);
  if (offers_tls13(s) && (max == 0 || max >= TLS1_3_VERSION)) SSL_clear_options(s, SSL_OP_ENABLE_KTLS);
  return SSL_CLIENT_HELLO_SUCCESS;
}

}  // namespace

Result<SslCtxPtr> make_server_context(const fs::path& cert_chain, const fs::path& key_path, bool kernel_tls) {
  SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  if (!ctx) return tls_error("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET |
                                     SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
  if (kernel_tls) {
    SSL_CTX_set_options(ctx.get(), SSL_OP_ENABLE_KTLS);
    SSL_CTX_set_client_hello_cb(ctx.get(), kernel_tls_for_tls12_only, nullptr);
  }
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_OFF);
  // No TLS 1.3 NewSessionTicket after the handshake: with the cache off, OpenSSL would still send two
  // (stateful) tickets that can never resume, costing both ends an extra record and a session copy each.
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  // Partial writes let a slow client's socket take what it can; the buffers are released between records.
  SSL_CTX_set_mode(ctx.get(), SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  // TLS 1.2 suites in mbedTLS's default list on ESP32 (AES-GCM first: hardware AES there, AES-NI here).
  if (!SSL_CTX_set_cipher_list(ctx.get(),
                               "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                               "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                               "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"))
    return tls_error("SSL_CTX_set_cipher_list");
  if (!SSL_CTX_set_ciphersuites(ctx.get(),
                                "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"))
    return tls_error("SSL_CTX_set_ciphersuites");
  if (!SSL_CTX_set1_groups_list(ctx.get(), "X25519:P-256:P-384"))
    return tls_error("SSL_CTX_set1_groups_list");
  if (SSL_CTX_use_certificate_chain_file(ctx.get(), cert_chain.c_str()) != 1)
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: cannot load certificate chain ({})", cert_chain.string(), openssl_error()));
  auto key = read_key(key_path);
  if (!key) return Error(ErrorCode::invalid_argument, key.error().message());
  X509* leaf = SSL_CTX_get0_certificate(ctx.get());
  if (!leaf || X509_check_private_key(leaf, key->get()) != 1) {
    ERR_clear_error();
    return Error(ErrorCode::invalid_argument, fmt::format("{}: does not match the certificate in {}",
                                                          key_path.string(), cert_chain.string()));
  }
  if (SSL_CTX_use_PrivateKey(ctx.get(), key->get()) != 1)
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: cannot use private key ({})", key_path.string(), openssl_error()));
  return ctx;
}

}  // namespace ota32::server
