#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <algorithm>

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

TEST(ZeroConfigTls, BrokenFilesGiveClearErrors) {
  ota32::testing::TempDir dir;
  ASSERT_TRUE(ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"}));
  fs::remove(dir / "d" / "ca_key.pem");
  auto z = ensure_zero_config_tls(dir / "d", {"localhost"}, {"127.0.0.1"});
  ASSERT_FALSE(z);
  EXPECT_NE(z.error().message().find("ca_cert.pem without ca_key.pem"), std::string::npos)
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

TEST(LocalAddresses, IncludeLoopback) {
  auto ips = local_ip_addresses();
  EXPECT_TRUE(contains(ips, "127.0.0.1"));
  EXPECT_TRUE(contains(local_host_names(), "localhost"));
}

}  // namespace
}  // namespace ota32::server
