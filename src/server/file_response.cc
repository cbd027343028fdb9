#include "server/file_response.h"

#include <fmt/format.h>

#include <time.h>
#include <charconv>
#include <ctime>

namespace ota32::server {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool parse_u64(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string_view opaque_tag(std::string_view tag) {
  tag = trim(tag);
  if (tag.starts_with("W/")) tag.remove_prefix(2);
  return tag;
}

std::string http_date(std::chrono::system_clock::time_point tp) {
  std::time_t t = std::chrono::system_clock::to_time_t(tp);
  struct tm tm {};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

// An HTTP-date (RFC 9110 5.6.7): the IMF-fixdate senders use, plus the obsolete RFC 850 and asctime forms a
// recipient must accept. nullopt when it is none of them (the header is then ignored).
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
  std::string s(trim(text));
  for (const char* fmt : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
    struct tm tm {};
    const char* end = strptime(s.c_str(), fmt, &tm);
    if (end && *end == '\0') return std::chrono::system_clock::from_time_t(timegm(&tm));
  }
  return std::nullopt;
}

}  // namespace

std::string default_etag(const FileStat& st) {
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(st.mtime.time_since_epoch()).count();
  return fmt::format("\"{:x}-{:x}\"", st.size, static_cast<uint64_t>(ns));
}

std::optional<ByteRange> parse_range(std::string_view header, uint64_t size, bool& unsatisfiable) {
  unsatisfiable = false;
  header = trim(header);
  if (!header.starts_with("bytes=")) return std::nullopt;
  std::string_view spec = trim(header.substr(6));
  if (spec.find(',') != std::string_view::npos) return std::nullopt;  // several ranges: send it all
  auto dash = spec.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  std::string_view a = trim(spec.substr(0, dash)), b = trim(spec.substr(dash + 1));
  ByteRange r;
  if (a.empty()) {  // suffix: the last N bytes
    uint64_t n = 0;
    if (!parse_u64(b, n)) return std::nullopt;
    if (n == 0 || size == 0) {
      unsatisfiable = true;
      return std::nullopt;
    }
    r.first = n >= size ? 0 : size - n;
    r.last = size - 1;
    return r;
  }
  if (!parse_u64(a, r.first)) return std::nullopt;
  if (b.empty()) {
    r.last = size == 0 ? 0 : size - 1;
  } else {
    if (!parse_u64(b, r.last) || r.last < r.first) return std::nullopt;
    // ESP-IDF's partial download asks for "bytes=start-<image length>" (one past the end): clamp.
    if (size > 0 && r.last >= size) r.last = size - 1;
  }
  if (r.first >= size) {
    unsatisfiable = true;
    return std::nullopt;
  }
  return r;
}

bool etag_matches(std::string_view list, std::string_view etag) {
  list = trim(list);
  if (list == "*") return true;
  std::string_view want = opaque_tag(etag);
  while (!list.empty()) {
    auto comma = list.find(',');
    std::string_view tag = opaque_tag(list.substr(0, comma));
    if (!tag.empty() && tag == want) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

FilePlan plan_file_response(const HttpRequest& req, const FileReply& reply, const FileStat& st) {
  FilePlan plan;
  HttpResponse& h = plan.header;
  h.version(req.version());
  h.keep_alive(req.keep_alive());
  std::string etag = reply.etag.empty() ? default_etag(st) : reply.etag;
  h.set(http::field::etag, etag);
  h.set(http::field::accept_ranges, "bytes");
  h.set(http::field::last_modified, http_date(st.mtime));
  for (const auto& [name, value] : reply.extra_headers) h.set(name, value);
  bool head = req.method() == http::verb::head;

  auto inm = req.find(http::field::if_none_match);
  if (inm != req.end() && etag_matches(inm->value(), etag)) {
    h.result(http::status::not_modified);
    return plan;  // no body, no Content-Length (RFC 9110 15.4.5)
  }
  // If-Modified-Since counts only without If-None-Match, on GET and HEAD (RFC 9110 13.1.3): `wget -N` and
  // caches ask "changed since my copy?"; not changed (to the second, the date's resolution) is a 304.
  auto ims = req.find(http::field::if_modified_since);
  if (inm == req.end() && ims != req.end() && (head || req.method() == http::verb::get)) {
    auto since = parse_http_date(ims->value());
    if (since && std::chrono::floor<std::chrono::seconds>(st.mtime) <= *since) {
      h.result(http::status::not_modified);
      return plan;
    }
  }

  h.set(http::field::content_type, reply.content_type);
  std::optional<ByteRange> range;
  auto rh = req.find(http::field::range);
  bool unsatisfiable = false;
  if (rh != req.end()) {
    // If-Range: honour Range only when the client's copy is this version.
    auto ir = req.find(http::field::if_range);
    bool same = ir == req.end() || opaque_tag(ir->value()) == opaque_tag(etag);
    if (same) range = parse_range(rh->value(), st.size, unsatisfiable);
  }
  if (unsatisfiable) {
    h.result(http::status::range_not_satisfiable);
    h.set(http::field::content_range, fmt::format("bytes */{}", st.size));
    h.content_length(0);
    return plan;
  }
  if (range) {
    h.result(http::status::partial_content);
    h.set(http::field::content_range, fmt::format("bytes {}-{}/{}", range->first, range->last, st.size));
    plan.offset = range->first;
    uint64_t len = range->last - range->first + 1;
    h.content_length(len);
    plan.length = head ? 0 : len;
    plan.reaches_end = !head && range->last + 1 == st.size;
    return plan;
  }
  h.result(http::status::ok);
  h.content_length(st.size);
  plan.length = head ? 0 : st.size;
  plan.reaches_end = !head;
  return plan;
}

}  // namespace ota32::server
