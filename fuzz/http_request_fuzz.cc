// The server's request reading, as the session does it (server.cc read_request / before_body): Beast's
// request parser with the server's header limit, header first (eager off) and then the body, fed in pieces
// of fuzzed sizes; then the framing checks (framing_error, the raw Authorization check), the target split
// and percent-decoding, the query parser and the Router. Asserted: the verdict and the parsed request do not
// depend on how the bytes were split; a request that passes framing_error has one unambiguous body length;
// decoded paths and queries hold no NUL and round-trip through percent-encoding; the Router answers 404,
// 405 (with Allow) or the route whose pattern matches, with the decoded segments as its parameters.
#include <boost/beast/core/string.hpp>

#include <algorithm>
#include <cctype>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fuzz_check.h"
#include "server/http_types.h"

using namespace ota32;
using namespace ota32::server;

namespace {

constexpr std::size_t kHeaderLimit = 8 * 1024;  // ServerOptions::header_limit's default
constexpr std::size_t kBodyLimit = 4096;

struct Parsed {
  bool header_done = false;
  bool done = false;
  std::string error;  // empty = none (need_more at the end of the input is not an error)
  std::size_t head_bytes = 0;
  HttpRequest req;
};

// Feeds `bytes` to a fresh parser in pieces whose sizes come from `sizes` (0 = everything at once), keeping
// the unconsumed bytes in front of the next piece as the session's flat buffer does.
Parsed parse(std::string_view bytes, fuzz::InputSplitter* sizes) {
  Parsed out;
  http::request_parser<http::string_body> p;
  p.header_limit(kHeaderLimit);
  p.body_limit(boost::none);
  p.eager(false);
  std::string buf;
  std::size_t fed = 0, consumed_total = 0;
  for (int guard = 0; guard < 100000; ++guard) {
    std::size_t piece = bytes.size() - fed;
    if (sizes) piece = std::min<std::size_t>(piece, 1 + sizes->take_u8() % 97);
    buf.append(bytes.substr(fed, piece));
    fed += piece;
    bool progressed = true;
    while (progressed && !buf.empty() && !p.is_done()) {
      boost::beast::error_code ec;
      std::size_t used = p.put(boost::asio::buffer(buf.data(), buf.size()), ec);
      buf.erase(0, used);
      consumed_total += used;
      progressed = used > 0;
      if (ec && ec != http::error::need_more) {
        out.error = ec.message();
        out.header_done = p.is_header_done();
        return out;
      }
      if (p.is_header_done() && !out.header_done) {
        out.header_done = true;
        out.head_bytes = consumed_total;
        // As Session::before_body: a Content-Length over the limit is refused before the body is read.
        // Without that check the body's reader would reserve the announced length (string_body does, and so
        // does the session's SpoolBody for bodies in memory).
        if (p.content_length() && *p.content_length() > kBodyLimit) {
          out.error = "body too large";
          out.req = HttpRequest(p.get().base(), std::string());
          return out;
        }
        p.body_limit(kBodyLimit);
        p.eager(true);
        progressed = true;
      }
    }
    if (p.is_done() || fed == bytes.size()) break;
  }
  if (p.is_done()) {
    out.done = true;
    out.req = p.release();
  } else if (p.is_header_done()) {
    out.req = HttpRequest(p.get().base(), std::string());
  }
  return out;
}

std::string fields(const HttpRequest& r) {
  std::string s;
  for (const auto& f : r) {
    s += std::string(f.name_string()) + ": " + std::string(f.value()) + "\n";
  }
  return s;
}

std::string percent_encode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

Reply echo(const HttpRequest& req, const RequestContext& ctx, std::string route) {
  HttpResponse res{http::status::ok, req.version()};
  res.set("x-route", route);
  for (const auto& [k, v] : ctx.params) res.insert("x-param-" + k, percent_encode(v));
  return res;
}

const Router& router() {
  static const Router r = [] {
    Router x;
    x.add(http::verb::get, "/api/v1/devices/{id}/report",
          [](const HttpRequest& q, const RequestContext& c) { return echo(q, c, "report"); });
    x.add(http::verb::post, "/api/v1/devices/{id}/report",
          [](const HttpRequest& q, const RequestContext& c) { return echo(q, c, "report-post"); });
    x.add(http::verb::get, "/fw/{name}",
          [](const HttpRequest& q, const RequestContext& c) { return echo(q, c, "fw"); });
    x.add_prefix(http::verb::get, "/static/",
                 [](const HttpRequest& q, const RequestContext& c) { return echo(q, c, "static"); });
    x.add(http::verb::put, "/throws", [](const HttpRequest&, const RequestContext&) -> Reply {
      throw std::runtime_error("handler failed");
    });
    return x;
  }();
  return r;
}

void check_router(const HttpRequest& req) {
  RequestContext ctx;
  Reply reply = router().route(req, ctx);
  FUZZ_CHECK(std::holds_alternative<HttpResponse>(reply), "the test routes answer in memory");
  const auto& res = std::get<HttpResponse>(reply);
  const unsigned status = res.result_int();
  const std::string_view path = target_path(req.target());
  FUZZ_CHECK(status == 200 || status == 404 || status == 405 || status == 500, "status %u", status);
  if (status == 405) FUZZ_CHECK(!res[http::field::allow].empty(), "405 without Allow");
  if (status == 500)
    FUZZ_CHECK(path == "/throws" || path == "throws", "500 for %.*s", int(path.size()), path.data());
  if (status != 200) return;
  const std::string route(res["x-route"]);
  if (route == "static") {
    FUZZ_CHECK(path.starts_with("/static/"), "static route for another path");
    return;
  }
  // An exact route: the path has the pattern's segments, and each {name} is the decoded segment. The
  // Router takes the leading '/' as optional ("fw/a.bin" is "/fw/a.bin").
  std::vector<std::string_view> segs;
  for (std::size_t pos = path.starts_with('/') ? 1 : 0; pos <= path.size();) {
    std::size_t end = std::min(path.find('/', pos), path.size());
    segs.push_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  auto check_param = [&](std::string_view name, std::string_view raw) {
    std::string decoded;
    FUZZ_CHECK(percent_decode(raw, decoded), "a parameter that does not decode");
    FUZZ_CHECK(res["x-param-" + std::string(name)] == percent_encode(decoded), "parameter %.*s differs",
               int(name.size()), name.data());
  };
  if (route == "report" || route == "report-post") {
    FUZZ_CHECK(segs.size() == 5 && segs[0] == "api" && segs[1] == "v1" && segs[2] == "devices" &&
                   segs[4] == "report" && !segs[3].empty(),
               "report route for %.*s", int(path.size()), path.data());
    check_param("id", segs[3]);
  } else {
    FUZZ_CHECK(route == "fw" && segs.size() == 2 && segs[0] == "fw", "route %s", route.c_str());
    check_param("name", segs[1]);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t piece_seed_len = in.take_u8() % 32;
  std::string piece_seed;
  for (uint8_t i = 0; i < piece_seed_len; ++i) piece_seed += static_cast<char>(in.take_u8());
  auto rest = in.rest();
  std::string_view bytes(reinterpret_cast<const char*>(rest.data()), rest.size());

  Parsed whole = parse(bytes, nullptr);
  // The same bytes in small pieces (sizes from the seed, repeated): the same verdict and request.
  std::string sizes_bytes;
  while (sizes_bytes.size() < bytes.size() + 1)
    sizes_bytes += piece_seed.empty() ? std::string(1, '\x07') : piece_seed;
  fuzz::InputSplitter sizes(reinterpret_cast<const uint8_t*>(sizes_bytes.data()), sizes_bytes.size());
  Parsed pieces = parse(bytes, &sizes);
  // Beast may refuse a broken header at once when it has all of it, but wait for more when it has a piece
  // (both end as a refusal: 400, or 408 at the header deadline). What must not depend on the split is what
  // is accepted: a header, a body.
  FUZZ_CHECK(whole.header_done == pieces.header_done,
             "header accepted %d whole, %d in pieces (error '%s' / '%s')", whole.header_done,
             pieces.header_done, whole.error.c_str(), pieces.error.c_str());
  FUZZ_CHECK(!(whole.done && !pieces.error.empty()) && !(pieces.done && !whole.error.empty()),
             "body accepted one way, refused the other ('%s' / '%s')", whole.error.c_str(),
             pieces.error.c_str());
  if (!whole.header_done) return 0;
  FUZZ_CHECK(whole.head_bytes == pieces.head_bytes, "header of %zu vs %zu bytes", whole.head_bytes,
             pieces.head_bytes);
  FUZZ_CHECK(whole.head_bytes <= kHeaderLimit, "a header over the limit was accepted");
  const HttpRequest& req = whole.req;
  FUZZ_CHECK(fields(req) == fields(pieces.req) && req.target() == pieces.req.target() &&
                 req.method_string() == pieces.req.method_string() && req.version() == pieces.req.version(),
             "the header differs when split");
  if (whole.done) {
    FUZZ_CHECK(req.body() == pieces.req.body(), "the body differs when split");
    FUZZ_CHECK(req.body().size() <= kBodyLimit, "a body over the limit");
  }

  // Framing: what passes has exactly one way to find the body's end.
  const auto framing = framing_error(req.base());
  const std::size_t te = req.count(http::field::transfer_encoding);
  const std::size_t cl = req.count(http::field::content_length);
  if (!framing) {
    FUZZ_CHECK(te == 0 || (te == 1 && cl == 0 && req.version() >= 11 &&
                           boost::beast::iequals(req[http::field::transfer_encoding], "chunked")),
               "ambiguous framing passed");
    FUZZ_CHECK(req.version() < 11 || req.count(http::field::host) == 1, "HTTP/1.1 without one Host passed");
  } else {
    FUZZ_CHECK(!framing->empty() && framing->find('\n') == std::string::npos, "bad reason");
  }
  // The raw check sees what the parser trimmed: a flagged header has an Authorization field.
  if (authorization_has_trailing_whitespace(bytes.substr(0, whole.head_bytes))) {
    FUZZ_CHECK(req.count(http::field::authorization) > 0, "flagged without an Authorization field");
  }

  // The target: path + '?' + query is the target; decoded parts hold no NUL and round-trip.
  const std::string_view target = req.target();
  const std::string_view path = target_path(target), query = target_query(target);
  FUZZ_CHECK(query.empty() ? path.size() <= target.size() : path.size() + 1 + query.size() == target.size(),
             "path and query are not the target");
  std::string decoded;
  if (percent_decode(path, decoded)) {
    FUZZ_CHECK(decoded.find('\0') == std::string::npos && decoded.size() <= path.size(), "decoded path");
    std::string again;
    FUZZ_CHECK(percent_decode(percent_encode(decoded), again) && again == decoded, "path round trip");
  }
  for (const auto& [k, v] : parse_query(query)) {
    FUZZ_CHECK(k.find('\0') == std::string::npos && v.find('\0') == std::string::npos, "NUL in the query");
    FUZZ_CHECK(k.size() + v.size() <= query.size(), "query value longer than the query");
  }
  check_router(req);
  return 0;
}
