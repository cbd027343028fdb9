// The `openssl s_server -WWW` replacement: GET/HEAD /<relative path> serves that file under the root
// directory (so the seed's https://IP:8070/hello-world.bin works), through FileReply (Range, ETag, 304).
#pragma once

#include <filesystem>
#include <string_view>

#include "core/result.h"
#include "server/http_types.h"

namespace ota32::server {

// The file under root that a request path names, or an error: not_found (absent, a directory, or a
// path that leaves root through "..", a symlink or an absolute component), invalid_argument (bad escape).
// Path segments starting with '.' (".git", ".env") are never served.
Result<std::filesystem::path> resolve_static_path(const std::filesystem::path& canonical_root,
                                                  std::string_view request_path);

std::string_view content_type_for(const std::filesystem::path& file);

// A handler for Router::add_prefix(GET, "/", ...). on_complete(file name) is called after a full download.
Handler make_static_handler(std::filesystem::path root,
                            std::function<void(const std::string& file)> on_complete = nullptr);

}  // namespace ota32::server
