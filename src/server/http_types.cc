#include "server/http_types.h"

#include <algorithm>
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

void Router::add(http::verb method, std::string pattern, Handler handler, std::size_t body_limit) {
  Route r{method, {}, {}, false, std::move(handler), body_limit};
  for (auto seg : split_segments(pattern)) r.segments.emplace_back(seg);
  routes_.push_back(std::move(r));
}

void Router::add_prefix(http::verb method, std::string prefix, Handler handler, std::size_t body_limit) {
  routes_.push_back(Route{method, {}, std::move(prefix), true, std::move(handler), body_limit});
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

std::size_t Router::body_limit(http::verb method, std::string_view target) const {
  const Route* r = find(method, target_path(target), nullptr, nullptr);
  return r ? r->body_limit : kDefaultBodyLimit;
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
