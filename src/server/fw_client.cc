#include "server/fw_client.h"

#include <fmt/format.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <nlohmann/json.hpp>

#include <ctime>
#include <optional>

#include "core/file_io.h"
#include "format/secure_boot_v2.h"
#include "sign/host_signer.h"

namespace ota32::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace ssl = asio::ssl;
using tcp = asio::ip::tcp;
using json = nlohmann::json;

struct ServerUrl {
  bool tls = true;
  std::string host;  // without brackets
  std::string port;
  std::string prefix;  // path prefix without trailing '/'
  std::string host_header;
};

Result<ServerUrl> parse_server_url(std::string_view url) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::invalid_argument, fmt::format("--server {}: {}", url, why));
  };
  ServerUrl u;
  std::string_view rest = url;
  if (rest.starts_with("https://")) {
    rest.remove_prefix(8);
  } else if (rest.starts_with("http://")) {
    u.tls = false;
    rest.remove_prefix(7);
  } else {
    return bad("must start with https:// or http://");
  }
  auto slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  if (slash != std::string_view::npos) u.prefix = std::string(rest.substr(slash));
  while (!u.prefix.empty() && u.prefix.back() == '/') u.prefix.pop_back();
  if (authority.empty()) return bad("no host");
  std::string_view port;
  if (authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated IPv6 address");
    u.host = std::string(authority.substr(1, close - 1));
    auto after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("junk after the IPv6 address");
      port = after.substr(1);
    }
  } else {
    auto colon = authority.rfind(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (u.host.empty()) return bad("no host");
  if (!port.empty()) {
    for (char c : port)
      if (c < '0' || c > '9') return bad("the port is not a number");
    if (port.size() > 5 || std::stoi(std::string(port)) > 65535 || std::stoi(std::string(port)) == 0)
      return bad("the port is out of range");
  }
  u.port = port.empty() ? (u.tls ? "443" : "80") : std::string(port);
  u.host_header = std::string(authority);
  return u;
}

}  // namespace

std::string percent_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~')
      out += static_cast<char>(c);
    else
      out += fmt::format("%{:02X}", c);
  }
  return out;
}

