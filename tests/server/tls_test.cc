#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "server/tls.h"
#include "test_support.h"

namespace ota32::server {
namespace {

namespace fs = std::filesystem;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// Verifies server_cert against ca_cert as a client would: chain, purpose, and the IP/host name.
bool verifies(const fs::path& ca, const fs::path& cert, const std::string& ip, const std::string& host) {
  auto load = [](const fs::path& p) {
    FILE* f = fopen(p.c_str(), "r");
    X509* x = f ? PEM_read_X509(f, nullptr, nullptr, nullptr) : nullptr;
    if (f) fclose(f);
    return x;
  };
  X509* ca_x = load(ca);
  X509* leaf = load(cert);
  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca_x);
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf, nullptr);
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx);
  X509_VERIFY_PARAM_set_purpose(param, X509_PURPOSE_SSL_SERVER);
  if (!ip.empty()) X509_VERIFY_PARAM_set1_ip_asc(param, ip.c_str());
  if (!host.empty()) X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0);
  bool ok = X509_verify_cert(ctx) == 1;
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
  X509_free(leaf);
  X509_free(ca_x);
  return ok;
}

TEST(ZeroConfigTls, FirstStartCreatesCaAndServerCertCoveringEveryAddress) {
  ota32::testing::TempDir dir;
  auto z =
      ensure_zero_config_tls(dir / "data", {"localhost", "fleet-server"}, {"127.0.0.1", "10.0.0.36", "::1"});
  ASSERT_TRUE(z) << z.error().message();
  EXPECT_TRUE(z->created_ca);
  EXPECT_TRUE(z->issued_server_cert);
  for (auto& key : {z->ca_key, z->server_key}) {
    struct stat st {};
    ASSERT_EQ(stat(key.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u) << key;
  }
  auto info = describe_certificate(z->server_cert);
  ASSERT_TRUE(info);
  EXPECT_TRUE(contains(info->ip_addresses, "10.0.0.36"));
  EXPECT_TRUE(contains(info->ip_addresses, "::1"));
  EXPECT_TRUE(contains(info->dns_names, "fleet-server"));
  EXPECT_EQ(info->key_type, "EC prime256v1");
  EXPECT_EQ(info->sha256_fingerprint.size(), 32u * 3 - 1);
  // The seed's mistake cannot happen: the certificate verifies for the IP the device uses.
  EXPECT_TRUE(verifies(z->ca_cert, z->server_cert, "10.0.0.36", ""));
  EXPECT_TRUE(verifies(z->ca_cert, z->server_cert, "", "fleet-server"));
  EXPECT_FALSE(verifies(z->ca_cert, z->server_cert, "10.0.0.37", ""));
  EXPECT_FALSE(verifies(z->server_cert, z->server_cert, "10.0.0.36", ""));  // only the CA is a trust anchor
  auto ctx = make_server_context(z->server_cert, z->server_key);
  EXPECT_TRUE(ctx) << ctx.error().message();
}

TEST(ZeroConfigTls, SecondStartKeepsEverything) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"}));
  auto fp = describe_certificate(dir / "d" / "server_cert.pem")->sha256_fingerprint;
  auto z = ensure_zero_config_tls(dir / "d", {"LOCALHOST"}, {"127.0.0.1"});
  ASSERT_TRUE(z);
  EXPECT_FALSE(z->created_ca);
  EXPECT_FALSE(z->issued_server_cert);
  EXPECT_EQ(describe_certificate(dir / "d" / "server_cert.pem")->sha256_fingerprint, fp);
}

TEST(ZeroConfigTls, NewAddressReissuesServerCertWithTheSameCa) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"}));
  auto ca_fp = describe_certificate(dir / "d" / "ca_cert.pem")->sha256_fingerprint;
  auto z = ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1", "192.168.4.2"});
  ASSERT_TRUE(z) << z.error().message();
  EXPECT_FALSE(z->created_ca);
  EXPECT_TRUE(z->issued_server_cert);
  EXPECT_NE(z->reason.find("192.168.4.2"), std::string::npos) << z->reason;
  EXPECT_EQ(describe_certificate(z->ca_cert)->sha256_fingerprint, ca_fp);
  EXPECT_TRUE(verifies(z->ca_cert, z->server_cert, "192.168.4.2", ""));
}

