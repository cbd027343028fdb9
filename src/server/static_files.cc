#include "server/static_files.h"

#include <fmt/format.h>

namespace ota32::server {

namespace fs = std::filesystem;

Result<fs::path> resolve_static_path(const fs::path& root, std::string_view request_path) {
  std::string decoded;
  if (!percent_decode(request_path, decoded))
    return Error(ErrorCode::invalid_argument, "malformed percent-escape in path");
  if (decoded.empty() || decoded.front() != '/') return Error(ErrorCode::not_found, "path must start with /");
  fs::path rel;
  std::string_view rest(decoded);
  rest.remove_prefix(1);
  while (!rest.empty()) {
    auto slash = rest.find('/');
    std::string_view seg = rest.substr(0, slash);
    rest = slash == std::string_view::npos ? std::string_view{} : rest.substr(slash + 1);
    if (seg.empty()) continue;
    if (seg.front() == '.' || seg.find('\\') != std::string_view::npos)
      return Error(ErrorCode::not_found, "no such file");
    rel /= std::string(seg);
  }
  if (rel.empty()) return Error(ErrorCode::not_found, "no such file");
  std::error_code ec;
  fs::path full = fs::canonical(root / rel, ec);  // resolves symlinks: the result must still be inside root
  if (ec) return Error(ErrorCode::not_found, "no such file");
  auto [r, f] = std::mismatch(root.begin(), root.end(), full.begin(), full.end());
  if (r != root.end()) return Error(ErrorCode::not_found, "no such file");
  if (!fs::is_regular_file(full, ec)) return Error(ErrorCode::not_found, "no such file");
  return full;
}

std::string_view content_type_for(const fs::path& file) {
  std::string ext = file.extension().string();
  if (ext == ".json") return "application/json";
  if (ext == ".txt" || ext == ".csv" || ext == ".log") return "text/plain; charset=utf-8";
  if (ext == ".html" || ext == ".htm") return "text/html; charset=utf-8";
  if (ext == ".pem" || ext == ".crt") return "application/x-pem-file";
  return "application/octet-stream";
}

Handler make_static_handler(fs::path root, std::function<void(const std::string&)> on_complete) {
  return [root = std::move(root), on_complete = std::move(on_complete)](const HttpRequest& req,
                                                                        const RequestContext&) -> Reply {
    std::string_view path = target_path(req.target());
    auto file = resolve_static_path(root, path);
    if (!file) {
      if (file.error().code() == ErrorCode::invalid_argument)
        return json_error(http::status::bad_request, "invalid_argument", file.error().message(), req);
      return json_error(http::status::not_found, "not_found", fmt::format("no such file: {}", path), req);
    }
    FileReply reply{*file, std::string(content_type_for(*file))};
    if (on_complete) {
      std::string name = file->lexically_relative(root).string();
      reply.on_complete = [on_complete, name] { on_complete(name); };
    }
    return reply;
  };
}

}  // namespace ota32::server
