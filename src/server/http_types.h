// The contract between the HTTPS session (network, TLS, timeouts, file streaming) and the request handlers
// (catalog, device and admin APIs, static files). Handlers are pure functions `request -> reply`, tested
// without sockets (design.md "Server shape"); the session only reads, times out and writes.
#pragma once

#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace ota32::server {

namespace http = boost::beast::http;

// The request body is bounded by the session before it is read: the limit is the matching route's (Router).
using HttpRequest = http::request<http::string_body>;
using HttpResponse = http::response<http::string_body>;

// A reply that streams a file (a firmware blob or a --dir file). The session applies Range (206/416),
// ETag / If-None-Match (304), HEAD and Content-Length, so every handler that returns a file gets them.
struct FileReply {
  std::filesystem::path path;
  std::string content_type = "application/octet-stream";
  std::string etag;  // quoted, e.g. "\"<sha256>\""; empty = computed from size and mtime by the session
  std::vector<std::pair<std::string, std::string>> extra_headers;  // e.g. {"x-MD5", "..."} for HTTPUpdate
  std::function<void()> on_complete;  // called once the whole file was sent (metrics: downloads completed)
};

using Reply = std::variant<HttpResponse, FileReply>;

// A request body the session streamed to a temporary file instead of memory (routes with
// RouteOptions::body_dir: firmware uploads). Created mode 0600 in that directory; removed when the last
// reference goes (a handler that keeps the bytes links or renames the file first).
struct BodyFile {
  std::filesystem::path path;
  int fd = -1;  // read-write, positioned at the end
  uint64_t size = 0;
  BodyFile() = default;
  BodyFile(const BodyFile&) = delete;
  BodyFile& operator=(const BodyFile&) = delete;
  ~BodyFile();
  // A new empty file in `dir`: ".upload.<random>", mode 0600 whatever the umask.
  static std::shared_ptr<BodyFile> create(const std::filesystem::path& dir, std::string* error);
  // Appends; false (errno set) on a write error.
  bool append(const void* data, std::size_t n);
  // Removes the ".upload.*" files in `dir` not written for `max_age`: left by a server that was killed in
  // the middle of an upload (a running upload writes its file at least every --io-timeout). Returns how
  // many it removed.
  static std::size_t remove_stale(const std::filesystem::path& dir, std::chrono::seconds max_age);
};

struct RequestContext {
  std::string remote_address;  // "192.168.1.20" (no port)
  std::chrono::system_clock::time_point received;
  bool tls = true;
  // Filled by Router::route: the values of the pattern's {name} segments (percent-decoded) and of the query.
  std::map<std::string, std::string, std::less<>> params;
  std::map<std::string, std::string, std::less<>> query;
  // Set for routes whose body goes to a file (RouteOptions::body_dir): the body, and the request's own
  // body() is empty.
  std::shared_ptr<BodyFile> body_file;

  // The value of a {name} segment or query parameter; empty when absent.
  std::string_view param(std::string_view name) const;
  std::string_view query_param(std::string_view name) const;
};

using Handler = std::function<Reply(const HttpRequest&, const RequestContext&)>;

// Run by the session once a request's header is complete and before any of its body is read (only for
// requests that have a body): a reply refuses the request (e.g. 401 for an upload without a valid admin
// token) and the body is never read into memory. The request holds the header only.
using HeaderCheck = std::function<std::optional<HttpResponse>(const HttpRequest& header)>;

// RFC 9112 framing that the parser accepts but that must not be served: any Transfer-Encoding but exactly
// `chunked` (a proxy in front may read the body differently: request smuggling, RFC 9112 6.1), a
// Transfer-Encoding with a Content-Length, a Transfer-Encoding in an HTTP/1.0 request, and an HTTP/1.1
// request without exactly one Host (RFC 9112 3.2). nullopt = fine, else the reason: 400 and close.
std::optional<std::string> framing_error(const http::request_header<>& header);

// True when the raw request header (the bytes as received, up to its blank line) has an Authorization field
// whose value ends in whitespace. The parser drops that whitespace (RFC 9110 5.5), so only the raw bytes
// show it; the session refuses such a request (401) so that "<token> " never matches a token.
bool authorization_has_trailing_whitespace(std::string_view raw_header);

// A JSON error: {"error": "<code>", "message": "<message>"}, with the request's version and keep-alive.
HttpResponse json_error(http::status status, std::string_view code, std::string_view message,
                        const HttpRequest& req);
HttpResponse json_reply(http::status status, const nlohmann::json& body, const HttpRequest& req);

// Request-target helpers: the path without query, percent-decoded ("%2F" stays rejected by the caller).
std::string_view target_path(std::string_view target);
std::string_view target_query(std::string_view target);
// Decodes %XX and (in queries) '+'; returns false on a malformed escape or a decoded NUL.
bool percent_decode(std::string_view in, std::string& out, bool plus_is_space = false);
std::map<std::string, std::string, std::less<>> parse_query(std::string_view query);

// Routes by method and path pattern. A pattern is a literal path whose segments may be "{name}"
// ("/api/v1/devices/{id}/report"); a prefix route ("/static/" with add_prefix) matches every path under it.
// Exact patterns win over prefix routes, longer prefixes over shorter ones. HEAD uses the GET route when no
// HEAD route exists (the session drops the body). A path that matches with another method gets 405 + Allow.
class Router {
 public:
  static constexpr std::size_t kDefaultBodyLimit = 64 * 1024;

  struct RouteOptions {
    std::size_t body_limit = kDefaultBodyLimit;
    HeaderCheck before_body;         // empty = none
    std::filesystem::path body_dir;  // non-empty: stream the body to a BodyFile there, not to memory
  };

  void add(http::verb method, std::string pattern, Handler handler,
           std::size_t body_limit = kDefaultBodyLimit);
  void add(http::verb method, std::string pattern, Handler handler, RouteOptions options);
  void add_prefix(http::verb method, std::string prefix, Handler handler,
                  std::size_t body_limit = kDefaultBodyLimit);

  // How the route that would handle this request takes its body (defaults when none matches): the session
  // asks after reading the header and before reading the body. Points into the router.
  const RouteOptions& body_options(http::verb method, std::string_view target) const;
  std::size_t body_limit(http::verb method, std::string_view target) const {
    return body_options(method, target).body_limit;
  }

  // Never throws: a handler's exception becomes a 500 JSON error.
  Reply route(const HttpRequest& req, const RequestContext& ctx) const;

 private:
  struct Route {
    http::verb method;
    std::vector<std::string> segments;  // exact routes: split pattern; prefix routes: empty
    std::string prefix;                 // prefix routes only
    bool is_prefix = false;
    Handler handler;
    RouteOptions options;
  };
  // The best route for (method, path); `allowed` collects the methods that match the path at all.
  const Route* find(http::verb method, std::string_view path, RequestContext* ctx,
                    std::vector<http::verb>* allowed) const;
  std::vector<Route> routes_;
  RouteOptions defaults_;
};

}  // namespace ota32::server