// Issue 6: servers on several hosts sharing one data directory. Each host's start adds its names to the
// certificate instead of replacing the others', so after one start each nobody reissues it any more.
TEST(ZeroConfigTls, HostsSharingTheDataDirectoryConvergeOnOneCertificate) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(ensure_zero_config_tls(dir / "d", {"host-a"}, {"192.0.2.1"}));
  auto b = ensure_zero_config_tls(dir / "d", {"host-b"}, {"192.0.2.2"});
  ASSERT_TRUE(b) << b.error().message();
  EXPECT_TRUE(b->issued_server_cert);
  EXPECT_TRUE(verifies(b->ca_cert, b->server_cert, "192.0.2.1", "host-a"));
  EXPECT_TRUE(verifies(b->ca_cert, b->server_cert, "192.0.2.2", "host-b"));
  b->lock.reset();  // b's start has loaded its files
  auto a_again = ensure_zero_config_tls(dir / "d", {"host-a"}, {"192.0.2.1"});
  ASSERT_TRUE(a_again) << a_again.error().message();
  EXPECT_FALSE(a_again->issued_server_cert) << a_again->reason;
}

// Issue 6: servers started at the same time on one data directory. Before the lock each could make its own
// CA and overwrite the others' files; now exactly one CA is made and every start loads a matching pair.
TEST(ZeroConfigTls, ConcurrentFirstStartsMakeOneCa) {
  ota32::testing::TempDir dir;
  constexpr int kStarts = 4;
  std::vector<Result<ZeroConfigTls>> results(kStarts, Error(ErrorCode::internal, "not run"));
  std::vector<int> loaded(kStarts, 0);
  std::vector<std::thread> threads;
  for (int i = 0; i < kStarts; ++i)
    threads.emplace_back([&, i] {
      results[i] = ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"});
      if (results[i])
        loaded[i] = make_server_context(results[i]->server_cert, results[i]->server_key) ? 1 : 0;
      if (results[i]) results[i]->lock.reset();
    });
  for (auto& t : threads) t.join();
  int created = 0, issued = 0;
  for (int i = 0; i < kStarts; ++i) {
    ASSERT_TRUE(results[i]) << results[i].error().message();
    created += results[i]->created_ca;
    issued += results[i]->issued_server_cert;
    EXPECT_EQ(loaded[i], 1) << "start " << i << " could not load its certificate and key";
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(issued, 1);
  EXPECT_TRUE(verifies(dir / "d" / "ca_cert.pem", dir / "d" / "server_cert.pem", "127.0.0.1", ""));
}

TEST(ZeroConfigTls, BrokenFilesGiveClearErrors) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"}));
  fs::remove(dir / "d" / "ca_cert.pem");
  auto z = ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"});
  ASSERT_FALSE(z);
  EXPECT_NE(z.error().message().find("ca_key.pem without ca_cert.pem"), std::string::npos)
      << z.error().message();
  ota32::testing::TempDir other;
  ASSERT_TRUE(ensure_zero_config_tls(other / "d", {"localhost"}, {"127.0.0.1"}));
  auto mismatch = make_server_context(dir / "d" / "server_cert.pem", other / "d" / "server_key.pem");
  ASSERT_FALSE(mismatch);
  EXPECT_NE(mismatch.error().message().find("does not match"), std::string::npos)
      << mismatch.error().message();
  auto missing = make_server_context(dir / "nope.pem", other / "d" / "server_key.pem");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("nope.pem"), std::string::npos);
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
unsigned mode_of(const fs::path& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 ? st.st_mode & 07777 : 0;
}

