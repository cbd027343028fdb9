#include "server/access_log.h"

#include <fmt/chrono.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstring>

namespace ota32::server {

Result<AccessLog*> AccessLog::open(const std::string& where) {
  if (where == "off") return static_cast<AccessLog*>(nullptr);
  if (where == "-") return new AccessLog(stdout, false);
  std::FILE* f = std::fopen(where.c_str(), "a");
  if (!f)
    return Error(ErrorCode::io_error,
                 fmt::format("{}: cannot open access log: {}", where, std::strerror(errno)));
  return new AccessLog(f, true);
}

AccessLog::~AccessLog() {
  if (owned_)
    std::fclose(file_);
  else
    std::fflush(file_);
}

void AccessLog::write(const AccessRecord& r) {
  auto now = std::chrono::system_clock::now();
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
  // The target comes from the client: JSON-escape it (dump with replacement of invalid UTF-8).
  std::string target =
      nlohmann::json(std::string(r.target)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  std::string line = fmt::format(
      "{{\"time\":\"{:%Y-%m-%dT%H:%M:%S}.{:03}Z\",\"remote\":\"{}\",\"method\":\"{}\",\"target\":{},"
      "\"status\":{},"
      "\"bytes\":{},\"ms\":{:.3f},\"tls\":\"{}\"{}}}\n",
      fmt::gmtime(std::chrono::system_clock::to_time_t(now)), ms, r.remote, r.method, target, r.status,
      r.bytes, r.duration_ms, r.tls_version, r.kernel_tls ? ",\"ktls\":true" : "");
  std::lock_guard lock(mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace ota32::server
