// A small HTTP/1.1 client shaped like esp_http_client: one request per connection, request headers
// User-Agent then Host then the caller's, bodies framed by Content-Length, chunked encoding or the close
// (openssl s_server -WWW), redirects followed, fixed-size buffers (memory does not grow with the body).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/transport.h"
#include "agent/url.h"
#include "core/result.h"

namespace ota32::agent {

struct HttpOptions {
  TlsOptions tls;
  std::chrono::milliseconds timeout{5000};  // esp_http_client timeout_ms: connect, each read, each write
  // Redirects followed per request. esp_https_ota does not count redirects on its GET (a cycle never
  // ends); ota32 bounds every loop, with esp_http_client_perform's default of 10.
  int max_redirects = 10;
  std::string user_agent = "ESP32 HTTP Client/1.0";
  size_t buffer_size = 1024;  // receive buffer; also the longest accepted response header line
  // Opens each request's connection instead of open_connection (TCP / TLS): the power-cut simulator serves
  // an image from memory this way, so that every replay reads exactly the same bytes in the same pieces
  // (a socket's read sizes vary with timing). Empty = open_connection.
  std::function<Result<std::unique_ptr<Connection>>(const Url&)> connect;
};

struct HttpHeader {
  std::string name;
  std::string value;
};

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  std::vector<HttpHeader> headers;  // sent after User-Agent and Host, in order
  std::string body;                 // sent with Content-Length when the method is POST/PUT
};

class HttpResponse {
 public:
  HttpResponse(std::unique_ptr<Connection> conn, Url url, size_t buffer_size, bool head);

  int status() const { return status_; }
  const std::string& reason() const { return reason_; }
  const Url& url() const { return url_; }  // the URL that answered (after redirects)
  const std::vector<HttpHeader>& headers() const { return headers_; }
  std::optional<std::string> header(std::string_view name) const;
  // Content-Length when the body is framed by it (absent for chunked and close-delimited bodies).
  std::optional<uint64_t> content_length() const { return content_length_; }
  bool chunked() const { return chunked_; }

  // Reads body bytes; 0 once the body is complete. A connection closed before the end of a
  // Content-Length or chunked body is ErrorCode::unavailable ("connection closed after N of M bytes");
  // a close ends a close-delimited body (esp_http_client does the same, spec §1.3).
  Result<size_t> read(std::span<uint8_t> out);
  // The whole body as text, refused (invalid_argument) when longer than `limit`.
  Result<std::string> read_all(size_t limit);
  bool complete() const { return done_; }
  uint64_t body_read() const { return body_read_; }

  // Internal: reads the status line and headers (called by HttpClient).
  Result<void> read_head();

 private:
  Result<size_t> fill();
  // One CRLF- (or LF-) terminated line; `part` names what is being read in the error for an early close.
  Result<std::string> read_line(std::string_view part = "response head");
  Result<size_t> read_raw(std::span<uint8_t> out);

  std::unique_ptr<Connection> conn_;
  Url url_;
  bool head_;
  std::vector<uint8_t> buf_;
  size_t begin_ = 0, end_ = 0;
  bool eof_ = false;

  int status_ = 0;
  std::string reason_;
  std::vector<HttpHeader> headers_;
  std::optional<uint64_t> content_length_;
  bool chunked_ = false;
  uint64_t chunk_left_ = 0;
  bool in_chunk_ = false;
  bool done_ = false;
  uint64_t body_read_ = 0;
};

class HttpClient {
 public:
  explicit HttpClient(HttpOptions options) : options_(std::move(options)) {}

  // Connects, sends the request, reads the response head and follows redirects (301/302/303/307/308,
  // an https origin never to http). Any other status is returned as is for the caller to judge.
  Result<std::unique_ptr<HttpResponse>> send(const HttpRequest& request);

  const HttpOptions& options() const { return options_; }

 private:
  HttpOptions options_;
};

}  // namespace ota32::agent
