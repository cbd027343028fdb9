// `ota32 fw push|list|rm`: the admin client of the catalog API (docs/api.md), over Beast + OpenSSL. Lives in
// ota32-serve (which `ota32 fw` execs) so that the ota32 binary never loads OpenSSL.
#pragma once

#include <CLI/CLI.hpp>

#include <boost/beast/http/verb.hpp>

#include <chrono>
#include <filesystem>
#include <string>

#include "core/result.h"

namespace ota32::server {

struct FwClientOptions {
  std::string server;        // "https://10.0.0.36:8070" (a path prefix is kept)
  std::string token;         // admin bearer token
  std::filesystem::path ca;  // PEM trust anchor(s); empty = the system's CA store
  std::chrono::seconds timeout{30};
};

struct HttpResult {
  int status = 0;
  std::string body;
};

// One request to the server; a non-2xx status is a result, not an error. Errors: invalid_argument (bad
// URL / CA file), unavailable (cannot connect, TLS failure), timeout.
Result<HttpResult> fw_request(const FwClientOptions& opt, boost::beast::http::verb method,
                              std::string_view target, std::string body, std::string_view content_type);

// Percent-encoding of a path segment or query value (RFC 3986 unreserved characters kept).
std::string percent_encode(std::string_view s);

// What every admin command (fw, group, device-registry, rollout) takes: --server, --token / --token-file
// (or OTA32_SERVER / OTA32_TOKEN), --ca, --json.
struct AdminOptions {
  FwClientOptions client;
  std::string ca, token_file;
  bool json = false;
};
void add_admin_options(CLI::App* cmd, AdminOptions& o);
FwClientOptions client_of(const AdminOptions& o);
// "ota32: <what>: server answered 422 invalid_image: <message>" on stderr; returns 1.
int report_http_error(std::string_view what, const HttpResult& r);
// "ota32: <message>" on stderr; returns 1.
int fail_with(const Error& e);
// "2026-12-08 02:36:06Z" ("-" for 0).
std::string format_time(int64_t unix_seconds);

// Adds the `fw` command group (push, list, rm) to ota32-serve's command line. A command's callback stores its
// exit status (0 ok, 1 failed: one line "ota32: ..." on stderr) in `exit_code`, which main returns.
void register_fw_commands(CLI::App& app, int& exit_code);

}  // namespace ota32::server