Result<HttpResult> fw_request(const FwClientOptions& opt, http::verb method, std::string_view target,
                              std::string body, std::string_view content_type) {
  OTA32_ASSIGN(ServerUrl url, parse_server_url(opt.server));
  std::optional<ssl::context> tls;
  if (url.tls) {
    tls.emplace(ssl::context::tls_client);
    tls->set_verify_mode(ssl::verify_peer);
    boost::system::error_code ec;
    if (opt.ca.empty()) {
      tls->set_default_verify_paths(ec);
    } else {
      tls->load_verify_file(opt.ca.string(), ec);
    }
    if (ec)
      return Error(ErrorCode::invalid_argument,
                   fmt::format("--ca {}: cannot load the CA certificate: {}",
                               opt.ca.empty() ? "(system store)" : opt.ca.string(), ec.message()));
  }

  http::request<http::string_body> req{method, url.prefix + std::string(target), 11};
  req.set(http::field::host, url.host_header);
  req.set(http::field::user_agent, "ota32-fw/0.1");
  if (!opt.token.empty()) req.set(http::field::authorization, "Bearer " + opt.token);
  if (!content_type.empty()) req.set(http::field::content_type, content_type);
  req.body() = std::move(body);
  req.keep_alive(false);
  req.prepare_payload();

  asio::io_context ioc;
  HttpResult out;
  std::optional<Error> failure;
  auto fail = [&](ErrorCode code, std::string_view stage, const beast::error_code& ec) {
    std::string why = ec == beast::error::timeout ? "timed out" : ec.message();
    failure = Error(ec == beast::error::timeout ? ErrorCode::timeout : code,
                    fmt::format("{}: {} failed: {}", opt.server, stage, why));
  };

  // Send the request and read the reply over any stream (TCP or TLS); every step has the timeout.
  auto exchange = [&](auto& stream, beast::tcp_stream& lower) -> asio::awaitable<void> {
    beast::error_code ec;
    lower.expires_after(opt.timeout);
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail(ErrorCode::unavailable, "sending the request", ec);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(256 * 1024 * 1024);
    lower.expires_after(opt.timeout);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail(ErrorCode::unavailable, "reading the response", ec);
    out.status = static_cast<int>(parser.get().result_int());
    out.body = std::move(parser.get().body());
  };

  auto session = [&]() -> asio::awaitable<void> {
    beast::error_code ec;
    tcp::resolver resolver(ioc);
    auto endpoints =
        co_await resolver.async_resolve(url.host, url.port, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail(ErrorCode::unavailable, "resolving " + url.host, ec);
    if (!tls) {
      beast::tcp_stream stream(ioc);
      stream.expires_after(opt.timeout);
      co_await stream.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
      if (ec) co_return fail(ErrorCode::unavailable, "connecting", ec);
      co_await exchange(stream, stream);
      co_return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(ioc, *tls);
    // Check the certificate against the host: an IP address against the IP SANs, a name against the DNS SANs
    // (and send it as SNI).
    boost::system::error_code ip_ec;
    asio::ip::make_address(url.host, ip_ec);
    X509_VERIFY_PARAM* param = SSL_get0_param(stream.native_handle());
    if (!ip_ec) {
      X509_VERIFY_PARAM_set1_ip_asc(param, url.host.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, url.host.c_str(), 0);
      SSL_set_tlsext_host_name(stream.native_handle(), url.host.c_str());
    }
    auto& lower = beast::get_lowest_layer(stream);
    lower.expires_after(opt.timeout);
    co_await lower.async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return fail(ErrorCode::unavailable, "connecting", ec);
    lower.expires_after(opt.timeout);
    co_await stream.async_handshake(ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      long verify = SSL_get_verify_result(stream.native_handle());
      if (verify != X509_V_OK) {
        failure = Error(
            verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH
                ? ErrorCode::certificate_name_mismatch
                : ErrorCode::certificate_untrusted,
            fmt::format("{}: the server's certificate does not verify: {} (pass the server's CA with --ca)",
                        opt.server, X509_verify_cert_error_string(verify)));
        co_return;
      }
      co_return fail(ErrorCode::unavailable, "TLS handshake", ec);
    }
    co_await exchange(stream, lower);
    // The server closes after the reply (Connection: close); no TLS shutdown dance needed for a client.
  };

  asio::co_spawn(ioc, session(), asio::detached);
  ioc.run();
  if (failure) return *failure;
  return out;
}

void add_admin_options(CLI::App* cmd, AdminOptions& o) {
  cmd->add_option("--server", o.client.server, "the ota32 server, e.g. https://10.0.0.36:8070")
      ->envname("OTA32_SERVER")
      ->required();
  auto* token =
      cmd->add_option("--token", o.client.token, "admin token (printed once by the server's first start)")
          ->envname("OTA32_TOKEN");
  cmd->add_option("--token-file", o.token_file, "read the admin token from this file (first line)")
      ->excludes(token)
      ->check(CLI::ExistingFile);
  cmd->add_option("--ca", o.ca,
                  "PEM CA certificate to trust (the server's DATA/ca_cert.pem); default: system CAs");
  cmd->add_flag("--json", o.json, "print the server's JSON reply");
  cmd->parse_complete_callback([&o] {
    if (!o.token_file.empty()) {
      auto text = read_file(o.token_file, 4096, "token file");
      if (!text) throw CLI::ValidationError("--token-file", text.error().message());
      std::string t(text->begin(), text->end());
      t = t.substr(0, t.find_first_of("\r\n"));
      while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.pop_back();
      o.client.token = t;
    }
    if (o.client.token.empty())
      throw CLI::RequiredError("--token or --token-file (or OTA32_TOKEN): the admin token");
  });
}

FwClientOptions client_of(const AdminOptions& o) {
  FwClientOptions c = o.client;
  c.ca = o.ca;
  return c;
}

int report_http_error(std::string_view what, const HttpResult& r) {
  json body = json::parse(r.body, nullptr, false);
  std::string detail = r.body.substr(0, 200);
  if (body.is_object() && body.contains("message") && body["message"].is_string())
    detail = body.value("error", std::string()) + ": " + body["message"].get<std::string>();
  while (!detail.empty() && (detail.back() == '\n' || detail.back() == '\r')) detail.pop_back();
  fmt::print(stderr, "ota32: {}: server answered {} {}\n", what, r.status, detail);
  return 1;
}

int fail_with(const Error& e) {
  fmt::print(stderr, "ota32: {}\n", e.message());
  return 1;
}

std::string format_time(int64_t unix_seconds) {
  if (unix_seconds == 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

namespace {

using CommonOptions = AdminOptions;
void add_common(CLI::App* cmd, CommonOptions& o) { add_admin_options(cmd, o); }

// --sign: the private keys as block signers (the same OpenSSL path as `ota32 sign sign`), loaded once.
Result<std::vector<BlockSigner>> load_signers(const std::vector<std::string>& key_files) {
  std::vector<BlockSigner> signers;
  for (const auto& k : key_files) {
    OTA32_ASSIGN(Bytes pem, read_file(k, 64 * 1024, "signing key"));
    auto s = load_signing_key(pem);
    if (!s) return s.error().with_context(k);
    signers.push_back(std::move(*s));
  }
  return signers;
}

int push(const CommonOptions& o, const std::vector<std::string>& files, const std::string& chip,
         const std::string& channel, const std::vector<std::string>& sign_keys) {
  auto signers = load_signers(sign_keys);
  if (!signers) return fail_with(signers.error());
  int status = 0;
  for (const auto& file : files) {
    auto data = read_file(file);
    if (!data) {
      status = fail_with(data.error());
      continue;
    }
    if (!signers->empty()) {
      // espsecure sign_data --append_signatures: a block is added to an already-signed image's sector.
      auto signed_image = sign_image(*data, *signers, SignRequest{.append = true});
      if (!signed_image) {
        status = fail_with(signed_image.error().with_context(file));
        continue;
      }
      if (!o.json) {
        fmt::print("signed {}: {} signature block(s) over {} bytes\n", file, signed_image->total_blocks,
                   signed_image->signed_length);
      }
      *data = std::move(signed_image->output);
    }
    std::string query = "?name=" + percent_encode(std::filesystem::path(file).filename().string());
    if (!chip.empty()) query += "&chip=" + percent_encode(chip);
    if (!channel.empty()) query += "&channel=" + percent_encode(channel);
    auto r = fw_request(client_of(o), http::verb::post, "/api/v1/firmware" + query,
                        std::string(data->begin(), data->end()), "application/octet-stream");
    if (!r) {
      status = fail_with(r.error());
      continue;
    }
    if (r->status != 200 && r->status != 201) {
      status = report_http_error(file, *r);
      continue;
    }
    if (o.json) {
      fmt::print("{}", r->body);
      continue;
    }
    json b = json::parse(r->body, nullptr, false);
    if (!b.is_object()) {
      status = fail_with(Error(ErrorCode::corrupt, file + ": the server's reply is not JSON"));
      continue;
    }
    fmt::print("{} {} {} {} {} ({} bytes){}\n", r->status == 201 ? "uploaded" : "already present",
               b.value("sha256", ""), b.value("project", ""), b.value("version", ""), b.value("chip", ""),
               b.value("size", uint64_t{0}),
               b.value("channel", "stable") == "stable" ? "" : " channel " + b.value("channel", ""));
  }
  return status;
}

int list(const CommonOptions& o, const std::string& project, const std::string& chip,
         const std::string& channel) {
  std::string query;
  auto add = [&](std::string_view key, const std::string& v) {
    if (v.empty()) return;
    query += (query.empty() ? "?" : "&") + std::string(key) + "=" + percent_encode(v);
  };
  add("project", project);
  add("chip", chip);
  add("channel", channel);
  auto r = fw_request(client_of(o), http::verb::get, "/api/v1/firmware" + query, "", "");
  if (!r) return fail_with(r.error());
  if (r->status != 200) return report_http_error("list", *r);
  if (o.json) {
    fmt::print("{}", r->body);
    return 0;
  }
  json b = json::parse(r->body, nullptr, false);
  if (!b.is_object() || !b["firmware"].is_array())
    return fail_with(Error(ErrorCode::corrupt, "list: the server's reply is not the firmware list"));
  fmt::print("{:<64}  {:<20} {:<16} {:<9} {:<8} {:>9}  {}\n", "SHA256", "PROJECT", "VERSION", "CHIP",
             "CHANNEL", "SIZE", "UPLOADED");
  for (const auto& f : b["firmware"])
    fmt::print("{:<64}  {:<20} {:<16} {:<9} {:<8} {:>9}  {}\n", f.value("sha256", ""), f.value("project", ""),
               f.value("version", ""), f.value("chip", ""), f.value("channel", ""),
               f.value("size", uint64_t{0}), format_time(f.value("uploaded_at", int64_t{0})));
  return 0;
}

int remove(const CommonOptions& o, const std::vector<std::string>& ids) {
  int status = 0;
  for (const auto& id : ids) {
    auto r = fw_request(client_of(o), http::verb::delete_, "/api/v1/firmware/" + percent_encode(id), "", "");
    if (!r) {
      status = fail_with(r.error());
      continue;
    }
    if (r->status != 200) {
      status = report_http_error(id, *r);
      continue;
    }
    if (o.json)
      fmt::print("{}", r->body);
    else
      fmt::print("deleted {}\n", id);
  }
  return status;
}

}  // namespace

void register_fw_commands(CLI::App& app, int& exit_code) {
  auto* fw = app.add_subcommand("fw", "manage the firmware catalog of an ota32 server (admin token needed)");
  fw->require_subcommand(1);

  struct State {
    CommonOptions common;
    std::vector<std::string> files, sign_keys;
    std::string chip, channel, project;
  };
  auto push_state = std::make_shared<State>();
  auto* p =
      fw->add_subcommand("push", "upload app images (.bin) to the catalog; each is verified by the server");
  p->add_option("files", push_state->files, "app image files")->required()->check(CLI::ExistingFile);
  p->add_option("--chip", push_state->chip, "declare the chip (refused if the image is for another)");
  p->add_option("--channel", push_state->channel, "release channel (default stable)");
  p->add_option("--sign", push_state->sign_keys,
                "sign each image here (Secure Boot v2, as `ota32 sign sign --append`) with this private key "
                "before the upload; repeat for up to 3 keys. The server never sees the key")
      ->allow_extra_args(false)
      ->check(CLI::ExistingFile);
  add_common(p, push_state->common);
  p->callback([push_state, &exit_code] {
    exit_code = push(push_state->common, push_state->files, push_state->chip, push_state->channel,
                     push_state->sign_keys);
  });

  auto list_state = std::make_shared<State>();
  auto* l = fw->add_subcommand("list", "list the catalog, newest upload first");
  l->add_option("--project", list_state->project, "only this project");
  l->add_option("--chip", list_state->chip, "only this chip");
  l->add_option("--channel", list_state->channel, "only this channel");
  add_common(l, list_state->common);
  l->callback([list_state, &exit_code] {
    exit_code = list(list_state->common, list_state->project, list_state->chip, list_state->channel);
  });

  auto rm_state = std::make_shared<State>();
  auto* r = fw->add_subcommand("rm", "delete firmware from the catalog by SHA-256");
  r->add_option("sha256", rm_state->files, "SHA-256 of the firmware (as fw list shows)")->required();
  add_common(r, rm_state->common);
  r->callback([rm_state, &exit_code] { exit_code = remove(rm_state->common, rm_state->files); });
}

}  // namespace ota32::server
