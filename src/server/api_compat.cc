// Endpoints for stock Arduino-ESP32 clients (spec/client-protocols.md): HTTPUpdate's pull request with its
// x-ESP32-* headers, and esp32FOTA's JSON manifest, both answered from the catalog.
#include <fmt/format.h>

#include <algorithm>
#include <set>

#include "server/api_internal.h"
#include "store/version.h"

namespace ota32::server::api_detail {
namespace {

using json = nlohmann::json;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

HttpResponse empty_reply(http::status status, const HttpRequest& req) {
  HttpResponse res{status, req.version()};
  res.keep_alive(req.keep_alive());
  res.set(http::field::cache_control, "no-store");
  return res;
}

// The chip to serve: the query's, else the registered device's, else the only chip the catalog has for the
// project. A project built for several chips needs `chip=`: handing an esp32 image to an esp32c3 would only
// fail later, in esp_ota_end's chip id check.
std::variant<std::string, HttpResponse> resolve_chip(ApiContext& api, const HttpRequest& req,
                                                     std::string_view project, std::string_view channel,
                                                     std::string_view query_chip,
                                                     std::string_view device_chip) {
  if (!query_chip.empty()) {
    std::string chip = canonical_chip(query_chip);
    if (chip.empty())
      return json_error(http::status::bad_request, "bad_request", "chip: not a chip ota32 knows", req);
    return chip;
  }
  if (!device_chip.empty()) return std::string(device_chip);
  auto all = api.store->list_firmware({std::string(project), "", std::string(channel)});
  if (!all) return store_error(all.error(), req);
  std::set<std::string> chips;
  for (const auto& fw : *all) chips.insert(fw.chip);
  if (chips.size() > 1)
    return json_error(
        http::status::bad_request, "chip_required",
        fmt::format("project '{}' has firmware for {} chips: add ?chip= to the URL", project, chips.size()),
        req);
  return chips.empty() ? std::string() : *chips.begin();
}

// Channel and chip of a registered device (empty when unknown).
Result<DeviceRecord> device_or_empty(ApiContext& api, std::string_view id) {
  if (id.empty()) return DeviceRecord{};
  OTA32_ASSIGN(auto d, api.store->get_device(id));
  if (!d) {
    DeviceRecord none;
    none.channel.clear();
    return none;
  }
  return *d;
}

// What a compatibility request is served: the device gate, then its channel (registered device's, else
// ?channel=, else stable) and chip (resolve_chip; empty = the catalog has nothing for the project).
struct Target {
  std::string chip, channel;
};
std::variant<Target, HttpResponse> resolve_target(ApiContext& api, const HttpRequest& req,
                                                  const RequestContext& ctx, std::string_view project,
                                                  std::string_view device_id) {
  if (auto denied = check_device_known(api, device_id, req)) return *denied;
  auto device = device_or_empty(api, device_id);
  if (!device) return store_error(device.error(), req);
  Target t;
  t.channel = ctx.query_param("channel");
  if (!device->channel.empty()) t.channel = device->channel;
  if (t.channel.empty()) t.channel = kDefaultChannel;
  if (!valid_name(t.channel))
    return json_error(http::status::bad_request, "bad_request", "channel: not valid", req);
  auto chip = resolve_chip(api, req, project, t.channel, ctx.query_param("chip"), device->chip);
  if (auto* r = std::get_if<HttpResponse>(&chip)) return *r;
  t.chip = std::get<std::string>(chip);
  return t;
}

// GET /api/v1/arduino/{project}[?chip=&channel=]: Arduino HTTPUpdate (httpUpdate.update(client, url,
// currentVersion)). 200 + the image + x-MD5, 304 when the device runs the release, 403 for requests that
// are not from HTTPUpdate or (with --refuse-unknown-devices) from unregistered devices, 404 when the catalog
// has nothing for the project.
Reply arduino_update(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  std::string project(ctx.param("project"));
  if (!valid_name(project))
    return json_error(http::status::bad_request, "bad_request", "project: not valid", req);
  if (!req[http::field::user_agent].starts_with("ESP32-http-Update"))
    return json_error(http::status::forbidden, "forbidden",
                      "this endpoint serves Arduino HTTPUpdate clients (User-Agent: ESP32-http-Update)", req);
  // 3.x always sends the base MAC; the STA MAC only on chips with Wi-Fi; 2.x only STA/AP.
  std::string_view mac = req["x-ESP32-BASE-MAC"];
  if (mac.empty()) mac = req["x-ESP32-STA-MAC"];
  if (mac.empty() || !valid_device_id(mac))
    return json_error(http::status::forbidden, "forbidden",
                      "missing x-ESP32-BASE-MAC / x-ESP32-STA-MAC header", req);
  std::string_view mode = req["x-ESP32-mode"];
  if (!mode.empty() && mode != "sketch")
    return json_error(http::status::not_found, "unknown_firmware",
                      fmt::format("x-ESP32-mode {}: the catalog holds app images only", mode), req);
  std::string device_id(mac);
  std::transform(device_id.begin(), device_id.end(), device_id.begin(),
                 [](char c) { return static_cast<char>(std::toupper(static_cast<unsigned char>(c))); });
  auto target = resolve_target(api, req, ctx, project, device_id);
  if (auto* r = std::get_if<HttpResponse>(&target)) return *r;
  const auto& [chip, channel] = std::get<Target>(target);
  auto latest = latest_release(*api.store, project, chip, channel);
  if (!latest) return store_error(latest.error(), req);
  if (!latest->has_value())
    return json_error(http::status::not_found, "unknown_firmware",
                      fmt::format("no firmware for project '{}' in the catalog", project), req);
  const auto& fw = **latest;
  // Current: the running image's MD5 or appended SHA-256 is the release's, or its version is not older.
  std::string_view md5 = req["x-ESP32-sketch-md5"], sha = req["x-ESP32-sketch-sha256"],
                   version = req["x-ESP32-version"];
  bool current = (!md5.empty() && iequals(md5, fw.md5)) ||
                 (!sha.empty() && !fw.image_hash.empty() && iequals(sha, fw.image_hash)) ||
                 (!version.empty() && compare_versions(fw.version, version) <= 0);
  if (api.metrics != nullptr) api.metrics->update_check(current ? "up_to_date" : "update_available");
  if (current) return empty_reply(http::status::not_modified, req);
  return firmware_file(api, fw, req);
}

// GET /api/v1/esp32fota/{project}[.json][?chip=&channel=&id=]: an esp32FOTA (v0.3.0) manifest: a JSON array
// with the newest release whose version esp32FOTA can read, or an empty array (no update).
Reply esp32fota_manifest(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  std::string project(ctx.param("project"));
  if (project.ends_with(".json")) project.resize(project.size() - 5);
  if (!valid_name(project))
    return json_error(http::status::bad_request, "bad_request", "project: not valid", req);
  // use_device_id appends ?id=<efuse MAC as unsigned decimal>.
  std::string id(ctx.query_param("id"));
  if (!id.empty() && !valid_device_id(id))
    return json_error(http::status::bad_request, "bad_request", "id: not a valid device id", req);
  auto target = resolve_target(api, req, ctx, project, id);
  if (auto* r = std::get_if<HttpResponse>(&target)) return *r;
  const auto& [chip, channel] = std::get<Target>(target);
  json entries = json::array();
  if (!chip.empty()) {
    auto all = api.store->list_firmware({project, chip, channel});
    if (!all) return store_error(all.error(), req);
    // Versions esp32FOTA cannot parse ("v1.2", "1.2-rc1") would read as 0.0.0 and never update: skipped.
    const FirmwareRecord* best = nullptr;
    std::string best_version;
    for (const auto& fw : *all) {
      auto v = esp32fota_version(fw.version);
      if (v && (!best || compare_versions(*v, best_version) > 0)) {
        best = &fw;
        best_version = *v;
      }
    }
    if (best)
      entries.push_back(json{{"type", best->project},
                             {"version", best_version},
                             {"url", firmware_url(api, req, ctx, *best)},
                             {"chip", best->chip},
                             {"size", best->size},
                             {"sha256", best->sha256},
                             {"md5", best->md5}});
  }
  return json_reply(http::status::ok, entries, req);
}

}  // namespace

void register_compat_routes(Router& router, ApiContext& api) {
  // Device-facing and anonymous: rate-limited per source address like /api/v1/update.
  router.add(http::verb::get, "/api/v1/arduino/{project}",
             [&api](const HttpRequest& req, const RequestContext& ctx) -> Reply {
               if (auto limited = check_rate(api, req, ctx)) return *limited;
               return arduino_update(api, req, ctx);
             });
  router.add(http::verb::get, "/api/v1/esp32fota/{project}",
             [&api](const HttpRequest& req, const RequestContext& ctx) -> Reply {
               if (auto limited = check_rate(api, req, ctx)) return *limited;
               return esp32fota_manifest(api, req, ctx);
             });
}

}  // namespace ota32::server::api_detail
