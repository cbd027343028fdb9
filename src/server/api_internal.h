// Pieces shared by the API's handler files (api.cc, api_compat.cc, api_image.cc). Not part of the contract.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/bytes.h"
#include "server/api.h"

namespace ota32::server::api_detail {

// A handler over the API context, bound into a Router handler.
using ApiHandler = Reply (*)(ApiContext&, const HttpRequest&, const RequestContext&);
inline Handler bind_api(ApiContext& api, ApiHandler fn) {
  return [&api, fn](const HttpRequest& req, const RequestContext& ctx) { return fn(api, req, ctx); };
}

// Checks `Authorization: Bearer <token>` against the stored hashes; nullopt = allowed, else the 401 / 500.
std::optional<HttpResponse> check_admin(const ApiContext& api, const HttpRequest& req);

// A store failure as a JSON error (503 for unavailable, 500 otherwise).
HttpResponse store_error(const Error& e, const HttpRequest& req);

// "https://host:port" for URLs handed to devices: the configured public URL or the request's Host.
std::string base_url(const ApiContext& api, const HttpRequest& req, const RequestContext& ctx);
// The download URL of a firmware blob.
std::string firmware_url(const ApiContext& api, const HttpRequest& req, const RequestContext& ctx,
                         const FirmwareRecord& fw);

nlohmann::json firmware_json(const FirmwareRecord& fw);
nlohmann::json device_json(const DeviceRecord& d);

// The release a device of (project, chip, channel) should run: the highest version (store/version.h),
// ties broken by the newest upload. nullopt when the catalog has none. Firmware that a rollout holds
// (running, paused or aborted) is left out: it reaches devices only through that rollout.
Result<std::optional<FirmwareRecord>> latest_release(Store& store, std::string_view project,
                                                     std::string_view chip, std::string_view channel);

bool valid_utf8(std::string_view s);
// Device ids: 1..64 characters of [A-Za-z0-9._:-] (MAC addresses, hostnames, serials).
bool valid_device_id(std::string_view id);
// Names in queries (project, chip, channel): 1..128 printable ASCII characters without control codes.
bool valid_name(std::string_view s);

// The gate of every device-facing route (api_registry.cc): the device's credential (TargetToken /
// GatewayToken), its registry status, --device-auth and --refuse-unknown-devices. nullopt = allowed, else
// 401 (no or wrong credential, pending), 403 (rejected, unknown with --refuse-unknown-devices) or a store
// error. In token mode an unknown device without a credential is recorded as pending (with `address`).
std::optional<HttpResponse> check_device_known(ApiContext& api, std::string_view device_id,
                                               const HttpRequest& req, std::string_view address = {});

// The device registry and gateway-token routes (api_registry.cc).
void register_registry_routes(Router& router, ApiContext& api);

// The cap on devices the store has never seen (ApiConfig::max_devices): nullopt = allowed, else 429.
std::optional<HttpResponse> check_device_cap(ApiContext& api, std::string_view device_id,
                                             const HttpRequest& req);
// The per-source rate limit of the device-facing endpoints: nullopt = allowed, else 429 + Retry-After.
std::optional<HttpResponse> check_rate(ApiContext& api, const HttpRequest& req, const RequestContext& ctx);

// A FileReply streaming the blob of `fw` (ETag = its SHA-256, x-MD5 for Arduino HTTPUpdate), or a 404 JSON
// error when the blob file is missing.
Reply firmware_file(const ApiContext& api, const FirmwareRecord& fw, const HttpRequest& req);

// Parses and verifies an uploaded app image (format/app_image.h) and describes it for the catalog.
// `chip` (may be empty: the header's chip) is the chip the uploader declares. Errors name the reason.
Result<FirmwareRecord> describe_image(ByteView data, std::string_view chip, std::string_view file_name);

// --require-signed (ApiConfig::require_signed): nullopt when no key is required or the uploaded image carries
// a signature block of one of the keys that verifies; else 422 with the reason (unsigned,
// untrusted_signature, damaged_signature_block, bad_signature). `image` is the whole finished upload, already
// described.
std::optional<HttpResponse> check_upload_signature(const ApiContext& api, ByteView image,
                                                   std::string_view file_name, const HttpRequest& req);

// The chip table's name for `name` ("ESP32-C3" -> "esp32c3"); empty when the format module does not know it.
std::string canonical_chip(std::string_view name);

// Groups, device tags / attributes and rollouts (api_rollouts.cc).
void register_rollout_routes(Router& router, ApiContext& api);

// Compatibility endpoints (api_compat.cc).
void register_compat_routes(Router& router, ApiContext& api);

}  // namespace ota32::server::api_detail
