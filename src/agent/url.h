// URLs as esp_http_client understands them: http/https, host (name, IPv4, [IPv6]), optional port, path+query.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "core/result.h"

namespace ota32::agent {

struct Url {
  std::string scheme;  // "http" or "https"
  std::string host;    // without brackets for IPv6
  uint16_t port = 0;
  std::string target;  // path plus "?query", "/" when the URL has none

  bool https() const { return scheme == "https"; }
  // True when host is an IPv4 or IPv6 literal (the certificate must then carry that address).
  bool host_is_ip() const;
  // The Host header: esp_http_client adds ":port" only when the port is neither 80 nor 443.
  std::string host_header() const;
  // "https://host:port/path" (the port always shown), for messages.
  std::string str() const;
};

// Errors: invalid_argument naming the URL (no scheme, unsupported scheme, empty host, bad port).
Result<Url> parse_url(std::string_view text);

// A redirect's Location resolved against the URL that answered: absolute URLs, "//host/..", "/path" and
// relative paths.
Result<Url> resolve_location(const Url& base, std::string_view location);

}  // namespace ota32::agent