// Issue 26 item 4: the CA key outside the data directory. The server holds its own key, its certificate and
// the CA certificate; it serves what it has and cannot mint new certificates.
TEST(OfflineCa, InitIssuesIntoTheDataDirectoryWithoutTheKey) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(create_offline_ca(dir / "ca"));
  EXPECT_EQ(mode_of(dir / "ca"), 0700u);
  EXPECT_EQ(mode_of(dir / "ca" / "ca_key.pem"), 0600u);
  auto issued = issue_from_offline_ca(dir / "ca", dir / "data", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(issued) << issued.error().message();
  EXPECT_EQ(mode_of(dir / "data"), 0700u);
  EXPECT_FALSE(fs::exists(dir / "data" / "ca_key.pem"));
  EXPECT_EQ(slurp(dir / "data" / "ca_cert.pem"), slurp(dir / "ca" / "ca_cert.pem"));
  EXPECT_EQ(mode_of(dir / "data" / "server_key.pem"), 0600u);
  EXPECT_TRUE(verifies(dir / "ca" / "ca_cert.pem", dir / "data" / "server_cert.pem", "127.0.0.1", ""));
  // A server start keeps it, says the CA is offline, and needs nothing issued.
  auto z = ensure_zero_config_tls(dir / "data", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(z) << z.error().message();
  EXPECT_TRUE(z->offline_ca);
  EXPECT_FALSE(z->issued_server_cert);
  EXPECT_FALSE(z->created_ca);
  EXPECT_TRUE(z->missing.empty());
  EXPECT_TRUE(make_server_context(z->server_cert, z->server_key));
  z = Error(ErrorCode::internal, "released");
  // A second CA in the same directory is refused, the first one untouched.
  const std::string key = slurp(dir / "ca" / "ca_key.pem");
  auto again = create_offline_ca(dir / "ca");
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message().find("already holds a CA"), std::string::npos) << again.error().message();
  EXPECT_EQ(slurp(dir / "ca" / "ca_key.pem"), key);
}

TEST(OfflineCa, ANewAddressIsReportedNotIssuedUntilTheCaIssuesIt) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(create_offline_ca(dir / "ca"));
  ASSERT_TRUE(issue_from_offline_ca(dir / "ca", dir / "data", {"localhost"}, {"127.0.0.1"}));
  const std::string before = slurp(dir / "data" / "server_cert.pem");
  auto z = ensure_zero_config_tls(dir / "data", {"localhost", "fleet.example"}, {"127.0.0.1", "192.0.2.7"});
  ASSERT_TRUE(z) << z.error().message();
  EXPECT_FALSE(z->issued_server_cert);
  EXPECT_EQ(z->missing, (std::vector<std::string>{"fleet.example", "192.0.2.7"}));
  EXPECT_EQ(slurp(dir / "data" / "server_cert.pem"), before);
  EXPECT_FALSE(fs::exists(dir / "data" / "ca_key.pem"));
  EXPECT_FALSE(verifies(dir / "ca" / "ca_cert.pem", dir / "data" / "server_cert.pem", "192.0.2.7", ""));
  z = Error(ErrorCode::internal, "released");  // z held the data directory's lock
  // `ca issue` with the CA at hand: the new certificate has the new names and keeps the old ones.
  auto issued = issue_from_offline_ca(dir / "ca", dir / "data", {"fleet.example"}, {"192.0.2.7"});
  ASSERT_TRUE(issued) << issued.error().message();
  EXPECT_NE(issued->reason.find("192.0.2.7"), std::string::npos) << issued->reason;
  EXPECT_TRUE(verifies(dir / "ca" / "ca_cert.pem", dir / "data" / "server_cert.pem", "192.0.2.7", ""));
  EXPECT_TRUE(verifies(dir / "ca" / "ca_cert.pem", dir / "data" / "server_cert.pem", "127.0.0.1", ""));
  EXPECT_TRUE(verifies(dir / "ca" / "ca_cert.pem", dir / "data" / "server_cert.pem", "", "localhost"));
  // Rotation: issuing again with nothing new still makes a new key.
  const std::string key = slurp(dir / "data" / "server_key.pem");
  auto rotated = issue_from_offline_ca(dir / "ca", dir / "data", {}, {});
  ASSERT_TRUE(rotated);
  EXPECT_NE(slurp(dir / "data" / "server_key.pem"), key);
  EXPECT_TRUE(verifies(dir / "ca" / "ca_cert.pem", dir / "data" / "server_cert.pem", "192.0.2.7", ""));
  // Without a usable certificate an offline-CA data directory cannot start, and the error says what to run.
  fs::remove(dir / "data" / "server_cert.pem");
  auto none = ensure_zero_config_tls(dir / "data", {"localhost"}, {"127.0.0.1"});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("ota32 serve ca issue"), std::string::npos) << none.error().message();
}

