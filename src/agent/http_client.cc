#include "agent/http_client.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <cstring>

namespace ota32::agent {
namespace {

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

constexpr int kMaxHeaderLines = 100;

}  // namespace

HttpResponse::HttpResponse(std::unique_ptr<Connection> conn, Url url, size_t buffer_size, bool head)
    : conn_(std::move(conn)), url_(std::move(url)), head_(head), buf_(std::max<size_t>(buffer_size, 256)) {}

std::optional<std::string> HttpResponse::header(std::string_view name) const {
  for (const auto& h : headers_) {
    if (iequals(h.name, name)) return h.value;
  }
  return std::nullopt;
}

Result<size_t> HttpResponse::fill() {
  if (begin_ > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buf_.size()) return size_t{0};
  OTA32_ASSIGN(size_t n, conn_->read(std::span<uint8_t>(buf_.data() + end_, buf_.size() - end_)));
  if (n == 0) eof_ = true;
  end_ += n;
  return n;
}

Result<std::string> HttpResponse::read_line(std::string_view part) {
  for (int attempt = 0; attempt < 100000; ++attempt) {
    auto* start = buf_.data() + begin_;
    auto* nl = static_cast<uint8_t*>(std::memchr(start, '\n', end_ - begin_));
    if (nl != nullptr) {
      std::string line(reinterpret_cast<char*>(start), static_cast<size_t>(nl - start));
      begin_ += static_cast<size_t>(nl - start) + 1;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      return line;
    }
    if (begin_ == 0 && end_ == buf_.size()) {
      return Error(ErrorCode::corrupt,
                   fmt::format("{}: response line longer than {} bytes", url_.str(), buf_.size()));
    }
    if (eof_) {
      return Error(ErrorCode::unavailable,
                   fmt::format("{}: connection closed in the middle of the {}", url_.str(), part));
    }
    OTA32_TRY(fill());
  }
  return Error(ErrorCode::unavailable, "response line made no progress");
}

Result<void> HttpResponse::read_head() {
  auto first = read_line();
  if (!first) return first.error();
  const std::string status_line = *first;  // "HTTP/1.1 200 OK"
  if (status_line.size() < 12 || !status_line.starts_with("HTTP/") || status_line[8] != ' ') {
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: not an HTTP response: '{}'", url_.str(), status_line.substr(0, 40)));
  }
  status_ = 0;
  for (size_t i = 9; i < 12; ++i) {
    if (!std::isdigit(static_cast<unsigned char>(status_line[i]))) {
      return Error(ErrorCode::corrupt, fmt::format("{}: bad status line '{}'", url_.str(), status_line));
    }
    status_ = status_ * 10 + (status_line[i] - '0');
  }
  reason_ = std::string(trim(std::string_view(status_line).substr(12)));
  for (int i = 0;; ++i) {
    if (i == kMaxHeaderLines) {
      return Error(ErrorCode::corrupt,
                   fmt::format("{}: more than {} response headers", url_.str(), kMaxHeaderLines));
    }
    OTA32_ASSIGN(std::string line, read_line());
    if (line.empty()) break;
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;  // tolerated, as http_parser does for obs-fold junk
    headers_.push_back({std::string(trim(std::string_view(line).substr(0, colon))),
                        std::string(trim(std::string_view(line).substr(colon + 1)))});
  }
  if (auto te = header("Transfer-Encoding"); te && iequals(*te, "chunked")) {
    chunked_ = true;
  } else if (auto cl = header("Content-Length")) {
    uint64_t v = 0;
    if (cl->empty() || cl->size() > 15) {
      return Error(ErrorCode::corrupt, fmt::format("{}: bad Content-Length '{}'", url_.str(), *cl));
    }
    for (char c : *cl) {
      if (!std::isdigit(static_cast<unsigned char>(c))) {
        return Error(ErrorCode::corrupt, fmt::format("{}: bad Content-Length '{}'", url_.str(), *cl));
      }
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    content_length_ = v;
  }
  // No body for HEAD, 1xx, 204, 304.
  if (head_ || status_ == 204 || status_ == 304 || (status_ >= 100 && status_ < 200) ||
      (content_length_ && *content_length_ == 0)) {
    done_ = true;
  }
  return {};
}

Result<size_t> HttpResponse::read_raw(std::span<uint8_t> out) {
  if (begin_ < end_) {
    size_t n = std::min(out.size(), end_ - begin_);
    std::memcpy(out.data(), buf_.data() + begin_, n);
    begin_ += n;
    return n;
  }
  if (eof_) return size_t{0};
  OTA32_ASSIGN(size_t n, conn_->read(out));
  if (n == 0) eof_ = true;
  return n;
}

Result<size_t> HttpResponse::read(std::span<uint8_t> out) {
  if (done_ || out.empty()) return size_t{0};
  auto early_close = [&] {
    std::string of = content_length_ ? fmt::format(" of {}", *content_length_) : std::string();
    return Error(ErrorCode::unavailable, fmt::format("{}: connection closed after {}{} bytes of the body",
                                                     url_.str(), body_read_, of));
  };
  if (chunked_) {
    for (int attempt = 0; attempt < 1000; ++attempt) {
      if (in_chunk_ && chunk_left_ > 0) {
        OTA32_ASSIGN(size_t n, read_raw(out.first(std::min<uint64_t>(out.size(), chunk_left_))));
        if (n == 0) return early_close();
        chunk_left_ -= n;
        body_read_ += n;
        return n;
      }
      if (in_chunk_) {  // CRLF after the chunk data
        OTA32_ASSIGN(std::string crlf, read_line("chunked body"));
        if (!crlf.empty())
          return Error(ErrorCode::corrupt, fmt::format("{}: bad chunk terminator", url_.str()));
        in_chunk_ = false;
      }
      OTA32_ASSIGN(std::string size_line, read_line("chunked body"));
      std::string_view hex = trim(std::string_view(size_line).substr(0, size_line.find(';')));
      if (hex.empty() || hex.size() > 15) {
        return Error(ErrorCode::corrupt, fmt::format("{}: bad chunk size '{}'", url_.str(), size_line));
      }
      uint64_t size = 0;
      for (char c : hex) {
        int d = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
                : (c >= 'a' && c <= 'f')                    ? c - 'a' + 10
                : (c >= 'A' && c <= 'F')                    ? c - 'A' + 10
                                                            : -1;
        if (d < 0)
          return Error(ErrorCode::corrupt, fmt::format("{}: bad chunk size '{}'", url_.str(), size_line));
        size = size * 16 + static_cast<uint64_t>(d);
      }
      if (size == 0) {  // last chunk, then trailers up to an empty line
        for (int i = 0; i < kMaxHeaderLines; ++i) {
          OTA32_ASSIGN(std::string trailer, read_line("chunked body"));
          if (trailer.empty()) break;
        }
        done_ = true;
        return size_t{0};
      }
      chunk_left_ = size;
      in_chunk_ = true;
    }
    return Error(ErrorCode::corrupt, fmt::format("{}: chunked body made no progress", url_.str()));
  }
  if (content_length_) {
    uint64_t left = *content_length_ - body_read_;
    OTA32_ASSIGN(size_t n, read_raw(out.first(std::min<uint64_t>(out.size(), left))));
    if (n == 0) return early_close();
    body_read_ += n;
    if (body_read_ == *content_length_) done_ = true;
    return n;
  }
  OTA32_ASSIGN(size_t n, read_raw(out));
  if (n == 0) done_ = true;  // close-delimited body: the clean close completes it
  body_read_ += n;
  return n;
}

Result<std::string> HttpResponse::read_all(size_t limit) {
  std::string body;
  uint8_t chunk[512];
  for (size_t guard = 0; guard <= limit / 1 + 1; ++guard) {
    OTA32_ASSIGN(size_t n, read(chunk));
    if (n == 0) return body;
    if (body.size() + n > limit) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}: response body larger than {} bytes", url_.str(), limit));
    }
    body.append(reinterpret_cast<char*>(chunk), n);
  }
  return body;
}

