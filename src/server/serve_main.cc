#include "server/serve_main.h"

#include <sys/resource.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cctype>
#include <cstdio>
#include <memory>
#include <thread>

#include "core/file_io.h"
#include "core/numbers.h"
#include "server/access_log.h"
#include "server/metrics.h"
#include "server/serve_context.h"
#include "server/server.h"
#include "server/static_files.h"
#include "server/tls.h"

#include "server/api.h"

namespace ota32::server {

namespace fs = std::filesystem;

namespace {

struct ServeArgs {
  std::string dir, data = "ota32-data", cert, key, bind = "0.0.0.0", access_log = "-", store;
  int port = 8070;
  unsigned threads = 0;
  std::size_t max_connections = 16'384;
  std::vector<std::string> sans;
  double header_timeout = 10, idle_timeout = 30, io_timeout = 30, request_timeout = 300;
  std::string min_rate = "1K", body_memory = "64M";
  bool ktls = false;
  std::string tls_max = "1.3";
  std::string metrics_token_file;
};

void say(const std::string& line) {
  std::fflush(stdout);
  fmt::print(stderr, "ota32-serve: {}\n", line);
  std::fflush(stderr);
}

int fail(const std::string& message) {
  std::fflush(stdout);
  fmt::print(stderr, "ota32-serve: {}\n", message);
  return 1;
}

void print_certificate(const std::string& what, const fs::path& path) {
  auto info = describe_certificate(path);
  if (!info) {
    say(fmt::format("{}: {}", what, info.error().message()));
    return;
  }
  say(fmt::format("{} {} ({}, {}, valid until {})", what, path.string(), info->subject, info->key_type,
                  info->not_after));
  std::vector<std::string> sans;
  for (auto& n : info->dns_names) sans.push_back("DNS:" + n);
  for (auto& a : info->ip_addresses) sans.push_back("IP:" + a);
  say(fmt::format("  subjectAltName: {}",
                  sans.empty() ? "(none)" : fmt::format("{}", fmt::join(sans, ", "))));
  say(fmt::format("  SHA-256 fingerprint: {}", info->sha256_fingerprint));
}

// Many slow downloads need many descriptors: raise the soft limit to the hard one.
void raise_fd_limit() {
  struct rlimit rl {};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

// The names and addresses a zero-config certificate covers: --san values (IP literals go to the addresses)
// plus, with `local`, this host's names and `ips`.
std::pair<std::vector<std::string>, std::vector<std::string>> certificate_names(
    const std::vector<std::string>& sans, bool local, const std::vector<std::string>& ips) {
  std::vector<std::string> names, addrs;
  if (local) {
    names = local_host_names();
    addrs = ips;
  }
  for (const auto& s : sans) {
    bool is_ip = s.find_first_not_of("0123456789.:abcdefABCDEF") == std::string::npos &&
                 (s.find('.') != std::string::npos || s.find(':') != std::string::npos);
    (is_ip ? addrs : names).push_back(s);
  }
  return {names, addrs};
}

// The server's SSL_CTX from --cert/--key, or from the zero-config files in the data directory (made or
// reissued first when this host has an address or name they lack). At start and on SIGHUP.
Result<SslCtxPtr> load_tls(const ServeArgs& a, const fs::path& data_dir,
                           const std::vector<std::string>& ips) {
  fs::path cert = a.cert, key = a.key;
  std::shared_ptr<void> tls_lock;  // zero-config: held until the files are loaded
  if (cert.empty()) {
    auto [names, addrs] = certificate_names(a.sans, true, ips);
    auto z = ensure_zero_config_tls(data_dir, names, addrs);
    if (!z) return z.error();
    if (z->created_ca) say(fmt::format("created a private CA in {}", data_dir.string()));
    if (z->issued_server_cert) say(fmt::format("issued a new server certificate ({})", z->reason));
    if (z->offline_ca)
      say("the CA key is kept offline (ca_cert.pem without ca_key.pem): this server issues no certificates");
    if (!z->missing.empty())
      say(
          fmt::format("warning: {} lacks {}: clients that use them will not verify it; issue a new one with "
                      "`ota32 serve ca issue <CA directory> --data {} --san ...`, then send SIGHUP",
                      z->server_cert.string(), fmt::join(z->missing, ", "), data_dir.string()));
    say(fmt::format("CA certificate for the firmware (simple_ota_example: server_certs/ca_cert.pem): {}",
                    z->ca_cert.string()));
    cert = z->server_cert;
    key = z->server_key;
    tls_lock = z->lock;
  }
  auto ctx = make_server_context(cert, key, a.ktls);
  if (!ctx) return ctx;
  if (a.tls_max == "1.2") SSL_CTX_set_max_proto_version(ctx->get(), TLS1_2_VERSION);
  print_certificate("server certificate", cert);
  return ctx;
}

int serve(const ServeArgs& a) {
  if (a.port < 0 || a.port > 65535) return fail(fmt::format("--port {}: must be 0..65535", a.port));
  if (a.cert.empty() != a.key.empty()) return fail("--cert and --key go together");
  std::error_code ec;
  fs::path data_dir = fs::absolute(a.data, ec);
  fs::path root;
  if (!a.dir.empty()) {
    root = fs::canonical(a.dir, ec);
    if (ec || !fs::is_directory(root)) return fail(fmt::format("--dir {}: not a directory", a.dir));
  }

  ServerOptions opt;
  opt.bind = a.bind;
  opt.port = static_cast<uint16_t>(a.port);
  opt.threads = a.threads;
  opt.max_connections = a.max_connections;
  if (auto tcp_mem = read_text_file("/proc/sys/net/ipv4/tcp_mem"))
    opt.unsent_budget = unsent_budget_for_tcp_mem(*tcp_mem, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)),
                                                  opt.unsent_budget);
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<long>(s * 1000)); };
  opt.header_timeout = ms(a.header_timeout);
  opt.idle_timeout = ms(a.idle_timeout);
  opt.io_timeout = ms(a.io_timeout);
  opt.request_timeout = ms(a.request_timeout);
  auto min_rate = parse_number(a.min_rate, "--min-rate");
  if (!min_rate) return fail(min_rate.error().message());
  opt.min_rate = static_cast<std::size_t>(*min_rate);
  auto body_memory = parse_number(a.body_memory, "--body-memory");
  if (!body_memory) return fail(body_memory.error().message());
  if (*body_memory < Router::kDefaultBodyLimit)
    return fail(fmt::format("--body-memory {}: must hold at least one request body (64K)", a.body_memory));
  opt.body_memory = static_cast<std::size_t>(*body_memory);
  std::string metrics_token;
  if (!a.metrics_token_file.empty()) {
    auto t = read_text_file(a.metrics_token_file);
    if (!t) return fail(fmt::format("--metrics-token-file {}", t.error().message()));
    metrics_token = *t;
    while (!metrics_token.empty() && std::isspace(static_cast<unsigned char>(metrics_token.back())))
      metrics_token.pop_back();
    if (metrics_token.empty() || metrics_token.find_first_of(" \t\r\n") != std::string::npos)
      return fail(fmt::format("--metrics-token-file {}: the file must hold one token (no spaces)",
                              a.metrics_token_file));
  }
  raise_fd_limit();
  // The port first: a server that cannot listen creates nothing (no data directory, CA, token or log).
  Metrics metrics;
  Router router;
  Server server(opt, nullptr, router, metrics, nullptr);
  if (auto r = server.listen(); !r) return fail(r.error().message());

  auto private_dir = prepare_data_dir(data_dir);
  if (!private_dir) return fail(private_dir.error().message());
  if (!private_dir->empty()) say(*private_dir);
  std::vector<std::string> ips = local_ip_addresses();
  auto ctx = load_tls(a, data_dir, ips);
  if (!ctx) return fail(ctx.error().message());
  if (a.ktls) {
    if (auto k = probe_kernel_tls(); k)
      say("kTLS: the kernel encrypts each TLS 1.2 connection's records once its handshake is done, files go "
          "by sendfile (ota32_tls_kernel_connections_total counts them)");
    else
      say(fmt::format("kTLS requested but unavailable: {}; OpenSSL encrypts in user space",
                      k.error().message()));
  }

  auto log = AccessLog::open(a.access_log);
  if (!log) return fail(log.error().message());
  std::unique_ptr<AccessLog> log_owner(*log);

  router.add(http::verb::get, "/metrics", make_metrics_handler(metrics, metrics_token));
  ServeContext sctx{data_dir, a.store, &metrics, {}};
  for (const auto& ip : ips)
    sctx.base_urls.push_back(
        fmt::format("https://{}:{}", ip.find(':') != std::string::npos ? "[" + ip + "]" : ip, server.port()));
  if (auto r = register_api_routes(router, sctx); !r) return fail(r.error().message());
  if (!root.empty()) {
    router.add_prefix(http::verb::get, "/", make_static_handler(root, [&metrics](const std::string& f) {
                        metrics.file_download_completed(f);
                      }));
    say(fmt::format("serving the files in {}", root.string()));
  }

  server.set_tls(ctx->get());
  server.set_access_log(log_owner.get());
  std::string host = a.bind == "0.0.0.0" || a.bind == "::" ? "<any local address>" : a.bind;
  say(fmt::format(
      "listening on https://{}:{}/ ({} threads); SIGINT/SIGTERM stop gracefully, SIGHUP reloads the "
      "certificate",
      host, server.port(), opt.threads ? opt.threads : std::max(1u, std::thread::hardware_concurrency())));
  // SIGHUP, like nginx's reload: the certificate and key are read again (a renewed --cert, or a zero-config
  // certificate reissued for a new address); new connections use them, open ones keep theirs. A file that
  // does not load leaves the current certificate in place.
  server.run(true, [&] {
    say("SIGHUP: reloading the certificate and key");
    auto fresh = load_tls(a, data_dir, local_ip_addresses());
    if (!fresh) {
      say(fmt::format("reload failed, still serving the previous certificate: {}", fresh.error().message()));
      return;
    }
    server.set_tls(fresh->get());
    say("reloaded: new connections use this certificate");
  });
  say("stopped");
  return 0;
}

