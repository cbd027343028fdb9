// The device side of `ota32 serve`'s API: ask whether there is an update, and report what happened.
//   GET  /api/v1/update?project=&version=&chip=&device=[&secure_version=]
//        -> 204, or 200 {url, size, sha256, version, secure_version}
//   POST /api/v1/devices/{id}/report  {state, version, error, project, chip}
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "agent/http_client.h"
#include "core/hash.h"
#include "core/result.h"

namespace ota32::agent {

// The device's credential (hawkBit's schemes): its own token, sent as `Authorization: TargetToken <t>`, or
// a gateway's, sent as `GatewayToken <t>`. Empty = none (an open server).
struct DeviceCredential {
  std::string token;
  bool gateway = false;
};

struct UpdateQuery {
  std::string server;  // "https://127.0.0.1:8070"
  std::string project, version, chip, device_id;
  DeviceCredential credential;
  // The running app's esp_app_desc_t.secure_version: the server does not offer an image below it.
  std::optional<uint32_t> secure_version;
};

struct UpdateOffer {
  std::string url;  // absolute (a relative URL from the server is resolved against `server`)
  uint64_t size = 0;
  Sha256Digest sha256{};
  std::string version;
  uint32_t secure_version = 0;  // the offered image's (0 when the server does not say)
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
                          const DeviceReport& report, const DeviceCredential& credential = {});

// Percent-encoding of a query value (RFC 3986 unreserved characters kept).
std::string url_encode(std::string_view s);

}  // namespace ota32::agent