Result<std::unique_ptr<HttpResponse>> HttpClient::send(const HttpRequest& request) {
  OTA32_ASSIGN(Url url, parse_url(request.url));
  std::string method = request.method;
  std::string body = request.body;
  bool host_changed = false;
  for (int hop = 0;; ++hop) {
    OTA32_ASSIGN(auto conn, options_.connect ? options_.connect(url)
                                             : open_connection(url, options_.tls, options_.timeout));
    std::string head = fmt::format("{} {} HTTP/1.1\r\nUser-Agent: {}\r\nHost: {}\r\n", method, url.target,
                                   options_.user_agent, host_changed ? url.host : url.host_header());
    for (const auto& h : request.headers) head += fmt::format("{}: {}\r\n", h.name, h.value);
    bool with_body = method == "POST" || method == "PUT";
    if (with_body) head += fmt::format("Content-Length: {}\r\n", body.size());
    head += "\r\n";
    if (with_body) head += body;
    OTA32_TRY(conn->write_all(as_bytes(head)));
    auto resp = std::make_unique<HttpResponse>(std::move(conn), url, options_.buffer_size, method == "HEAD");
    OTA32_TRY(resp->read_head());
    int s = resp->status();
    bool redirect = s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
    if (!redirect) return resp;
    auto location = resp->header("Location");
    if (!location) {
      return Error(ErrorCode::corrupt,
                   fmt::format("{}: HTTP {} redirect without a Location header", url.str(), s));
    }
    if (hop >= options_.max_redirects) {
      return Error(ErrorCode::unavailable, fmt::format("{}: more than {} redirects (last to {})", request.url,
                                                       options_.max_redirects, *location));
    }
    OTA32_ASSIGN(Url next, resolve_location(url, *location));
    if (url.https() && !next.https()) {
      // v5.5.5: ESP_ERR_HTTP_REDIRECT_DOWNGRADE.
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}: HTTPS origin can only redirect to https:// targets (got {})", url.str(),
                               *location));
    }
    host_changed = host_changed || next.host != url.host;
    if (s == 303) {
      method = "GET";
      body.clear();
    }
    url = std::move(next);
  }
}

}  // namespace ota32::agent
