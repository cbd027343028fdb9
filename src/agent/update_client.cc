#include "agent/update_client.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cctype>

namespace ota32::agent {
namespace {

Error status_error(const std::string& what, const HttpResponse& r, const std::string& body) {
  std::string detail = body.substr(0, 200);
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.contains("error") && j["error"].is_string()) {
    detail = j["error"].get<std::string>();
  }
  ErrorCode code = r.status() >= 500                          ? ErrorCode::unavailable
                   : (r.status() == 404 || r.status() == 403) ? ErrorCode::not_found
                   : r.status() == 401                        ? ErrorCode::permission_denied
                                                              : ErrorCode::invalid_argument;
  return Error(code, fmt::format("{}: HTTP {} {}{}", what, r.status(), r.reason(),
                                 detail.empty() ? "" : ": " + detail));
}

}  // namespace

std::string url_encode(std::string_view s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += fmt::format("%{:02X}", c);
    }
  }
  return out;
}

std::string_view to_string(ReportState s) {
  switch (s) {
    case ReportState::downloading:
      return "downloading";
    case ReportState::installed:
      return "installed";
    case ReportState::booted:
      return "booted";
    case ReportState::rolled_back:
      return "rolled_back";
    case ReportState::failed:
      return "failed";
  }
  return "failed";
}

namespace {
void add_credential(std::vector<HttpHeader>& headers, const DeviceCredential& c) {
  if (!c.token.empty())
    headers.push_back({"Authorization", (c.gateway ? "GatewayToken " : "TargetToken ") + c.token});
}
}  // namespace

Result<std::optional<UpdateOffer>> check_for_update(HttpClient& client, const UpdateQuery& q) {
  std::string base = q.server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string url =
      fmt::format("{}/api/v1/update?project={}&version={}&chip={}&device={}", base, url_encode(q.project),
                  url_encode(q.version), url_encode(q.chip), url_encode(q.device_id));
  if (q.secure_version) url += fmt::format("&secure_version={}", *q.secure_version);
  HttpRequest req{"GET", url, {}, ""};
  add_credential(req.headers, q.credential);
  OTA32_ASSIGN(auto resp, client.send(req));
  OTA32_ASSIGN(std::string body, resp->read_all(64 * 1024));
  if (resp->status() == 204 || resp->status() == 304) return std::optional<UpdateOffer>();
  if (resp->status() != 200) return status_error("update check " + url, *resp, body);
  auto bad = [&](std::string_view why) {
    return Error(ErrorCode::corrupt, fmt::format("update check {}: {}", url, why));
  };
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return bad("the reply is not a JSON object");
  if (!j.contains("url") || !j["url"].is_string()) return bad("no \"url\" string in the reply");
  UpdateOffer o;
  OTA32_ASSIGN(Url base_url, parse_url(base));
  OTA32_ASSIGN(Url fw, resolve_location(base_url, j["url"].get<std::string>()));
  o.url = fw.scheme + "://" + (fw.host.find(':') != std::string::npos ? "[" + fw.host + "]" : fw.host) + ":" +
          std::to_string(fw.port) + fw.target;
  if (j.contains("size") && j["size"].is_number_unsigned()) o.size = j["size"].get<uint64_t>();
  if (j.contains("version") && j["version"].is_string()) o.version = j["version"].get<std::string>();
  if (j.contains("secure_version") && j["secure_version"].is_number_unsigned() &&
      j["secure_version"].get<uint64_t>() <= UINT32_MAX) {
    o.secure_version = j["secure_version"].get<uint32_t>();
  }
  if (!j.contains("sha256") || !j["sha256"].is_string()) return bad("no \"sha256\" string in the reply");
  auto digest = from_hex(j["sha256"].get<std::string>());
  if (!digest || digest->size() != 32) return bad("\"sha256\" is not 64 hex digits");
  std::copy(digest->begin(), digest->end(), o.sha256.begin());
  return std::optional<UpdateOffer>(o);
}

Result<void> report_state(HttpClient& client, const std::string& server, const std::string& device_id,
                          const DeviceReport& report, const DeviceCredential& credential) {
  std::string base = server;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::string url = fmt::format("{}/api/v1/devices/{}/report", base, url_encode(device_id));
  nlohmann::json j = {{"state", std::string(to_string(report.state))}, {"version", report.version}};
  if (!report.error.empty()) j["error"] = report.error;
  if (!report.project.empty()) j["project"] = report.project;
  if (!report.chip.empty()) j["chip"] = report.chip;
  HttpRequest req{"POST",
                  url,
                  {{"Content-Type", "application/json"}},
                  j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
  add_credential(req.headers, credential);
  OTA32_ASSIGN(auto resp, client.send(req));
  OTA32_ASSIGN(std::string body, resp->read_all(64 * 1024));
  if (resp->status() < 200 || resp->status() >= 300) return status_error("report " + url, *resp, body);
  return {};
}

}  // namespace ota32::agent