struct CaArgs {
  std::string ca_dir, data = "ota32-data";
  std::vector<std::string> sans;
  bool no_local = false;
};

// ota32 serve ca init | issue: the CA key kept out of the data directory.
int ca_issue(const CaArgs& a, bool init) {
  std::error_code ec;
  fs::path ca_dir = fs::absolute(a.ca_dir, ec), data_dir = fs::absolute(a.data, ec);
  if (fs::equivalent(ca_dir, data_dir, ec))
    return fail(fmt::format("{}: the CA directory must not be the data directory (--data)", a.ca_dir));
  if (init) {
    if (auto r = create_offline_ca(ca_dir); !r) return fail(r.error().message());
    say(
        fmt::format("created a CA in {} (ca_key.pem: keep it offline, it is needed only to issue server "
                    "certificates)",
                    ca_dir.string()));
  }
  auto private_dir = prepare_data_dir(data_dir);
  if (!private_dir) return fail(private_dir.error().message());
  if (!private_dir->empty()) say(*private_dir);
  auto [names, addrs] = certificate_names(a.sans, !a.no_local, local_ip_addresses());
  auto issued = issue_from_offline_ca(ca_dir, data_dir, names, addrs);
  if (!issued) return fail(issued.error().message());
  say(fmt::format("issued a new server certificate ({})", issued->reason));
  print_certificate("server certificate", issued->server_cert);
  say(fmt::format("CA certificate for the firmware (simple_ota_example: server_certs/ca_cert.pem): {}",
                  issued->ca_cert.string()));
  say(fmt::format("{} holds no CA key: start `ota32 serve --data {}` (a running server: send it SIGHUP)",
                  data_dir.string(), data_dir.string()));
  return 0;
}

