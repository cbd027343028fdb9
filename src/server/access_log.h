// The structured access log: one JSON object per line (time, remote address, method, target, status, bytes,
// duration, TLS version), to stdout, a file, or nowhere. Lines are written whole under a lock.
#pragma once

#include <cstdio>
#include <filesystem>
#include <mutex>
#include <string>
#include <string_view>

#include "core/result.h"

namespace ota32::server {

struct AccessRecord {
  std::string_view remote, method, target, tls_version;
  unsigned status = 0;
  uint64_t bytes = 0;  // response bytes sent, header included
  double duration_ms = 0;
  bool kernel_tls = false;  // the kernel encrypted this connection's records (serve --ktls): "ktls":true
};

class AccessLog {
 public:
  // "-" = stdout, "off" = disabled, anything else is a file appended to.
  static Result<AccessLog*> open(const std::string& where);
  ~AccessLog();
  void write(const AccessRecord& r);

 private:
  explicit AccessLog(std::FILE* f, bool owned) : file_(f), owned_(owned) {}
  std::FILE* file_;
  bool owned_;
  std::mutex mu_;
};

}  // namespace ota32::server
