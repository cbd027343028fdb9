// What ota32-serve hands to the route providers (the catalog / device / admin API in api*.{h,cc}) at start.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "server/metrics.h"

namespace ota32::server {

struct ServeContext {
  std::filesystem::path
      data_dir;                // absolute; holds the TLS files, and the store unless --store says otherwise
  std::string store_url;       // --store (empty = the default SQLite store in data_dir)
  Metrics* metrics = nullptr;  // update_check(), download_completed()
  std::vector<std::string> base_urls;  // "https://192.168.1.20:8070", one per local address
};

}  // namespace ota32::server
