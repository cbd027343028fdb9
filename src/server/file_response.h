// How a FileReply becomes a response: Range (206 / 416), ETag and If-None-Match (304), If-Range, HEAD.
// Pure: the session gives the request, the reply and the file's size and mtime, and gets back the header to
// send and the byte window to stream. Tested without sockets.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "server/http_types.h"

namespace ota32::server {

struct FileStat {
  uint64_t size = 0;
  std::chrono::system_clock::time_point mtime;
};

struct FilePlan {
  HttpResponse header;  // status, headers and Content-Length set; body always empty
  uint64_t offset = 0;  // first byte of the file to send
  uint64_t length = 0;  // bytes to send after the header (0 for HEAD, 304, 416)
  // The body ends at the file's last byte: a full download, or the last piece of a resumed / ranged one
  // (ESP-IDF partial download). on_complete fires once it has been sent.
  bool reaches_end = false;
};

// The ETag the session uses when the handler gave none: size and mtime, like nginx.
std::string default_etag(const FileStat& st);

// One "bytes=first-last" / "bytes=first-" / "bytes=-suffix" range resolved against the size, or nullopt
// when the header is absent, malformed or asks for several ranges (then the whole file is sent, RFC 9110
// 14.2 lets a server ignore Range). `unsatisfiable` is set when the range starts past the end (416).
struct ByteRange {
  uint64_t first = 0, last = 0;
};
std::optional<ByteRange> parse_range(std::string_view header, uint64_t size, bool& unsatisfiable);

// True when an If-None-Match list ("*" or quoted tags, weak comparison) contains etag.
bool etag_matches(std::string_view if_none_match, std::string_view etag);

FilePlan plan_file_response(const HttpRequest& req, const FileReply& reply, const FileStat& st);

}  // namespace ota32::server