void add_ca_commands(CLI::App* serve, int* exit_code) {
  auto* ca = serve->add_subcommand("ca", "A CA whose key stays out of the data directory (offline)");
  ca->require_subcommand(1);
  for (bool init : {true, false}) {
    auto args = std::make_shared<CaArgs>();
    auto* cmd =
        init ? ca->add_subcommand("init",
                                  "Make a new CA in CA_DIR (0700, its key 0600) and issue the server "
                                  "certificate into --data, which gets ca_cert.pem but not the key")
             : ca->add_subcommand("issue",
                                  "Issue a new server key and certificate from the CA in CA_DIR into --data "
                                  "(rotation, new names or addresses); then SIGHUP the server");
    cmd->add_option("CA_DIR", args->ca_dir, "Directory of the CA (ca_cert.pem, ca_key.pem)")->required();
    cmd->add_option("--data", args->data, "The server's data directory")->capture_default_str();
    cmd->add_option("--san", args->sans, "Extra DNS name or IP address for the server certificate");
    cmd->add_flag("--no-local", args->no_local,
                  "Leave out this host's names and addresses (issuing for a server on another host: give "
                  "its names with --san; the current certificate's names are kept)");
    cmd->callback([args, exit_code, init] { *exit_code = ca_issue(*args, init); });
  }
}

}  // namespace