TEST(OfflineCa, IssueRefusesADataDirectoryWithAnotherOrAnOnlineCa) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(create_offline_ca(dir / "ca"));
  ASSERT_TRUE(ensure_zero_config_tls(dir / "online", {"localhost"}, {"127.0.0.1"}));
  auto online = issue_from_offline_ca(dir / "ca", dir / "online", {"localhost"}, {});
  ASSERT_FALSE(online);
  EXPECT_NE(online.error().message().find("CA key of its own"), std::string::npos)
      << online.error().message();
  fs::remove(dir / "online" / "ca_key.pem");
  auto other = issue_from_offline_ca(dir / "ca", dir / "online", {"localhost"}, {});
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message().find("another CA"), std::string::npos) << other.error().message();
  auto no_ca = issue_from_offline_ca(dir / "nothing", dir / "d2", {"localhost"}, {});
  ASSERT_FALSE(no_ca);
  EXPECT_NE(no_ca.error().message().find("ota32 serve ca init"), std::string::npos);
}

TEST(DataDirectory, CreatedPrivateWarnedWhenReadableRefusedWhenWritable) {
  ota32::testing::TempDir dir;
  auto fresh = prepare_data_dir(dir / "a" / "data");
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_TRUE(fresh->empty());
  EXPECT_EQ(mode_of(dir / "a" / "data"), 0700u);
  EXPECT_TRUE(prepare_data_dir(dir / "a" / "data")->empty());
  fs::create_directory(dir / "b");
  ::chmod((dir / "b").c_str(), 0755);
  auto readable = prepare_data_dir(dir / "b");
  ASSERT_TRUE(readable);
  EXPECT_NE(readable->find("mode 0755"), std::string::npos) << *readable;
  EXPECT_NE(readable->find("chmod 700"), std::string::npos) << *readable;
  for (unsigned mode : {0770u, 0702u, 0777u}) {
    ::chmod((dir / "b").c_str(), mode);
    auto writable = prepare_data_dir(dir / "b");
    ASSERT_FALSE(writable) << mode;
    EXPECT_NE(writable.error().message().find("refusing to start"), std::string::npos);
  }
  std::ofstream(dir / "file") << "x";
  EXPECT_FALSE(prepare_data_dir(dir / "file"));
}

int g_client_sessions = 0;

// A TLS 1.3 handshake in memory (BIO pairs) between an OpenSSL client that caches whatever session tickets
// it receives and the server context, then one byte of application data from the server (tickets, when
// there are any, come before it).
// Connects client and server through an in-memory BIO pair and runs both handshakes to completion.
bool handshake_in_memory(SSL* client, SSL* server) {
  BIO *c_io = nullptr, *s_io = nullptr;
  if (BIO_new_bio_pair(&c_io, 0, &s_io, 0) != 1) return false;
  SSL_set_bio(client, c_io, c_io);
  SSL_set_bio(server, s_io, s_io);
  SSL_set_connect_state(client);
  SSL_set_accept_state(server);
  bool c_done = false, s_done = false;
  for (int i = 0; i < 20 && !(c_done && s_done); ++i) {
    if (!c_done) c_done = SSL_do_handshake(client) == 1;
    if (!s_done) s_done = SSL_do_handshake(server) == 1;
  }
  return c_done && s_done;
}

