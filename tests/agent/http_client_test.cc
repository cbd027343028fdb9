#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "agent/http_client.h"
#include "agent/url.h"
#include "core/file_io.h"
#include "scripted_server.h"
#include "test_support.h"
#include "tls_fixture.h"

namespace ota32::agent {
namespace {

using ota32::testing::http_response;
using ota32::testing::OpensslServer;
using ota32::testing::ScriptedReply;
using ota32::testing::ScriptedServer;
using ota32::testing::TempDir;
using ota32::testing::TestPki;

TEST(Url, ParsesTheSeedUrl) {
  auto u = parse_url("https://10.0.0.36:8070/hello-world.bin");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->scheme, "https");
  EXPECT_EQ(u->host, "10.0.0.36");
  EXPECT_EQ(u->port, 8070);
  EXPECT_EQ(u->target, "/hello-world.bin");
  EXPECT_TRUE(u->host_is_ip());
  EXPECT_EQ(u->host_header(), "10.0.0.36:8070");
}

TEST(Url, DefaultsAndIpv6) {
  auto u = parse_url("https://example.com");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->port, 443);
  EXPECT_EQ(u->target, "/");
  EXPECT_EQ(u->host_header(), "example.com");
  EXPECT_FALSE(u->host_is_ip());
  auto v = parse_url("http://[::1]:8080/a?b=c");
  ASSERT_TRUE(v);
  EXPECT_EQ(v->host, "::1");
  EXPECT_EQ(v->target, "/a?b=c");
  EXPECT_EQ(v->host_header(), "[::1]:8080");
}

TEST(Url, RefusesBadUrls) {
  for (const char* bad :
       {"10.0.0.36/x.bin", "ftp://h/x", "https:///x", "https://h:0/", "https://h:99999/", "https://h:8a/"}) {
    auto u = parse_url(bad);
    ASSERT_FALSE(u) << bad;
    EXPECT_EQ(u.error().code(), ErrorCode::invalid_argument);
    EXPECT_NE(u.error().message().find(bad), std::string::npos) << u.error().message();
  }
}

// Found by fuzz/url_fuzz.cc: "https://[[x]/" was read as host "[x", which Url::str() printed as a URL that
// does not parse. Spaces and control characters were kept in the target, so a URL or a relative redirect
// (Location header, update-check JSON "url") with CR LF in it injected headers into the request.
TEST(Url, RefusesBracketsInTheHostAndSpacesOrControlCharacters) {
  for (const char* bad : {"https://[[x]/", "http://a[b]/", "http://h/a b", "http://h/a\r\nX-Injected: 1",
                          "http://h/\x7f", "http://h\t/"}) {
    auto u = parse_url(bad);
    ASSERT_FALSE(u) << bad;
    EXPECT_EQ(u.error().code(), ErrorCode::invalid_argument);
  }
  auto base = *parse_url("https://h/fw/a.bin");
  for (const char* bad : {"b.bin\r\nX-Injected: 1", "/c d.bin", "//h2/\x01"}) {
    auto r = resolve_location(base, bad);
    EXPECT_FALSE(r) << bad;
  }
  EXPECT_TRUE(parse_url("https://[fe80::1%25eth0]:8443/a%20b.bin?x=%0d"));  // percent-encoded is fine
}

TEST(Url, ResolvesLocations) {
  auto base = *parse_url("https://h:8070/fw/a.bin?x=1");
  EXPECT_EQ(resolve_location(base, "/b.bin")->str(), "https://h:8070/b.bin");
  EXPECT_EQ(resolve_location(base, "c.bin")->str(), "https://h:8070/fw/c.bin");
  EXPECT_EQ(resolve_location(base, "https://o:1/d")->str(), "https://o:1/d");
  EXPECT_EQ(resolve_location(base, "//o/e")->str(), "https://o:443/e");
}

// ---- plain HTTP against a scripted server: framing, redirects, timeouts ----

HttpClient plain_client(int timeout_ms = 2000) {
  HttpOptions o;
  o.timeout = std::chrono::milliseconds(timeout_ms);
  return HttpClient(o);
}

std::string url_of(const ScriptedServer& s, const std::string& path) {
  return "http://127.0.0.1:" + std::to_string(s.port()) + path;
}

