#include "server/http_types.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>

namespace ota32::server {

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::vector<std::string_view> split_segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t pos = 0;
  if (!path.empty() && path.front() == '/') pos = 1;
  while (pos <= path.size()) {
    std::size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    out.push_back(path.substr(pos, end - pos));
    pos = end + 1;
  }
  return out;
}

std::string fmt_errno(const std::string& what) { return what + ": " + std::strerror(errno); }

bool is_param(std::string_view segment) {
  return segment.size() >= 2 && segment.front() == '{' && segment.back() == '}';
}

bool method_matches(http::verb route, http::verb request) {
  return route == request || (request == http::verb::head && route == http::verb::get);
}

}  // namespace

std::string_view RequestContext::param(std::string_view name) const {
  auto it = params.find(name);
  return it == params.end() ? std::string_view{} : std::string_view{it->second};
}

std::string_view RequestContext::query_param(std::string_view name) const {
  auto it = query.find(name);
  return it == query.end() ? std::string_view{} : std::string_view{it->second};
}

HttpResponse json_reply(http::status status, const nlohmann::json& body, const HttpRequest& req) {
  HttpResponse res{status, req.version()};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  res.keep_alive(req.keep_alive());
  res.body() = body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  res.body() += '\n';
  res.prepare_payload();
  return res;
}

HttpResponse json_error(http::status status, std::string_view code, std::string_view message,
                        const HttpRequest& req) {
  nlohmann::json body = {{"error", std::string(code)}, {"message", std::string(message)}};
  return json_reply(status, body, req);
}

std::string_view target_path(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? target : target.substr(0, q);
}

std::string_view target_query(std::string_view target) {
  auto q = target.find('?');
  return q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
}

bool percent_decode(std::string_view in, std::string& out, bool plus_is_space) {
  out.clear();
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      if (i + 2 >= in.size()) return false;
      int hi = hex_value(in[i + 1]), lo = hex_value(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      char d = static_cast<char>(hi * 16 + lo);
      if (d == '\0') return false;
      out.push_back(d);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return true;
}

std::map<std::string, std::string, std::less<>> parse_query(std::string_view query) {
  std::map<std::string, std::string, std::less<>> out;
  while (!query.empty()) {
    auto amp = query.find('&');
    std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    auto eq = pair.find('=');
    std::string key, value;
    if (!percent_decode(pair.substr(0, eq), key, true)) continue;
    if (eq != std::string_view::npos && !percent_decode(pair.substr(eq + 1), value, true)) continue;
    out.emplace(std::move(key), std::move(value));  // the first occurrence wins
  }
  return out;
}

BodyFile::~BodyFile() {
  if (fd >= 0) ::close(fd);
  if (!path.empty()) ::unlink(path.c_str());
}

std::shared_ptr<BodyFile> BodyFile::create(const std::filesystem::path& dir, std::string* error) {
  std::string tmpl = (dir / ".upload.XXXXXX").string();
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    if (error) *error = fmt_errno(dir.string() + ": cannot create a file for the request body");
    if (fd >= 0) {
      ::close(fd);
      ::unlink(tmpl.c_str());
    }
    return nullptr;
  }
  auto f = std::make_shared<BodyFile>();
  f->fd = fd;
  f->path = tmpl;
  return f;
}

std::size_t BodyFile::remove_stale(const std::filesystem::path& dir, std::chrono::seconds max_age) {
  std::error_code ec;
  std::size_t removed = 0;
  const auto now = std::filesystem::file_time_type::clock::now();
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().filename().string().rfind(".upload.", 0) != 0 || !e.is_regular_file(ec)) continue;
    auto written = e.last_write_time(ec);
    if (!ec && now - written > max_age && std::filesystem::remove(e.path(), ec)) ++removed;
  }
  return removed;
}

bool BodyFile::append(const void* data, std::size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
    size += static_cast<uint64_t>(w);
  }
  return true;
}

std::optional<std::string> framing_error(const http::request_header<>& h) {
  std::size_t te_fields = 0;
  std::string_view te;
  for (const auto& f : h) {
    if (f.name() != http::field::transfer_encoding) continue;
    ++te_fields;
    te = f.value();
  }
  if (te_fields > 0) {
    if (te_fields > 1 || !boost::beast::iequals(te, "chunked"))
      return "Transfer-Encoding: only 'chunked' is accepted (RFC 9112 6.1)";
    if (h.count(http::field::content_length) > 0)
      return "a request with both Transfer-Encoding and Content-Length (RFC 9112 6.1)";
    if (h.version() < 11) return "Transfer-Encoding in an HTTP/1.0 request (RFC 9112 6.1)";
  }
  if (h.version() >= 11) {
    std::size_t hosts = h.count(http::field::host);
    if (hosts == 0) return "an HTTP/1.1 request needs a Host header (RFC 9112 3.2)";
    if (hosts > 1) return "more than one Host header (RFC 9112 3.2)";
  }
  return std::nullopt;
}