TEST(ServerContext, Tls13SendsNoSessionTicketsAndPrefersAes128) {
  ota32::testing::TempDir dir;
  auto z = ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(z) << z.error().message();
  auto server_ctx = make_server_context(z->server_cert, z->server_key);
  ASSERT_TRUE(server_ctx) << server_ctx.error().message();

  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_min_proto_version(cctx, TLS1_3_VERSION);
  SSL_CTX_set_session_cache_mode(cctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  g_client_sessions = 0;
  SSL_CTX_sess_set_new_cb(cctx, [](SSL*, SSL_SESSION*) {
    ++g_client_sessions;
    return 0;  // not kept: OpenSSL frees it
  });
  SSL* client = SSL_new(cctx);
  SSL* server = SSL_new(server_ctx->get());
  ASSERT_TRUE(handshake_in_memory(client, server));
  EXPECT_STREQ(SSL_get_version(client), "TLSv1.3");
  EXPECT_STREQ(SSL_get_cipher_name(client), "TLS_AES_128_GCM_SHA256");
  size_t n = 0;
  ASSERT_EQ(SSL_write_ex(server, "x", 1, &n), 1);
  char byte = 0;
  ASSERT_EQ(SSL_read_ex(client, &byte, 1, &n), 1);
  EXPECT_EQ(byte, 'x');
  EXPECT_EQ(g_client_sessions, 0) << "the server sent NewSessionTicket messages";
  SSL_free(client);
  SSL_free(server);
  SSL_CTX_free(cctx);
}

TEST(ServerContext, KernelTlsIsAnOptionOfTheContext) {
  ota32::testing::TempDir dir;
  auto z = ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(z) << z.error().message();
  auto plain = make_server_context(z->server_cert, z->server_key);
  auto ktls = make_server_context(z->server_cert, z->server_key, true);
  ASSERT_TRUE(plain && ktls);
  EXPECT_EQ(SSL_CTX_get_options(plain->get()) & SSL_OP_ENABLE_KTLS, 0u);
  EXPECT_NE(SSL_CTX_get_options(ktls->get()) & SSL_OP_ENABLE_KTLS, 0u);
}

// With kernel TLS asked for, a connection keeps SSL_OP_ENABLE_KTLS only when it negotiates TLS 1.2: the
// kernel cannot follow a TLS 1.3 KeyUpdate (tls.cc). (In memory there is no socket, so nothing reaches a
// kernel: this checks the per-connection decision.)
TEST(ServerContext, KernelTlsIsKeptForTls12ConnectionsOnly) {
  ota32::testing::TempDir dir;
  auto z = ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"});
  ASSERT_TRUE(z) << z.error().message();
  auto ctx = make_server_context(z->server_cert, z->server_key, true);
  ASSERT_TRUE(ctx) << ctx.error().message();
  // {server's max (0: none), client's max}: a client offering 1.3 to a server limited to 1.2 (serve --tls-max
  // 1.2) gets 1.2, and kTLS with it.
  for (auto [server_max, client_max] : {std::pair{0, TLS1_2_VERSION}, std::pair{0, TLS1_3_VERSION},
                                        std::pair{TLS1_2_VERSION, TLS1_3_VERSION}}) {
    SCOPED_TRACE(::testing::Message() << server_max << " " << client_max);
    SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_max_proto_version(cctx, client_max);
    SSL* client = SSL_new(cctx);
    SSL* server = SSL_new(ctx->get());
    SSL_set_max_proto_version(server, server_max);
    ASSERT_TRUE(handshake_in_memory(client, server));
    const int negotiated = server_max ? std::min(server_max, client_max) : client_max;
    EXPECT_EQ(SSL_version(server), negotiated);
    EXPECT_EQ((SSL_get_options(server) & SSL_OP_ENABLE_KTLS) != 0, negotiated == TLS1_2_VERSION);
    SSL_free(client);
    SSL_free(server);
    SSL_CTX_free(cctx);
  }
}

// The probe and the kernel's own list of upper-layer protocols (read after the probe, which may load the
// module) agree; where they say no, the reason names the module.
TEST(KernelTls, ProbeAgreesWithTheKernelsUlpList) {
  auto probe = probe_kernel_tls();
  std::ifstream f("/proc/sys/net/ipv4/tcp_available_ulp");
  if (!f) GTEST_SKIP() << "no /proc/sys/net/ipv4/tcp_available_ulp on this system";
  std::string ulps((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const bool listed = ulps.find("tls") != std::string::npos;
  EXPECT_EQ(probe.has_value(), listed) << ulps << (probe ? "" : probe.error().message());
  if (!probe) {
    EXPECT_NE(probe.error().message().find("tls"), std::string::npos);
  }
}

TEST(LocalAddresses, IncludeLoopback) {
  auto ips = local_ip_addresses();
  EXPECT_TRUE(contains(ips, "127.0.0.1"));
  EXPECT_TRUE(contains(local_host_names(), "localhost"));
}

}  // namespace
}  // namespace ota32::server
