// The agent's HTTP response reader (status line, headers, Content-Length / chunked / close-delimited
// bodies) over an in-memory Connection that hands out the input in pieces of fuzzed sizes: whatever the
// split, the body read is exactly the bytes the framing says, and a bad response is an Error.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>

#include "agent/http_client.h"
#include "fuzz_check.h"

using namespace ota32;

namespace {

// Hands out `data` in pieces whose sizes cycle through `pieces`, then a clean close (or a timeout).
class ScriptedConnection : public agent::Connection {
 public:
  ScriptedConnection(ByteView data, std::array<uint8_t, 4> pieces, bool end_with_timeout)
      : data_(data), pieces_(pieces), timeout_(end_with_timeout) {}
  Result<size_t> read(std::span<uint8_t> out) override {
    FUZZ_CHECK(!out.empty(), "read of 0 bytes (indistinguishable from a close)");
    if (pos_ == data_.size()) {
      if (timeout_) return Error(ErrorCode::timeout, "scripted timeout");
      return size_t{0};
    }
    size_t n = std::min({out.size(), data_.size() - pos_, size_t{pieces_[next_++ % 4]} + 1});
    std::copy_n(data_.begin() + static_cast<std::ptrdiff_t>(pos_), n, out.begin());
    pos_ += n;
    return n;
  }
  Result<void> write_all(ByteView) override { return {}; }

 private:
  ByteView data_;
  std::array<uint8_t, 4> pieces_;
  bool timeout_;
  size_t pos_ = 0, next_ = 0;
};

// Line splitting as the reader does it: up to '\n', one trailing '\r' removed.
std::optional<std::string_view> next_line(std::string_view s, size_t& pos) {
  size_t nl = s.find('\n', pos);
  if (nl == std::string_view::npos) return std::nullopt;
  std::string_view line = s.substr(pos, nl - pos);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  pos = nl + 1;
  return line;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// A straightforward decoder of a whole chunked body held in memory (no buffering to get wrong);
// nullopt when it is not a complete, well-formed chunked body.
std::optional<std::string> decode_chunked(std::string_view s, size_t pos) {
  std::string body;
  while (true) {
    auto size_line = next_line(s, pos);
    if (!size_line) return std::nullopt;
    std::string_view hex = trim(size_line->substr(0, size_line->find(';')));
    if (hex.empty() || hex.size() > 15) return std::nullopt;
    uint64_t n = 0;
    for (char c : hex) {
      int d = c >= '0' && c <= '9'   ? c - '0'
              : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                     : -1;
      if (d < 0) return std::nullopt;
      n = n * 16 + static_cast<uint64_t>(d);
    }
    if (n == 0) return body;  // trailers are skipped, not part of the body
    if (s.size() - pos < n) return std::nullopt;
    body.append(s.substr(pos, n));
    pos += n;
    auto crlf = next_line(s, pos);
    if (!crlf || !crlf->empty()) return std::nullopt;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::InputSplitter in(data, size);
  const uint8_t flags = in.take_u8();
  std::array<uint8_t, 4> pieces{in.take_u8(), in.take_u8(), in.take_u8(), in.take_u8()};
  const uint8_t read_size = in.take_u8();
  ByteView wire = in.rest();
  std::string_view text(reinterpret_cast<const char*>(wire.data()), wire.size());

  auto url = agent::parse_url("http://fuzz.invalid/fw.bin");
  FUZZ_CHECK(url.has_value(), "fixed URL");
  bool head = flags & 2;
  agent::HttpResponse resp(std::make_unique<ScriptedConnection>(wire, pieces, flags & 1), *url,
                           256 + (flags >> 4) * 64, head);
  auto h = resp.read_head();
  if (!h) {
    auto c = h.error().code();
    FUZZ_CHECK(c == ErrorCode::corrupt || c == ErrorCode::unavailable || c == ErrorCode::timeout,
               "head error code: %s", h.error().message().c_str());
    return 0;
  }
  FUZZ_CHECK(resp.status() >= 0 && resp.status() <= 999, "status %d", resp.status());
  FUZZ_CHECK(resp.headers().size() < 100, "%zu headers", resp.headers().size());

  // Where the head ends: after the first empty line following the status line.
  size_t body_at = 0;
  FUZZ_CHECK(next_line(text, body_at).has_value(), "head read without a status line");
  while (true) {
    auto line = next_line(text, body_at);
    FUZZ_CHECK(line.has_value(), "head read without an empty line");
    if (line->empty()) break;
  }

  std::string body;
  std::optional<Error> error;
  std::vector<uint8_t> buf(1 + read_size % 200 * 3);
  for (size_t calls = 0;; ++calls) {
    FUZZ_CHECK(calls <= wire.size() + 2, "read() made no progress after %zu calls", calls);
    auto n = resp.read(buf);
    if (!n) {
      error = n.error();
      break;
    }
    FUZZ_CHECK(*n <= buf.size(), "read %zu into %zu", *n, buf.size());
    if (*n == 0) break;
    body.append(reinterpret_cast<const char*>(buf.data()), *n);
  }
  FUZZ_CHECK(resp.body_read() == body.size(), "body_read %llu, returned %zu",
             static_cast<unsigned long long>(resp.body_read()), body.size());
  const int s = resp.status();
  const bool no_body = head || s == 204 || s == 304 || (s >= 100 && s < 200);
  if (no_body) FUZZ_CHECK(body.empty(), "a body for HEAD / %d", s);
  if (!no_body && !resp.chunked()) {
    // Content-Length and close-delimited bodies are the bytes after the head, never more than announced.
    FUZZ_CHECK(text.substr(body_at, body.size()) == body, "body is not the bytes after the head");
    if (resp.content_length()) FUZZ_CHECK(body.size() <= *resp.content_length(), "body past Content-Length");
  }
  if (error) {
    FUZZ_CHECK(!resp.complete(), "error after a complete body: %s", error->message().c_str());
    auto c = error->code();
    FUZZ_CHECK(c == ErrorCode::corrupt || c == ErrorCode::unavailable || c == ErrorCode::timeout,
               "body error code: %s", error->message().c_str());
    // The agent retries unavailable / timeout and resumes with Range: a framing error must not look like one.
    if (c == ErrorCode::unavailable && !(flags & 1)) {
      FUZZ_CHECK(error->message().find("connection closed") != std::string::npos, "unavailable: %s",
                 error->message().c_str());
    }
    return 0;
  }
  FUZZ_CHECK(resp.complete(), "read() returned 0 on an incomplete body");
  if (no_body) return 0;
  if (resp.chunked()) {
    auto ref = decode_chunked(text, body_at);
    FUZZ_CHECK(ref.has_value(), "chunked body accepted that a plain decoder refuses");
    FUZZ_CHECK(*ref == body, "chunked body differs from a plain decode (%zu vs %zu bytes)", body.size(),
               ref->size());
  } else if (resp.content_length()) {
    FUZZ_CHECK(body.size() == *resp.content_length(), "Content-Length %llu, body %zu",
               static_cast<unsigned long long>(*resp.content_length()), body.size());
  } else {
    FUZZ_CHECK(text.substr(body_at) == body, "close-delimited body is not the rest of the stream");
  }
  return 0;
}