void add_serve_command(CLI::App& app, int* exit_code) {
  auto args = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "Run the HTTPS update server (replaces `openssl s_server -WWW`)");
  cmd->add_option("--dir", args->dir, "Serve the files of this directory at /<name> (like s_server -WWW)");
  cmd->add_option("--data", args->data, "Data directory: TLS certificates and keys, the store")
      ->capture_default_str();
  cmd->add_option("--port", args->port, "TCP port (0 = any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--bind", args->bind, "Local address to listen on")->capture_default_str();
  cmd->add_option("--cert", args->cert, "PEM certificate chain to use instead of the zero-config one");
  cmd->add_option("--key", args->key, "PEM private key of --cert");
  cmd->add_option("--san", args->sans, "Extra DNS name or IP address for the zero-config certificate");
  cmd->add_option("--threads", args->threads, "Event-loop threads (0 = one per core)")->capture_default_str();
  cmd->add_option("--max-connections", args->max_connections, "Connections beyond this are closed at once")
      ->capture_default_str();
  cmd->add_option("--access-log", args->access_log, "Access log: - (stdout), off, or a file (JSON lines)")
      ->capture_default_str();
  cmd->add_option("--header-timeout", args->header_timeout, "Seconds to receive a request header")
      ->capture_default_str();
  cmd->add_option("--idle-timeout", args->idle_timeout, "Seconds a keep-alive connection may wait idle")
      ->capture_default_str();
  cmd->add_option("--io-timeout", args->io_timeout,
                  "Seconds without progress reading a body or writing a reply")
      ->capture_default_str();
  cmd->add_option("--request-timeout", args->request_timeout,
                  "Seconds to receive a whole request, header and body")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--min-rate", args->min_rate,
                  "Bytes per second a request body or a response must average after its first "
                  "--io-timeout (K/M suffixes; 0 = no minimum)")
      ->capture_default_str();
  cmd->add_option("--body-memory", args->body_memory,
                  "Request bodies held in memory, all connections together (uploads go to files); more "
                  "get 503 + Retry-After (K/M suffixes)")
      ->capture_default_str();
  cmd->add_option("--tls-max", args->tls_max,
                  "Highest TLS version offered: 1.3, or 1.2 (what ESP32 clients speak; with --ktls every "
                  "connection then goes through the kernel)")
      ->check(CLI::IsMember({"1.2", "1.3"}))
      ->capture_default_str();
  cmd->add_flag(
      "--ktls", args->ktls,
      "Kernel TLS for TLS 1.2 connections (Linux `tls` module): the kernel encrypts records and sends "
      "files with sendfile; TLS 1.3 and kernels without it: OpenSSL encrypts as usual");
  cmd->add_option("--metrics-token-file", args->metrics_token_file,
                  "/metrics answers only requests with 'Authorization: Bearer <the token in this file>'")
      ->check(CLI::ExistingFile);
  cmd->add_option("--store", args->store,
                  "Store URL: sqlite:///path (default: in --data) or postgresql://...");
  add_api_options(cmd);
  add_ca_commands(cmd, exit_code);
  cmd->callback([args, exit_code, cmd] {
    if (cmd->get_subcommands().empty()) *exit_code = serve(*args);  // not after `serve ca ...`
  });
}

}  // namespace ota32::server
