#include "agent/url.h"

#include <arpa/inet.h>
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "core/numbers.h"

namespace ota32::agent {
namespace {

// A space or a control character would land in the request line or a header (a CR LF in a redirect target
// is a header injection); esp_http_client's URL parser refuses them too.
bool has_space_or_control(std::string_view s) {
  return std::any_of(s.begin(), s.end(), [](char c) {
    auto u = static_cast<unsigned char>(c);
    return u <= 0x20 || u == 0x7F;
  });
}

}  // namespace

bool Url::host_is_ip() const {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

std::string Url::host_header() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != 80 && port != 443) h += fmt::format(":{}", port);
  return h;
}

std::string Url::str() const {
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  return fmt::format("{}://{}:{}{}", scheme, h, port, target);
}

Result<Url> parse_url(std::string_view text) {
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::invalid_argument, fmt::format("URL '{}': {}", text, why));
  };
  Url u;
  if (has_space_or_control(text)) return bad("a space or control character in the URL");
  auto sep = text.find("://");
  if (sep == std::string_view::npos) return bad("no scheme (expected https://HOST[:PORT]/PATH)");
  for (char c : text.substr(0, sep))
    u.scheme += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (u.scheme != "http" && u.scheme != "https") return bad(fmt::format("unsupported scheme '{}'", u.scheme));
  std::string_view rest = text.substr(sep + 3);
  auto path_at = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, path_at);
  std::string_view path = path_at == std::string_view::npos ? std::string_view() : rest.substr(path_at);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad("unterminated '[' in host");
    u.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad("unexpected text after ']'");
      port_text = after.substr(1);
    }
  } else {
    auto colon = authority.find(':');
    u.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port_text = authority.substr(colon + 1);
  }
  if (u.host.empty()) return bad("empty host");
  if (u.host.find_first_of("[]") != std::string::npos) return bad("'[' or ']' inside the host");
  u.port = u.https() ? 443 : 80;
  if (!port_text.empty()) {
    for (char c : port_text) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return bad(fmt::format("bad port '{}'", port_text));
    }
    auto p = parse_number(port_text, "port");
    if (!p || *p == 0 || *p > 65535) return bad(fmt::format("bad port '{}'", port_text));
    u.port = static_cast<uint16_t>(*p);
  }
  if (auto hash = path.find('#'); hash != std::string_view::npos) path = path.substr(0, hash);
  u.target = path.empty() ? "/" : std::string(path);
  if (u.target.front() == '?') u.target = "/" + u.target;
  return u;
}

Result<Url> resolve_location(const Url& base, std::string_view location) {
  if (location.find("://") != std::string_view::npos) return parse_url(location);
  if (location.empty()) return Error(ErrorCode::corrupt, "redirect without a Location");
  if (has_space_or_control(location)) {
    return Error(ErrorCode::corrupt, "redirect Location with a space or control character");
  }
  if (location.starts_with("//")) return parse_url(base.scheme + ":" + std::string(location));
  Url u = base;
  if (location.front() == '/') {
    u.target = std::string(location);
  } else {
    std::string dir = base.target.substr(0, base.target.find('?'));
    dir = dir.substr(0, dir.rfind('/') + 1);
    u.target = dir + std::string(location);
  }
  return u;
}

}  // namespace ota32::agent