TEST(HttpClient, SendsTheEspHttpClientRequestHead) {
  ScriptedServer server([](const std::string&, int) {
    return ScriptedReply{http_response(200, "hi", "Content-Length: 2\r\n")};
  });
  auto client = plain_client();
  HttpRequest req;
  req.url = url_of(server, "/fw.bin");
  req.headers.push_back({"Range", "bytes=0-"});
  auto resp = client.send(req);
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->status(), 200);
  EXPECT_EQ(*(*resp)->read_all(100), "hi");
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0], "GET /fw.bin HTTP/1.1\r\nUser-Agent: ESP32 HTTP Client/1.0\r\nHost: 127.0.0.1:" +
                         std::to_string(server.port()) + "\r\nRange: bytes=0-\r\n\r\n");
}

TEST(HttpClient, ReadsChunkedBodies) {
  ScriptedServer server([](const std::string&, int) {
    return ScriptedReply{http_response(200, "5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\n\r\n",
                                       "Transfer-Encoding: chunked\r\n")};
  });
  auto client = plain_client();
  auto resp = client.send({"GET", url_of(server, "/"), {}, ""});
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_TRUE((*resp)->chunked());
  EXPECT_EQ(*(*resp)->read_all(100), "hello world");
  EXPECT_TRUE((*resp)->complete());
}

TEST(HttpClient, EarlyCloseInAChunkedBodyIsUnavailableAndSaysWhere) {
  ScriptedServer server([](const std::string&, int) {
    return ScriptedReply{http_response(200, "5\r\nhello\r\n5", "Transfer-Encoding: chunked\r\n")};
  });
  auto client = plain_client();
  auto resp = client.send({"GET", url_of(server, "/"), {}, ""});
  ASSERT_TRUE(resp) << resp.error().message();
  auto body = (*resp)->read_all(100);
  ASSERT_FALSE(body);
  EXPECT_EQ(body.error().code(), ErrorCode::unavailable);
  EXPECT_NE(body.error().message().find("connection closed in the middle of the chunked body"),
            std::string::npos)
      << body.error().message();
}

TEST(HttpClient, CloseDelimitedBodyEndsAtTheClose) {
  ScriptedServer server([](const std::string&, int) {
    return ScriptedReply{"HTTP/1.0 200 ok\r\nContent-type: text/plain\r\n\r\n" + std::string(5000, 'x')};
  });
  auto client = plain_client();
  auto resp = client.send({"GET", url_of(server, "/"), {}, ""});
  ASSERT_TRUE(resp);
  EXPECT_FALSE((*resp)->content_length());
  EXPECT_EQ((*resp)->read_all(10000)->size(), 5000u);
  EXPECT_TRUE((*resp)->complete());
}

TEST(HttpClient, EarlyCloseOfContentLengthBodyIsUnavailable) {
  ScriptedServer server([](const std::string&, int) {
    std::string full = http_response(200, std::string(4000, 'x'), "Content-Length: 4000\r\n");
    return ScriptedReply{full, full.size() - 1000};
  });
  auto client = plain_client();
  auto resp = client.send({"GET", url_of(server, "/fw.bin"), {}, ""});
  ASSERT_TRUE(resp);
  auto body = (*resp)->read_all(10000);
  ASSERT_FALSE(body);
  EXPECT_EQ(body.error().code(), ErrorCode::unavailable);
  EXPECT_NE(body.error().message().find("connection closed after 3000 of 4000 bytes"), std::string::npos)
      << body.error().message();
}

TEST(HttpClient, FollowsRedirects) {
  ScriptedServer server([](const std::string& head, int) {
    if (head.starts_with("GET /old"))
      return ScriptedReply{http_response(302, "", "Location: /new.bin\r\nContent-Length: 0\r\n")};
    return ScriptedReply{http_response(200, "new", "Content-Length: 3\r\n")};
  });
  auto client = plain_client();
  auto resp = client.send({"GET", url_of(server, "/old.bin"), {}, ""});
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->status(), 200);
  EXPECT_EQ((*resp)->url().target, "/new.bin");
  EXPECT_EQ(*(*resp)->read_all(10), "new");
}

