// The agent's hand-written DER walker for the server certificate's subjectAltName (agent/transport.cc,
// certificate_names / certificate_matches_host): it reads untrusted bytes from the TLS handshake. Beyond "no
// read outside the certificate", the two functions must agree: every name the verification reports matches
// itself, and a host matches only when one of those names covers it by the documented rules (exact,
// case-insensitive; a single leading "*." label for DNS names; IP literals compared as addresses).
#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>

#include "agent/transport.h"
#include "fuzz_check.h"

using namespace ota32;

namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

// An IP literal in its canonical text form (inet_ntop of inet_pton); empty when `s` is not one.
std::string canonical_ip(const std::string& s) {
  unsigned char ip[16];
  char buf[INET6_ADDRSTRLEN] = {};
  if (inet_pton(AF_INET, s.c_str(), ip) == 1) return inet_ntop(AF_INET, ip, buf, sizeof buf);
  if (inet_pton(AF_INET6, s.c_str(), ip) == 1) return inet_ntop(AF_INET6, ip, buf, sizeof buf);
  return {};
}

// Does one reported name cover `host` (the oracle, written from the header's contract)? For an IP literal
// in canonical form the names hold the certificate's addresses in that form too.
bool covers(const std::string& name, const std::string& host, bool host_is_ip) {
  if (iequals(name, host)) return true;
  if (host_is_ip || !name.starts_with("*.")) return false;
  auto dot = host.find('.');
  return dot != std::string::npos && dot > 0 && iequals(std::string_view(name).substr(1), host.substr(dot));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  // The host asked for: its length first, then its bytes; the certificate is the rest.
  const size_t host_len = in.take_u8() % 64;
  std::string host;
  for (size_t i = 0; i < host_len; ++i) host += static_cast<char>(in.take_u8());
  auto rest = in.rest();
  ByteView der(rest.data(), rest.size());

  const std::vector<std::string> names = agent::certificate_names(der);
  FUZZ_CHECK(names.size() <= 256 * 64 + 1, "%zu names", names.size());
  for (const auto& n : names) {
    FUZZ_CHECK(n.size() <= der.size(), "a name longer than the certificate (%zu > %zu)", n.size(),
               der.size());
    // A name with a NUL is a DNS entry the certificate holds, but no host given as a C string is that name.
    if (n.find('\0') != std::string::npos || n.empty()) continue;
    FUZZ_CHECK(agent::certificate_matches_host(der, n), "reported name '%s' does not match itself",
               n.c_str());
  }
  const bool matches = agent::certificate_matches_host(der, host);
  const std::string ip = canonical_ip(host);
  // A non-canonical IP literal ("::0001") is compared as an address with the iPAddress entries but as text
  // with DNS entries, so the names alone do not decide it; a host with a NUL ends at the NUL for inet_pton.
  if (host.find('\0') == std::string::npos && (ip.empty() || ip == host)) {
    bool expected = std::any_of(names.begin(), names.end(),
                                [&](const std::string& n) { return covers(n, host, !ip.empty()); });
    FUZZ_CHECK(matches == expected, "host '%s': matches %d, but the reported names say %d", host.c_str(),
               matches, expected);
  } else {
    FUZZ_CHECK(!matches || !names.empty(), "host matched a certificate without names");
  }
  return 0;
}
