// The agent's URL parser and redirect resolution: what it accepts it can print and read back unchanged.
#include <string>

#include "agent/url.h"
#include "fuzz_check.h"

using namespace ota32;
using ota32::agent::Url;

namespace {

void check_url(const Url& u, const char* what) {
  FUZZ_CHECK(u.scheme == "http" || u.scheme == "https", "%s: scheme '%s'", what, u.scheme.c_str());
  FUZZ_CHECK(!u.host.empty(), "%s: empty host", what);
  FUZZ_CHECK(u.port != 0, "%s: port 0", what);
  FUZZ_CHECK(!u.target.empty() && u.target.front() == '/', "%s: target '%s'", what, u.target.c_str());
  // Host and target go into the request head as they are: no space, CR, LF or other control character.
  for (const std::string* s : {&u.host, &u.target}) {
    for (char c : *s) {
      auto b = static_cast<unsigned char>(c);
      FUZZ_CHECK(b > 0x20 && b != 0x7F, "%s: byte 0x%02x in '%s'", what, b, s->c_str());
    }
  }
}

bool same(const Url& a, const Url& b) {
  return a.scheme == b.scheme && a.host == b.host && a.port == b.port && a.target == b.target;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  std::string_view text = in.take_part();
  std::string_view location(reinterpret_cast<const char*>(in.rest().data()), in.rest().size());

  auto u = agent::parse_url(text);
  if (!u) {
    FUZZ_CHECK(u.error().code() == ErrorCode::invalid_argument, "parse_url error code");
    return 0;
  }
  check_url(*u, "parse_url");
  (void)u->host_is_ip();
  std::string host_header = u->host_header();
  FUZZ_CHECK(!host_header.empty(), "empty Host header");

  // str() is what messages and redirects print: it reads back as the same URL.
  auto again = agent::parse_url(u->str());
  FUZZ_CHECK(again.has_value(), "str() '%s' does not parse: %s", u->str().c_str(),
             again.error().message().c_str());
  FUZZ_CHECK(same(*u, *again), "'%s' reads back as '%s'", u->str().c_str(), again->str().c_str());

  auto r = agent::resolve_location(*u, location);
  if (r) {
    check_url(*r, "resolve_location");
    if (location.find("://") == std::string_view::npos && !location.starts_with("//")) {
      FUZZ_CHECK(r->scheme == u->scheme && r->host == u->host && r->port == u->port,
                 "a relative Location changed the origin");
    }
  }
  return 0;
}