bool authorization_has_trailing_whitespace(std::string_view raw) {
  constexpr std::string_view kName = "authorization:";
  while (!raw.empty()) {
    std::size_t eol = raw.find('\n');
    std::string_view line = raw.substr(0, eol);
    raw = eol == std::string_view::npos ? std::string_view() : raw.substr(eol + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.size() > kName.size() && boost::beast::iequals(line.substr(0, kName.size()), kName) &&
        (line.back() == ' ' || line.back() == '\t'))
      return true;
  }
  return false;
}

void Router::add(http::verb method, std::string pattern, Handler handler, std::size_t body_limit) {
  RouteOptions o;
  o.body_limit = body_limit;
  add(method, std::move(pattern), std::move(handler), std::move(o));
}

void Router::add(http::verb method, std::string pattern, Handler handler, RouteOptions options) {
  Route r{method, {}, {}, false, std::move(handler), std::move(options)};
  for (auto seg : split_segments(pattern)) r.segments.emplace_back(seg);
  routes_.push_back(std::move(r));
}

void Router::add_prefix(http::verb method, std::string prefix, Handler handler, std::size_t body_limit) {
  RouteOptions o;
  o.body_limit = body_limit;
  routes_.push_back(Route{method, {}, std::move(prefix), true, std::move(handler), std::move(o)});
}

const Router::Route* Router::find(http::verb method, std::string_view path, RequestContext* ctx,
                                  std::vector<http::verb>* allowed) const {
  auto segments = split_segments(path);
  const Route* exact = nullptr;
  const Route* prefix = nullptr;
  std::map<std::string, std::string, std::less<>> params;
  auto note_allowed = [&](http::verb v) {
    if (allowed && std::find(allowed->begin(), allowed->end(), v) == allowed->end()) allowed->push_back(v);
  };
  for (const auto& r : routes_) {
    if (r.is_prefix) {
      if (!path.starts_with(r.prefix)) continue;
      note_allowed(r.method);
      if (!method_matches(r.method, method)) continue;
      // Longer prefixes win; an explicit HEAD route beats the GET one.
      if (!prefix || r.prefix.size() > prefix->prefix.size() ||
          (r.prefix.size() == prefix->prefix.size() && r.method == method && prefix->method != method))
        prefix = &r;
      continue;
    }
    if (r.segments.size() != segments.size()) continue;
    std::map<std::string, std::string, std::less<>> captured;
    bool ok = true;
    for (std::size_t i = 0; i < segments.size() && ok; ++i) {
      const auto& pat = r.segments[i];
      if (is_param(pat)) {
        std::string value;
        ok = !segments[i].empty() && percent_decode(segments[i], value);
        if (ok) captured.emplace(pat.substr(1, pat.size() - 2), std::move(value));
      } else {
        ok = pat == segments[i];
      }
    }
    if (!ok) continue;
    note_allowed(r.method);
    if (!method_matches(r.method, method)) continue;
    if (!exact || (r.method == method && exact->method != method)) {
      exact = &r;
      params = std::move(captured);
    }
  }
  if (exact) {
    if (ctx) ctx->params = std::move(params);
    return exact;
  }
  return prefix;
}

const Router::RouteOptions& Router::body_options(http::verb method, std::string_view target) const {
  const Route* r = find(method, target_path(target), nullptr, nullptr);
  return r ? r->options : defaults_;
}

Reply Router::route(const HttpRequest& req, const RequestContext& ctx) const {
  RequestContext local = ctx;
  std::vector<http::verb> allowed;
  std::string_view target = req.target();
  const Route* r = find(req.method(), target_path(target), &local, &allowed);
  if (!r) {
    if (!allowed.empty()) {
      std::string allow;
      for (auto v : allowed) {
        if (!allow.empty()) allow += ", ";
        allow += std::string(http::to_string(v));
        if (v == http::verb::get &&
            std::find(allowed.begin(), allowed.end(), http::verb::head) == allowed.end())
          allow += ", HEAD";
      }
      auto res = json_error(http::status::method_not_allowed, "method_not_allowed",
                            std::string(req.method_string()) + " is not allowed on this path", req);
      res.set(http::field::allow, allow);
      return res;
    }
    return json_error(http::status::not_found, "not_found",
                      "no such resource: " + std::string(target_path(target)), req);
  }
  local.query = parse_query(target_query(target));
  try {
    return r->handler(req, local);
  } catch (const std::exception& e) {
    return json_error(http::status::internal_server_error, "internal", e.what(), req);
  } catch (...) {
    return json_error(http::status::internal_server_error, "internal", "unknown error in handler", req);
  }
}

}  // namespace ota32::server
