// CPU per TLS handshake, server side and client side apart, with ota32-serve's own SSL_CTX (zero-config
// ECDSA P-256 certificate, X25519) against a default OpenSSL client, in memory (BIO pair: no sockets, no
// kernel). It bounds what any OpenSSL-based server can gain on "a full handshake per request"
// (docs/performance.md): the server's share is set by OpenSSL itself.
#include <benchmark/benchmark.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>

#include "server/tls.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

struct Contexts {
  ota32::server::SslCtxPtr server;
  SSL_CTX* client = nullptr;
  fs::path dir;
  Contexts() {
    std::string tmpl = (fs::temp_directory_path() / "ota32-hs-bench.XXXXXX").string();
    if (!mkdtemp(tmpl.data())) std::abort();
    dir = tmpl;
    auto z = ota32::server::ensure_zero_config_tls(dir / "data", {"localhost"}, {"127.0.0.1"});
    if (!z) {
      std::fprintf(stderr, "%s\n", z.error().message().c_str());
      std::abort();
    }
    auto ctx = ota32::server::make_server_context(z->server_cert, z->server_key);
    if (!ctx) std::abort();
    server = std::move(*ctx);
    client = SSL_CTX_new(TLS_client_method());  // like wrk/h2load: defaults, no verification
  }
  ~Contexts() {
    SSL_CTX_free(client);
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

Contexts& contexts() {
  static Contexts c;
  return c;
}

// One handshake; adds the time spent inside the server's and the client's OpenSSL calls.
bool handshake(int version, double& server_us, double& client_us) {
  auto& c = contexts();
  auto t0 = Clock::now();
  SSL* s = SSL_new(c.server.get());
  server_us += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  SSL* cl = SSL_new(c.client);
  SSL_set_min_proto_version(cl, version);
  SSL_set_max_proto_version(cl, version);
  BIO *cb = nullptr, *sb = nullptr;
  BIO_new_bio_pair(&cb, 0, &sb, 0);
  SSL_set_bio(cl, cb, cb);
  SSL_set_bio(s, sb, sb);
  SSL_set_connect_state(cl);
  SSL_set_accept_state(s);
  bool cd = false, sd = false;
  for (int i = 0; i < 16 && !(cd && sd); ++i) {
    auto a = Clock::now();
    if (!cd) cd = SSL_do_handshake(cl) == 1;
    auto b = Clock::now();
    if (!sd) sd = SSL_do_handshake(s) == 1;
    auto e = Clock::now();
    client_us += std::chrono::duration<double, std::micro>(b - a).count();
    server_us += std::chrono::duration<double, std::micro>(e - b).count();
  }
  auto f = Clock::now();
  SSL_free(s);
  server_us += std::chrono::duration<double, std::micro>(Clock::now() - f).count();
  SSL_free(cl);
  ERR_clear_error();
  return cd && sd;
}

void BM_Handshake(benchmark::State& state) {
  const int version = static_cast<int>(state.range(0));
  double server_us = 0, client_us = 0;
  for (auto _ : state) {
    if (!handshake(version, server_us, client_us)) {
      state.SkipWithError("handshake failed");
      return;
    }
  }
  const double n = static_cast<double>(state.iterations());
  state.counters["server_us"] = server_us / n;
  state.counters["client_us"] = client_us / n;
  state.SetLabel(version == TLS1_3_VERSION ? "TLS 1.3 X25519 ECDSA-P256 AES-128-GCM"
                                           : "TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256 X25519");
}
BENCHMARK(BM_Handshake)->Arg(TLS1_3_VERSION)->Arg(TLS1_2_VERSION)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
