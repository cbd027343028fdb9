// The file server's Range / If-None-Match / If-Range handling (pure functions of the request and the
// file's size): every planned window lies inside the file and the headers describe exactly that window.
#include <charconv>
#include <string>

#include "fuzz_check.h"
#include "server/file_response.h"

using namespace ota32;
using namespace ota32::server;

namespace {

// Header values as a client could send them: Beast refuses CR, LF and NUL in a field value.
std::string field_value(std::string_view s) {
  std::string v;
  for (char c : s)
    if (c != '\r' && c != '\n' && c != '\0') v += c;
  return v;
}

// The tag without blanks around it and without the weak marker.
std::string_view opaque(std::string_view t) {
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t')) t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t')) t.remove_suffix(1);
  if (t.starts_with("W/")) t.remove_prefix(2);
  return t;
}

uint64_t to_u64(std::string_view s) {
  uint64_t v = 0;
  std::from_chars(s.data(), s.data() + s.size(), v);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t flags = in.take_u8();
  // Sizes around the interesting edges (0, 1, small, 2^32, 2^64-1) as well as arbitrary ones.
  uint64_t file_size = in.take_u32();
  if (flags & 1) file_size %= 64;
  if (flags & 2) file_size = file_size << 32 | in.take_u32();
  std::string range = field_value(in.take_part());
  std::string inm = field_value(in.take_part());
  std::string if_range = field_value(in.take_part());
  std::string etag = field_value(in.take_part());

  bool unsatisfiable = true;
  auto r = parse_range(range, file_size, unsatisfiable);
  if (r) {
    FUZZ_CHECK(!unsatisfiable, "a range and unsatisfiable");
    FUZZ_CHECK(r->first <= r->last && r->last < file_size, "range %llu-%llu of %llu",
               static_cast<unsigned long long>(r->first), static_cast<unsigned long long>(r->last),
               static_cast<unsigned long long>(file_size));
    // The range printed back as "bytes=first-last" is the same range.
    bool u2 = true;
    auto again =
        parse_range("bytes=" + std::to_string(r->first) + "-" + std::to_string(r->last), file_size, u2);
    FUZZ_CHECK(again && again->first == r->first && again->last == r->last && !u2,
               "range does not round-trip");
  }
  FUZZ_CHECK(!etag_matches(inm, "") || inm.find('*') != std::string::npos, "an empty ETag matched '%s'",
             inm.c_str());
  if (etag.find(',') == std::string::npos && !opaque(etag).empty()) {
    FUZZ_CHECK(etag_matches(etag, etag), "ETag '%s' does not match itself", etag.c_str());
  }

  HttpRequest req{(flags & 4) ? http::verb::head : http::verb::get, "/fw.bin", 11};
  if (flags & 8) req.set(http::field::range, range);
  if (flags & 16) req.set(http::field::if_none_match, inm);
  if (flags & 32) req.set(http::field::if_range, if_range);
  FileReply reply;
  reply.etag = etag;
  FileStat st;
  st.size = file_size;
  FilePlan plan = plan_file_response(req, reply, st);
  const unsigned status = plan.header.result_int();
  FUZZ_CHECK(status == 200 || status == 206 || status == 304 || status == 416, "status %u", status);
  FUZZ_CHECK(plan.offset <= file_size && plan.length <= file_size - plan.offset, "window %llu+%llu of %llu",
             static_cast<unsigned long long>(plan.offset), static_cast<unsigned long long>(plan.length),
             static_cast<unsigned long long>(file_size));
  if (flags & 4) FUZZ_CHECK(plan.length == 0 && !plan.reaches_end, "HEAD with a body");
  if (status == 206) {
    auto cr = plan.header[http::field::content_range];
    std::string want_prefix = "bytes " + std::to_string(plan.offset) + "-";
    FUZZ_CHECK(cr.starts_with(want_prefix) && cr.ends_with("/" + std::to_string(file_size)),
               "Content-Range '%s' for offset %llu", std::string(cr).c_str(),
               static_cast<unsigned long long>(plan.offset));
    std::string_view cl = plan.header[http::field::content_length];
    uint64_t len = to_u64(cl);
    FUZZ_CHECK(len >= 1 && plan.offset + len <= file_size, "206 Content-Length %s", std::string(cl).c_str());
    if (!(flags & 4))
      FUZZ_CHECK(plan.length == len, "206 sends %llu of %llu", static_cast<unsigned long long>(plan.length),
                 static_cast<unsigned long long>(len));
    FUZZ_CHECK(plan.reaches_end == (!(flags & 4) && plan.offset + len == file_size), "reaches_end");
  }
  if (status == 200 && !(flags & 4)) {
    FUZZ_CHECK(plan.offset == 0 && plan.length == file_size && plan.reaches_end, "200 is not the whole file");
  }
  if (status == 304 || status == 416)
    FUZZ_CHECK(plan.length == 0 && !plan.reaches_end, "%u with a body", status);
  return 0;
}