TEST(HttpClient, RedirectLoopsAreBounded) {
  ScriptedServer server(
      [](const std::string&, int) {
        return ScriptedReply{http_response(301, "", "Location: /loop\r\nContent-Length: 0\r\n")};
      },
      64);
  HttpOptions o;
  o.max_redirects = 3;
  HttpClient client(o);
  auto resp = client.send({"GET", url_of(server, "/loop"), {}, ""});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code(), ErrorCode::unavailable);
  EXPECT_NE(resp.error().message().find("more than 3 redirects"), std::string::npos)
      << resp.error().message();
  EXPECT_EQ(server.requests().size(), 4u);
}

TEST(HttpClient, TimesOutWhenTheServerIsSilent) {
  ScriptedServer server([](const std::string&, int) {
    return ScriptedReply{http_response(200, "", ""), SIZE_MAX, 1500};
  });
  auto client = plain_client(200);
  auto start = std::chrono::steady_clock::now();
  auto resp = client.send({"GET", url_of(server, "/"), {}, ""});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code(), ErrorCode::timeout) << resp.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1400));
}

TEST(HttpClient, RefusedConnectionIsUnavailable) {
  int port = ota32::testing::free_port();
  auto client = plain_client();
  auto resp = client.send({"GET", "http://127.0.0.1:" + std::to_string(port) + "/", {}, ""});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code(), ErrorCode::unavailable);
  EXPECT_NE(resp.error().message().find("cannot connect to 127.0.0.1:"), std::string::npos)
      << resp.error().message();
}

// ---- TLS against the seed's server: openssl s_server -WWW ----

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    pki_ = new TestPki();
    ok_ = pki_->create(dir_->path() / "pki");
    std::filesystem::create_directories(dir_->path() / "www");
    std::string fw(70000, '\0');
    for (size_t i = 0; i < fw.size(); ++i) fw[i] = static_cast<char>(i * 7 + 3);
    (void)write_file_atomic(dir_->path() / "www" / "fw.bin", std::string_view(fw));
  }
  static void TearDownTestSuite() {
    delete pki_;
    delete dir_;
  }
  void SetUp() override { ASSERT_TRUE(ok_) << "openssl could not make the test certificates"; }

  HttpClient client_with_ca(const std::filesystem::path& ca, bool skip_cn = false) {
    HttpOptions o;
    o.timeout = std::chrono::milliseconds(3000);
    o.tls.ca_pem = *read_text_file(ca);
    o.tls.ca_name = ca.filename().string();
    o.tls.skip_cert_common_name_check = skip_cn;
    return HttpClient(o);
  }
  Result<std::unique_ptr<HttpResponse>> get(HttpClient& c, const OpensslServer& s, const std::string& path,
                                            const std::string& host = "127.0.0.1") {
    return c.send({"GET", "https://" + host + ":" + std::to_string(s.port()) + path, {}, ""});
  }

  static TempDir* dir_;
  static TestPki* pki_;
  static bool ok_;
};
TempDir* TlsTest::dir_ = nullptr;
TestPki* TlsTest::pki_ = nullptr;
bool TlsTest::ok_ = false;

TEST_F(TlsTest, DownloadsFromSServerWithThePinnedCa) {
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->ip_cert, pki_->ip_key));
  auto client = client_with_ca(pki_->ca_cert);
  auto resp = get(client, server, "/fw.bin");
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->status(), 200);
  EXPECT_FALSE((*resp)->content_length());  // s_server -WWW: HTTP/1.0, no Content-Length
  auto body = (*resp)->read_all(1 << 20);
  ASSERT_TRUE(body) << body.error().message();
  EXPECT_EQ(*body, *read_text_file(dir_->path() / "www" / "fw.bin"));
}

TEST_F(TlsTest, DnsNameIsCheckedByMbedtls) {
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->ip_cert, pki_->ip_key));
  auto client = client_with_ca(pki_->ca_cert);
  auto resp = get(client, server, "/fw.bin", "localhost");
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->status(), 200);
}

