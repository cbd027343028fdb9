// Device identity (docs/api.md "Device identity"): per-device tokens (hawkBit's TargetToken), gateway
// tokens (GatewayToken), the registry of pending / accepted / rejected devices with pre-authorisation, and
// the gate every device-facing route passes (check_device_known).
#include <fmt/format.h>

#include <algorithm>
#include <cctype>

#include "server/api_internal.h"

namespace ota32::server {
namespace api_detail {
namespace {

using json = nlohmann::json;

// The credential of a device request: `Authorization: TargetToken <t>` or `GatewayToken <t>` (hawkBit's
// schemes, case-insensitive).
struct Credential {
  enum Kind { none, target, gateway } kind = none;
  std::string token;
};

Credential credential_of(const HttpRequest& req) {
  std::string_view auth = req[http::field::authorization];
  if (auth.empty()) return {};
  auto space = auth.find(' ');
  std::string scheme(auth.substr(0, space));
  std::transform(scheme.begin(), scheme.end(), scheme.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::string_view token = space == std::string_view::npos ? std::string_view() : auth.substr(space + 1);
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  if (scheme == "targettoken") return {Credential::target, std::string(token)};
  if (scheme == "gatewaytoken") return {Credential::gateway, std::string(token)};
  return {};  // another scheme (an Arduino client's Basic credentials): not a device credential
}

HttpResponse device_unauthorized(std::string_view code, std::string_view why, const HttpRequest& req) {
  auto res = json_error(http::status::unauthorized, code, why, req);
  res.set(http::field::www_authenticate, "TargetToken realm=\"ota32\"");
  return res;
}

// Compares two SHA-256 hex strings without an early exit.
bool same_hash(std::string_view a, std::string_view b) {
  if (a.size() != b.size() || a.empty()) return false;
  unsigned diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned>(a[i] ^ b[i]);
  return diff == 0;
}

json registry_json(const DeviceRecord& d) {
  return json{{"id", d.id},
              {"status", d.auth_status},
              {"token", !d.token_sha256.empty()},
              // Accepted before it ever reported: on the pre-authorisation list.
              {"preauthorized", d.auth_status == kDeviceAccepted && d.last_report_at == 0},
              {"project", d.project},
              {"chip", d.chip},
              {"address", d.address},
              {"last_report_at", d.last_report_at},
              {"created_at", d.created_at}};
}

HttpResponse bad_id(const HttpRequest& req) {
  return json_error(http::status::bad_request, "bad_request",
                    "device id: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
}

// GET /api/v1/registry[?status=pending|accepted|rejected]
Reply list_registry(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string_view status = ctx.query_param("status");
  if (!status.empty() && status != kDevicePending && status != kDeviceAccepted && status != kDeviceRejected)
    return json_error(http::status::bad_request, "bad_request", "status: one of pending, accepted, rejected",
                      req);
  auto all = api.store->list_devices();
  if (!all) return store_error(all.error(), req);
  json items = json::array();
  for (const auto& d : *all)
    if (status.empty() || d.auth_status == status) items.push_back(registry_json(d));
  return json_reply(http::status::ok, json{{"devices", std::move(items)}}, req);
}

// The device's registry entry after a change (`token`, when one was just issued, is shown this once).
Reply registry_reply(ApiContext& api, const HttpRequest& req, const std::string& id, http::status status,
                     const std::string& token = {}) {
  auto d = api.store->get_device(id);
  if (!d) return store_error(d.error(), req);
  if (!d->has_value())
    return json_error(http::status::conflict, "conflict", "the device was deleted meanwhile", req);
  json body = registry_json(**d);
  if (!token.empty()) body["token"] = token;
  return json_reply(status, body, req);
}

// Issues a fresh device token for `id` (accepting it, or pre-authorising an unknown id).
Reply issue_token(ApiContext& api, const HttpRequest& req, const std::string& id, bool created) {
  auto token = generate_admin_token();
  if (!token)
    return json_error(http::status::internal_server_error, "io_error", token.error().message(), req);
  if (auto ok = api.store->issue_device_token(id, sha256_hex_of(*token)); !ok)
    return store_error(ok.error(), req);
  return registry_reply(api, req, id, created ? http::status::created : http::status::ok, *token);
}

// POST /api/v1/registry/{id}/accept: pending (or rejected) -> accepted. A device without a token gets one
// (in the reply); an unknown id is pre-authorised.
Reply accept_device(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad_id(req);
  auto d = api.store->get_device(id);
  if (!d) return store_error(d.error(), req);
  if (!d->has_value() || (*d)->token_sha256.empty()) return issue_token(api, req, id, !d->has_value());
  if (auto ok = api.store->set_device_auth_status(id, kDeviceAccepted); !ok)
    return store_error(ok.error(), req);
  return registry_reply(api, req, id, http::status::ok);
}

// POST /api/v1/registry/{id}/reject
Reply reject_device(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad_id(req);
  auto ok = api.store->set_device_auth_status(id, kDeviceRejected);
  if (!ok) return store_error(ok.error(), req);
  if (!*ok)
    return json_error(http::status::not_found, "unknown_device", fmt::format("no device '{}'", id), req);
  return registry_reply(api, req, id, http::status::ok);
}

// POST /api/v1/registry/{id}/token: a new token (the old one stops working); accepts the device.
Reply rotate_token(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad_id(req);
  auto d = api.store->get_device(id);
  if (!d) return store_error(d.error(), req);
  return issue_token(api, req, id, !d->has_value());
}

// POST /api/v1/gateway-tokens {"label"}: a token that may act for every device not rejected.
Reply add_gateway_token(ApiContext& api, const HttpRequest& req, const RequestContext&) {
  if (auto denied = check_admin(api, req)) return *denied;
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object() || !body.contains("label") || !body["label"].is_string())
    return json_error(http::status::bad_request, "bad_json", "the body must be {\"label\": \"<name>\"}", req);
  std::string label = body["label"].get<std::string>();
  if (!valid_name(label))
    return json_error(http::status::bad_request, "bad_json", "label: 1-128 printable characters", req);
  auto token = generate_admin_token();
  if (!token)
    return json_error(http::status::internal_server_error, "io_error", token.error().message(), req);
  auto added = api.store->add_gateway_token(sha256_hex_of(*token), "gateway:" + label);
  if (!added) return store_error(added.error(), req);
  if (!*added)
    return json_error(http::status::conflict, "conflict", fmt::format("a token labelled '{}' exists", label),
                      req);
  return json_reply(http::status::created, json{{"label", label}, {"token", *token}}, req);
}

}  // namespace

std::optional<HttpResponse> check_device_known(ApiContext& api, std::string_view device_id,
                                               const HttpRequest& req, std::string_view address) {
  const Credential cred = credential_of(req);
  const bool token_mode = api.config.device_auth == DeviceAuth::token;
  if (device_id.empty()) {
    if (api.config.refuse_unknown_devices)
      return json_error(http::status::forbidden, "unknown_device",
                        "this server only serves registered devices: send the device id", req);
    if (token_mode)
      return device_unauthorized("unauthorized", "this server needs the device id and its token", req);
    return std::nullopt;
  }
  if (cred.kind == Credential::gateway) {
    auto ok = api.store->gateway_token_exists(sha256_hex_of(cred.token));
    if (!ok) return store_error(ok.error(), req);
    if (!*ok) return device_unauthorized("unauthorized", "the gateway token is not valid", req);
  }
  auto d = api.store->get_device(device_id);
  if (!d) return store_error(d.error(), req);
  if (!d->has_value()) {
    if (api.config.refuse_unknown_devices)
      return json_error(http::status::forbidden, "unknown_device",
                        fmt::format("device '{}' is not registered on this server", device_id), req);
    if (cred.kind == Credential::target)
      return device_unauthorized("unauthorized",
                                 fmt::format("device '{}' has no token on this server", device_id), req);
    if (cred.kind == Credential::gateway || !token_mode) return std::nullopt;  // the report creates it
    if (auto added = api.store->add_pending_device(device_id, "", "", address); !added)
      return store_error(added.error(), req);
    return device_unauthorized("device_pending",
                               fmt::format("device '{}' is pending: an admin must accept it "
                                           "(ota32 device-registry accept {})",
                                           device_id, device_id),
                               req);
  }
  const DeviceRecord& dev = **d;
  if (dev.auth_status == kDeviceRejected)
    return json_error(http::status::forbidden, "device_rejected",
                      fmt::format("device '{}' was rejected by an admin", device_id), req);
  if (cred.kind == Credential::gateway) return std::nullopt;
  if (cred.kind == Credential::target) {
    if (dev.auth_status == kDeviceAccepted && same_hash(dev.token_sha256, sha256_hex_of(cred.token)))
      return std::nullopt;
    return device_unauthorized("unauthorized",
                               fmt::format("the token is not valid for device '{}'", device_id), req);
  }
  if (dev.auth_status == kDevicePending)
    return device_unauthorized("device_pending",
                               fmt::format("device '{}' is pending: an admin must accept it "
                                           "(ota32 device-registry accept {})",
                                           device_id, device_id),
                               req);
  // A device with a token must always show it: nobody else can report for it, even on an open server.
  if (!dev.token_sha256.empty() || token_mode)
    return device_unauthorized(
        "unauthorized",
        dev.token_sha256.empty()
            ? fmt::format("device '{}' has no token yet (ota32 device-registry token {})", device_id,
                          device_id)
            : fmt::format("device '{}' must send 'Authorization: TargetToken <token>'", device_id),
        req);
  return std::nullopt;
}

void register_registry_routes(Router& router, ApiContext& api) {
  auto bind = [&api](ApiHandler fn) { return bind_api(api, fn); };
  router.add(http::verb::get, "/api/v1/registry", bind(list_registry));
  router.add(http::verb::post, "/api/v1/registry/{id}/accept", bind(accept_device));
  router.add(http::verb::post, "/api/v1/registry/{id}/reject", bind(reject_device));
  router.add(http::verb::post, "/api/v1/registry/{id}/token", bind(rotate_token));
  router.add(http::verb::post, "/api/v1/gateway-tokens", bind(add_gateway_token));
}

}  // namespace api_detail
}  // namespace ota32::server
