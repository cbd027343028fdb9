// The device side of `ota32 serve`'s API: ask whether there is an update, and report what happened.
//   GET  /api/v1/update?project=&version=&chip=&device=  -> 204, or 200 {url, size, sha256, version}
//   POST /api/v1/devices/{id}/report  {state, version, error, project, chip}
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "agent/http_client.h"
#include "core/hash.h"
#include "core/result.h"

namespace ota32::agent {

struct UpdateQuery {
  std::string server;  // "https://127.0.0.1:8070"
  std::string project, version, chip, device_id;
};

struct UpdateOffer {
  std::string url;  // absolute (a relative URL from the server is resolved against `server`)
  uint64_t size = 0;
  Sha256Digest sha256{};
  std::string version;
};

// nullopt when the server answers 204 (nothing newer). Errors: the HTTP client's, corrupt for a reply that
// is not the documented JSON, not_found / invalid_argument for 4xx, unavailable for 5xx.
Result<std::optional<UpdateOffer>> check_for_update(HttpClient& client, const UpdateQuery& query);

// The states a device reports (the server's device record shows the last one).
enum class ReportState { downloading, installed, booted, rolled_back, failed };
std::string_view to_string(ReportState s);

struct DeviceReport {
  ReportState state = ReportState::booted;
  std::string version;  // the running version
  std::string error;    // why, for failed / rolled_back
  // The running app's project_name and the chip ("esp32"): the server fills the device record with them
  // (left out of the JSON when empty).
  std::string project, chip;
};

Result<void> report_state(HttpClient& client, const std::string& server, const std::string& device_id,
                          const DeviceReport& report);

// Percent-encoding of a query value (RFC 3986 unreserved characters kept).
std::string url_encode(std::string_view s);

}  // namespace ota32::agent