// s_server -WWW answers a missing file with "200 ok" and a text body (the seed's "wrong file name" case);
// the OTA layer turns that into "firmware not found".
TEST_F(TlsTest, SServerAnswersMissingFilesWith200AndText) {
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->ip_cert, pki_->ip_key));
  auto client = client_with_ca(pki_->ca_cert);
  auto resp = get(client, server, "/hello-world.bin");
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->status(), 200);
  EXPECT_TRUE((*resp)->read_all(1000)->starts_with("Error opening"));
}

TEST_F(TlsTest, OtherCaIsNotTrusted) {
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->ip_cert, pki_->ip_key));
  auto client = client_with_ca(pki_->other_ca_cert);
  auto resp = get(client, server, "/fw.bin");
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code(), ErrorCode::certificate_untrusted);
  EXPECT_NE(resp.error().message().find("server certificate not trusted by the CA in other_ca_cert.pem"),
            std::string::npos)
      << resp.error().message();
}

TEST_F(TlsTest, CertificateForAnotherNameIsRefused) {
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->wrong_cert, pki_->wrong_key));
  auto client = client_with_ca(pki_->ca_cert);
  auto resp = get(client, server, "/fw.bin");
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code(), ErrorCode::certificate_name_mismatch);
  EXPECT_NE(resp.error().message().find("server certificate is for example.com, not 127.0.0.1"),
            std::string::npos)
      << resp.error().message();
  auto by_name = get(client, server, "/fw.bin", "localhost");
  ASSERT_FALSE(by_name);
  EXPECT_NE(by_name.error().message().find("is for example.com, not localhost"), std::string::npos)
      << by_name.error().message();
}

TEST_F(TlsTest, SkipCommonNameCheckStillVerifiesTheChain) {
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->wrong_cert, pki_->wrong_key));
  auto skip = client_with_ca(pki_->ca_cert, true);
  auto resp = get(skip, server, "/fw.bin");
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->status(), 200);
  resp->reset();  // s_server serves one connection at a time
  auto other = client_with_ca(pki_->other_ca_cert, true);
  auto refused = get(other, server, "/fw.bin");
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code(), ErrorCode::certificate_untrusted);
}

TEST_F(TlsTest, SeedSelfSignedCertificateWithIpInCommonName) {
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->seed_cert, pki_->seed_key));
  auto client = client_with_ca(pki_->seed_cert);
  auto resp = get(client, server, "/fw.bin");
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->read_all(1 << 20)->size(), 70000u);
}

TEST_F(TlsTest, NoCaIsRefusedBeforeConnecting) {
  HttpClient client{HttpOptions{}};
  auto resp = client.send({"GET", "https://127.0.0.1:1/fw.bin", {}, ""});
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(resp.error().message().find("no CA certificate given"), std::string::npos);
}

TEST_F(TlsTest, GarbageCaIsRefused) {
  HttpOptions o;
  o.tls.ca_pem = "not a certificate";
  o.tls.ca_name = "junk.pem";
  OpensslServer server;
  ASSERT_TRUE(server.start(dir_->path() / "www", pki_->ip_cert, pki_->ip_key));
  HttpClient client(o);
  auto resp = get(client, server, "/fw.bin");
  ASSERT_FALSE(resp);
  EXPECT_EQ(resp.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(resp.error().message().find("junk.pem: not a PEM CA certificate"), std::string::npos)
      << resp.error().message();
}

TEST_F(TlsTest, CertificateNamesFromDer) {
  auto pem = *read_text_file(pki_->ip_cert);
  // DER via openssl for the name helpers.
  auto der_path = dir_->path() / "ip.der";
  ASSERT_EQ(ota32::testing::run_shell("openssl x509 -in '" + pki_->ip_cert.string() +
                                          "' -outform DER -out '" + der_path.string() + "'",
                                      dir_->path() / "der.log"),
            0);
  auto der = *read_file(der_path);
  auto names = certificate_names(der);
  EXPECT_EQ(names, (std::vector<std::string>{"localhost", "127.0.0.1"}));
  EXPECT_TRUE(certificate_matches_host(der, "127.0.0.1"));
  EXPECT_TRUE(certificate_matches_host(der, "LOCALHOST"));
  EXPECT_FALSE(certificate_matches_host(der, "127.0.0.2"));
  EXPECT_FALSE(certificate_matches_host(der, "example.com"));
}

}  // namespace
}  // namespace ota32::agent
