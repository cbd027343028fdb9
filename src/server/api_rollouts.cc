// Groups (saved filters over device attributes), admin-set device tags and attributes, and staged
// rollouts: create / list / show (per-stage funnel, decisions with their evidence) and the operator's
// commands (docs/api.md "Groups" and "Rollouts"). The policy is src/rollout's; rollout_service.cc wires it
// to the store.
#include <fmt/format.h>
#include <sys/random.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <variant>

#include "core/hash.h"
#include "core/numbers.h"
#include "server/api_internal.h"
#include "server/group_filter.h"

namespace ota32::server {
namespace api_detail {
namespace {

using json = nlohmann::json;
namespace ro = ota32::rollout;

HttpResponse bad(std::string_view message, const HttpRequest& req) {
  return json_error(http::status::bad_request, "bad_request", message, req);
}

// Group names and rollout ids: 1..64 of [A-Za-z0-9._-] (they appear in URLs and CLI output).
bool valid_key(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
  });
}

std::optional<json> parse_object(const HttpRequest& req) {
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object()) return std::nullopt;
  return body;
}

HttpResponse not_json(const HttpRequest& req) {
  return json_error(http::status::bad_request, "bad_json", "the request body must be a JSON object", req);
}

// ---- groups ----

json group_json(const GroupRecord& g) {
  return json{{"name", g.name}, {"filter", g.filter}, {"created_at", g.created_at}};
}

// The devices a filter matches, by id.
Result<std::vector<std::string>> members(Store& store, const GroupFilter& f) {
  OTA32_ASSIGN(auto all, store.list_devices());
  std::vector<std::string> out;
  for (const auto& d : all)
    if (matches(f, d)) out.push_back(d.id);
  return out;
}

// POST /api/v1/groups {"name", "filter"}
Reply create_group(ApiContext& api, const HttpRequest& req, const RequestContext&) {
  if (auto denied = check_admin(api, req)) return *denied;
  auto body = parse_object(req);
  if (!body) return not_json(req);
  if (!body->contains("name") || !(*body)["name"].is_string()) return bad("name: required (a string)", req);
  GroupRecord g;
  g.name = (*body)["name"].get<std::string>();
  if (!valid_key(g.name)) return bad("name: 1-64 characters of A-Z a-z 0-9 . _ -", req);
  if (body->contains("filter") && !(*body)["filter"].is_null()) {
    if (!(*body)["filter"].is_string()) return bad("filter: must be a string", req);
    g.filter = (*body)["filter"].get<std::string>();
  }
  for (const auto& [key, v] : body->items())
    if (key != "name" && key != "filter") return bad(fmt::format("{}: unknown key (name, filter)", key), req);
  auto f = parse_group_filter(g.filter);
  if (!f) return bad(f.error().message(), req);
  g.created_at = unix_now();
  auto added = api.store->add_group(g);
  if (!added) return store_error(added.error(), req);
  if (!*added)
    return json_error(http::status::conflict, "conflict", fmt::format("a group named '{}' exists", g.name),
                      req);
  auto m = members(*api.store, *f);
  if (!m) return store_error(m.error(), req);
  json out = group_json(g);
  out["devices"] = m->size();
  return json_reply(http::status::created, out, req);
}

Reply list_groups(ApiContext& api, const HttpRequest& req, const RequestContext&) {
  if (auto denied = check_admin(api, req)) return *denied;
  auto all = api.store->list_groups();
  if (!all) return store_error(all.error(), req);
  auto devices = api.store->list_devices();
  if (!devices) return store_error(devices.error(), req);
  json items = json::array();
  for (const auto& g : *all) {
    json j = group_json(g);
    auto f = parse_group_filter(g.filter);
    j["devices"] = f ? std::count_if(devices->begin(), devices->end(),
                                     [&](const DeviceRecord& d) { return matches(*f, d); })
                     : 0;
    items.push_back(std::move(j));
  }
  return json_reply(http::status::ok, json{{"groups", std::move(items)}}, req);
}

HttpResponse unknown_group(std::string_view name, const HttpRequest& req) {
  return json_error(http::status::not_found, "unknown_group", fmt::format("no group '{}'", name), req);
}

// GET /api/v1/groups/{name}: the group and the ids of the devices it matches now.
Reply get_group(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string name(ctx.param("name"));
  if (!valid_key(name)) return bad("group name: 1-64 characters of A-Z a-z 0-9 . _ -", req);
  auto g = api.store->get_group(name);
  if (!g) return store_error(g.error(), req);
  if (!g->has_value()) return unknown_group(name, req);
  auto f = parse_group_filter((*g)->filter);
  if (!f) return json_error(http::status::internal_server_error, "corrupt", f.error().message(), req);
  auto m = members(*api.store, *f);
  if (!m) return store_error(m.error(), req);
  json out = group_json(**g);
  out["devices"] = m->size();
  out["members"] = *m;
  return json_reply(http::status::ok, out, req);
}

// DELETE /api/v1/groups/{name}: refused (409) while a running or paused rollout uses it.
Reply delete_group(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string name(ctx.param("name"));
  if (!valid_key(name)) return bad("group name: 1-64 characters of A-Z a-z 0-9 . _ -", req);
  auto rollouts = api.store->list_rollouts();
  if (!rollouts) return store_error(rollouts.error(), req);
  for (const auto& r : *rollouts)
    if (r.group_name == name && (r.state == "running" || r.state.starts_with("paused")))
      return json_error(
          http::status::conflict, "conflict",
          fmt::format("group '{}' is used by rollout {} ({}): abort it first", name, r.id, r.state), req);
  auto deleted = api.store->delete_group(name);
  if (!deleted) return store_error(deleted.error(), req);
  if (!*deleted) return unknown_group(name, req);
  return json_reply(http::status::ok, json{{"deleted", name}}, req);
}

// ---- tags and attributes ----

bool valid_tag(std::string_view t) {
  if (t.empty() || t.size() > 64) return false;
  return std::all_of(t.begin(), t.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == ':' || c == '-';
  });
}

Reply device_after(ApiContext& api, const HttpRequest& req, const std::string& id, Result<bool> changed) {
  if (!changed) return store_error(changed.error(), req);
  if (!*changed)
    return json_error(http::status::not_found, "unknown_device", fmt::format("no device '{}'", id), req);
  auto d = api.store->get_device(id);
  if (!d) return store_error(d.error(), req);
  if (!d->has_value())
    return json_error(http::status::not_found, "unknown_device", fmt::format("no device '{}'", id), req);
  return json_reply(http::status::ok, device_json(**d), req);
}

// PUT /api/v1/devices/{id}/tags {"tags": [...]}: replaces the device's tags.
Reply put_tags(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad("device id: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
  auto body = parse_object(req);
  if (!body) return not_json(req);
  if (!body->contains("tags") || !(*body)["tags"].is_array())
    return bad("tags: required, a list of strings", req);
  std::vector<std::string> tags;
  for (const auto& t : (*body)["tags"]) {
    if (!t.is_string() || !valid_tag(t.get<std::string>()))
      return bad("tags: each tag is 1-64 characters of A-Z a-z 0-9 . _ : -", req);
    tags.push_back(t.get<std::string>());
  }
  std::sort(tags.begin(), tags.end());
  tags.erase(std::unique(tags.begin(), tags.end()), tags.end());
  if (tags.size() > 100) return bad("tags: at most 100 per device", req);
  return device_after(api, req, id, api.store->set_device_tags(id, tags));
}

// PUT /api/v1/devices/{id}/attributes {"attributes": {"key": "value", ...}}: replaces them all.
Reply put_attributes(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad("device id: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
  auto body = parse_object(req);
  if (!body) return not_json(req);
  if (!body->contains("attributes") || !(*body)["attributes"].is_object())
    return bad("attributes: required, an object of string values", req);
  std::map<std::string, std::string> attrs;
  for (const auto& [k, v] : (*body)["attributes"].items()) {
    if (!valid_tag(k))
      return bad(fmt::format("attributes: key '{}' is not 1-64 of A-Z a-z 0-9 . _ : -", k), req);
    if (!v.is_string() || !valid_name(v.get<std::string>()) ||
        v.get<std::string>().find(' ') != std::string::npos)
      return bad(fmt::format("attributes.{}: the value must be 1-128 printable characters without spaces", k),
                 req);
    attrs[k] = v.get<std::string>();
  }
  if (attrs.size() > 100) return bad("attributes: at most 100 per device", req);
  return device_after(api, req, id, api.store->set_device_attributes(id, attrs));
}

// ---- rollouts ----

json stage_def_json(const RolloutStageRecord& s, size_t k) {
  return json{{"stage", k + 1},
              {"percent", s.cumulative_bp / 100.0},
              {"min_soak_s", s.min_soak_s},
              {"success_fraction", s.success_fraction},
              {"max_devices", s.max_devices < 0 ? json(nullptr) : json(s.max_devices)}};
}

json rollout_summary(const RolloutRecord& r, const std::vector<RolloutStateCount>& counts) {
  std::map<std::string, int64_t> by_state;
  int64_t offered = 0;
  for (const auto& c : counts) {
    by_state[c.state] += c.count;
    if (c.state != "canceled") offered += c.count;
  }
  return json{{"id", r.id},
              {"seq", r.seq},
              {"state", r.state},
              {"stage", r.stage + 1},
              {"stages", r.stages.size()},
              {"firmware", r.firmware_sha256},
              {"version", r.target_version},
              {"group", r.group_name},
              {"created_at", r.created_at},
              {"created_by", r.created_by},
              {"stage_started_at", r.stage_started_at},
              {"offered", offered},
              {"in_flight", by_state["offered"] + by_state["downloading"]},
              {"confirmed", by_state["succeeded"]},
              {"failed", by_state["failed"]}};
}

std::string random_suffix() {
  uint8_t b[4] = {};
  if (::getrandom(b, sizeof b, 0) != static_cast<ssize_t>(sizeof b)) {
    auto t = static_cast<uint32_t>(unix_now());
    std::memcpy(b, &t, sizeof b);
  }
  return to_hex(ByteView(b, sizeof b));
}

// The firmware a create request names: "firmware" (SHA-256) or "version" (+ project / chip / channel when
// the catalog has that version for several).
std::variant<FirmwareRecord, HttpResponse> find_firmware(ApiContext& api, const json& body,
                                                         const HttpRequest& req) {
  auto str = [&](const char* key) -> std::optional<std::string> {
    if (!body.contains(key) || body[key].is_null()) return std::string();
    if (!body[key].is_string()) return std::nullopt;
    return body[key].get<std::string>();
  };
  auto sha = str("firmware"), version = str("version"), project = str("project"), chip = str("chip"),
       channel = str("channel");
  for (auto [k, v] :
       {std::pair{"firmware", &sha}, std::pair{"version", &version}, std::pair{"project", &project},
        std::pair{"chip", &chip}, std::pair{"channel", &channel}})
    if (!*v) return bad(fmt::format("{}: must be a string", k), req);
  if (sha->empty() == version->empty())
    return bad("firmware: give the release as \"firmware\" (its SHA-256) or \"version\"", req);
  if (!sha->empty()) {
    std::string s = *sha;
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
    if (!is_sha256_hex(s)) return bad("firmware: the SHA-256 of a catalog image (64 hex digits)", req);
    auto fw = api.store->get_firmware(s);
    if (!fw) return store_error(fw.error(), req);
    if (!fw->has_value())
      return json_error(http::status::not_found, "unknown_firmware",
                        fmt::format("firmware: no firmware {} in the catalog", s), req);
    return **fw;
  }
  std::string c = chip->empty() ? "" : canonical_chip(*chip);
  if (!chip->empty() && c.empty())
    return bad(fmt::format("chip: '{}' is not a chip ota32 knows", *chip), req);
  auto all = api.store->list_firmware({*project, c, *channel});
  if (!all) return store_error(all.error(), req);
  std::vector<FirmwareRecord> hits;
  for (auto& fw : *all)
    if (fw.version == *version) hits.push_back(std::move(fw));
  if (hits.empty())
    return json_error(http::status::not_found, "unknown_firmware",
                      fmt::format("version: no firmware with version '{}' in the catalog{}", *version,
                                  project->empty() && c.empty() ? "" : " for that project / chip"),
                      req);
  if (hits.size() > 1) {
    std::string which;
    for (const auto& fw : hits)
      which +=
          fmt::format("{}{} {} {}", which.empty() ? "" : ", ", fw.sha256.substr(0, 12), fw.project, fw.chip);
    return bad(fmt::format("version: '{}' names {} images ({}): give \"firmware\" (the SHA-256) or "
                           "project / chip",
                           *version, hits.size(), which),
               req);
  }
  return hits.front();
}

Reply show_rollout_json(ApiContext& api, const HttpRequest& req, const std::string& id, http::status status,
                        bool with_devices = false);

// POST /api/v1/rollouts: {"id"?, "firmware" | "version" (+ "project", "chip", "channel"), "group"?,
// "stages": [{"percent", "min_soak_s"?, "success_fraction"?, "max_devices"?}, ...], "policy"?}
Reply create_rollout(ApiContext& api, const HttpRequest& req, const RequestContext&) {
  if (auto denied = check_admin(api, req)) return *denied;
  auto body_opt = parse_object(req);
  if (!body_opt) return not_json(req);
  const json& body = *body_opt;
  static const std::vector<std::string> kKeys{"id",      "firmware", "version", "project", "chip",
                                              "channel", "group",    "stages",  "policy"};
  for (const auto& [key, v] : body.items())
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end())
      return bad(fmt::format("{}: unknown key (id, firmware, version, project, chip, channel, group, stages, "
                             "policy)",
                             key),
                 req);
  RolloutRecord r;
  if (body.contains("id")) {
    if (!body["id"].is_string() || !valid_key(body["id"].get<std::string>()))
      return bad("id: 1-64 characters of A-Z a-z 0-9 . _ -", req);
    r.id = body["id"].get<std::string>();
  } else {
    r.id = "r-" + random_suffix();
  }
  auto fw_or = find_firmware(api, body, req);
  if (auto* e = std::get_if<HttpResponse>(&fw_or)) return *e;
  const FirmwareRecord& fw = std::get<FirmwareRecord>(fw_or);
  r.firmware_sha256 = fw.sha256;
  r.target_version = fw.version;
  if (body.contains("group") && !body["group"].is_null()) {
    if (!body["group"].is_string() || !valid_key(body["group"].get<std::string>()))
      return bad("group: the name of a group (ota32 group list)", req);
    r.group_name = body["group"].get<std::string>();
    auto g = api.store->get_group(r.group_name);
    if (!g) return store_error(g.error(), req);
    if (!g->has_value()) return unknown_group(r.group_name, req);
  }
  if (!body.contains("stages") || !body["stages"].is_array() || body["stages"].empty())
    return bad("stages: required, a list like [{\"percent\": 10}, {\"percent\": 100}] (cumulative)", req);
  size_t k = 0;
  for (const auto& s : body["stages"]) {
    auto field = [&](std::string_view f, std::string_view why) {
      return bad(fmt::format("stages[{}].{}: {}", k, f, why), req);
    };
    if (!s.is_object()) return field("percent", "each stage is an object {\"percent\": N, ...}");
    RolloutStageRecord st;
    for (const auto& [key, v] : s.items()) {
      if (key == "percent") {
        if (!v.is_number() || !(v.get<double>() > 0 && v.get<double>() <= 100))
          return field(key,
                       "a number above 0 and at most 100 (cumulative: the share of the fleet updated "
                       "once this stage is done)");
        st.cumulative_bp = static_cast<uint32_t>(std::lround(v.get<double>() * 100));
        if (st.cumulative_bp == 0) return field(key, "at least 0.01");
      } else if (key == "min_soak_s") {
        if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > int64_t{366} * 86400)
          return field(key, "whole seconds from 0 to a year");
        st.min_soak_s = v.get<int64_t>();
      } else if (key == "success_fraction") {
        if (!v.is_number() || !(v.get<double>() >= 0 && v.get<double>() <= 1))
          return field(key, "a fraction from 0 to 1");
        st.success_fraction = v.get<double>();
      } else if (key == "max_devices") {
        if (v.is_null()) continue;
        if (!v.is_number_integer() || v.get<int64_t>() < 1 || v.get<int64_t>() > 1'000'000'000)
          return field(key, "a whole number of at least 1 (or null: no cap)");
        st.max_devices = v.get<int64_t>();
      } else {
        return field(key, "unknown key (percent, min_soak_s, success_fraction, max_devices)");
      }
    }
    if (!s.contains("percent")) return field("percent", "required");
    r.stages.push_back(st);
    ++k;
  }
  auto policy = policy_from_json(body.contains("policy") ? body["policy"] : json());
  if (!policy) return bad(policy.error().message(), req);
  const int64_t now = api.now();
  r.policy_json = policy_to_json(*policy).dump();
  r.state = "running";
  r.stage = 0;
  r.stage_started_at = now;
  r.counted_since = now;
  r.created_at = now;
  r.created_by = "admin";
  auto spec = spec_of(r);
  if (!spec) return bad(spec.error().message(), req);
  if (auto ok = ro::check_spec(*spec); !ok) return bad(ok.error().message(), req);
  auto created = api.store->create_rollout(r);
  if (!created) return store_error(created.error(), req);
  if (!*created)
    return json_error(http::status::conflict, "conflict", fmt::format("a rollout with id '{}' exists", r.id),
                      req);
  return show_rollout_json(api, req, r.id, http::status::created);
}

// Eligible devices per stage: those with an action in it (a device that updated may no longer match a
// filter like version<2.0), and the store's other devices that the rollout targets, placed by bucket.
Result<std::vector<int64_t>> eligible_per_stage(Store& store, const RolloutRecord& r,
                                                const ro::RolloutSpec& spec,
                                                const std::vector<RolloutDeviceRecord>& actions) {
  std::vector<int64_t> out(spec.stages.size(), 0);
  std::map<std::string_view, uint32_t> acted;
  for (const auto& a : actions)
    if (a.state != "canceled" && a.stage < out.size()) acted.emplace(a.device_id, a.stage);
  for (const auto& [id, stage] : acted) ++out[stage];
  OTA32_ASSIGN(auto fw, store.get_firmware(r.firmware_sha256));
  if (!fw) return out;
  RolloutTarget t{r, *fw, ""};
  if (!r.group_name.empty()) {
    OTA32_ASSIGN(auto g, store.get_group(r.group_name));
    if (!g) return out;
    t.filter = g->filter;
  }
  OTA32_ASSIGN(auto devices, store.list_devices());
  for (const auto& d : devices)
    if (!acted.contains(d.id) && targets(t, d, {}))
      ++out[ro::stage_of_bucket(spec.stages, ro::bucket(r.id, d.id))];
  return out;
}

std::variant<json, HttpResponse> rollout_details(ApiContext& api, const HttpRequest& req,
                                                 const std::string& id, bool with_devices) {
  auto rec = api.store->get_rollout(id);
  if (!rec) return store_error(rec.error(), req);
  if (!rec->has_value())
    return json_error(http::status::not_found, "unknown_rollout", fmt::format("no rollout '{}'", id), req);
  const RolloutRecord& r = **rec;
  auto spec = spec_of(r);
  if (!spec) return json_error(http::status::internal_server_error, "corrupt", spec.error().message(), req);
  auto counts = api.store->rollout_state_counts(id);
  if (!counts) return store_error(counts.error(), req);
  auto actions = api.store->list_rollout_devices(id);
  if (!actions) return store_error(actions.error(), req);
  auto eligible = eligible_per_stage(*api.store, r, *spec, *actions);
  if (!eligible) return store_error(eligible.error(), req);
  auto decisions = api.store->rollout_decisions(id, 100);
  if (!decisions) return store_error(decisions.error(), req);
  auto fw = api.store->get_firmware(r.firmware_sha256);
  if (!fw) return store_error(fw.error(), req);

  json out = rollout_summary(r, *counts);
  out["counted_since"] = r.counted_since;
  json policy = json::parse(r.policy_json, nullptr, false);
  out["policy"] = policy.is_discarded() ? json::object() : policy;
  out["filter"] = nullptr;
  if (!r.group_name.empty()) {
    auto g = api.store->get_group(r.group_name);
    if (g && g->has_value()) out["filter"] = (*g)->filter;
  }
  out["release"] = fw->has_value() ? json{{"sha256", (*fw)->sha256},
                                          {"project", (*fw)->project},
                                          {"version", (*fw)->version},
                                          {"chip", (*fw)->chip},
                                          {"size", (*fw)->size}}
                                   : json(nullptr);
  // The funnel: eligible -> offered (got the update at least once) -> the state each action is in now.
  struct Funnel {
    int64_t offered = 0, waiting = 0, downloading = 0, installed = 0, retry_wait = 0, confirmed = 0,
            failed = 0, canceled = 0;
    std::map<std::string, int64_t> failed_by_reason, retrying_by_reason;
  };
  std::vector<Funnel> funnels(r.stages.size());
  for (const auto& a : *actions) {
    if (a.stage >= funnels.size()) continue;
    Funnel& f = funnels[a.stage];
    if (a.state == "canceled") {
      ++f.canceled;
      continue;
    }
    ++f.offered;
    if (a.state == "offered")
      ++f.waiting;
    else if (a.state == "downloading")
      ++f.downloading;
    else if (a.state == "installed")
      ++f.installed;
    else if (a.state == "succeeded")
      ++f.confirmed;
    else if (a.state == "retry_wait") {
      ++f.retry_wait;
      ++f.retrying_by_reason[a.reason];
    } else if (a.state == "failed") {
      ++f.failed;
      ++f.failed_by_reason[a.reason];
    }
  }
  json stages = json::array();
  for (size_t k = 0; k < r.stages.size(); ++k) {
    json j = stage_def_json(r.stages[k], k);
    const Funnel& f = funnels[k];
    j["open"] = k <= r.stage;
    j["funnel"] = json{{"eligible", (*eligible)[k]},
                       {"offered", f.offered},
                       {"waiting", f.waiting},
                       {"downloading", f.downloading},
                       {"installed", f.installed},
                       {"retry_wait", f.retry_wait},
                       {"confirmed", f.confirmed},
                       {"failed", f.failed},
                       {"canceled", f.canceled},
                       {"failed_by_reason", f.failed_by_reason},
                       {"retrying_by_reason", f.retrying_by_reason}};
    stages.push_back(std::move(j));
  }
  out["stage_list"] = std::move(stages);
  json dec = json::array();
  for (const auto& d : *decisions) {
    json ev = json::parse(d.evidence_json, nullptr, false);
    dec.push_back(json{{"id", d.id},
                       {"at", d.at},
                       {"kind", d.kind},
                       {"actor", d.actor},
                       {"stage", d.stage + 1},
                       {"summary", d.summary},
                       {"evidence", ev.is_discarded() ? json::array() : ev}});
  }
  out["decisions"] = std::move(dec);
  if (with_devices) {
    json devs = json::array();
    for (const auto& a : *actions)
      devs.push_back(json{{"device", a.device_id},
                          {"stage", a.stage + 1},
                          {"state", a.state},
                          {"attempts", a.attempts},
                          {"offered_at", a.offered_at},
                          {"updated_at", a.updated_at},
                          {"retry_at", a.retry_at},
                          {"reason", a.reason},
                          {"from_version", a.from_version}});
    out["devices"] = std::move(devs);
  }
  return out;
}

Reply show_rollout_json(ApiContext& api, const HttpRequest& req, const std::string& id, http::status status,
                        bool with_devices) {
  auto d = rollout_details(api, req, id, with_devices);
  if (auto* e = std::get_if<HttpResponse>(&d)) return *e;
  return json_reply(status, std::get<json>(d), req);
}

// GET /api/v1/rollouts
Reply list_rollouts(ApiContext& api, const HttpRequest& req, const RequestContext&) {
  if (auto denied = check_admin(api, req)) return *denied;
  auto all = api.store->list_rollouts();
  if (!all) return store_error(all.error(), req);
  json items = json::array();
  for (const auto& r : *all) {
    auto counts = api.store->rollout_state_counts(r.id);
    if (!counts) return store_error(counts.error(), req);
    items.push_back(rollout_summary(r, *counts));
  }
  return json_reply(http::status::ok, json{{"rollouts", std::move(items)}}, req);
}

// GET /api/v1/rollouts/{id}[?devices=1]
Reply get_rollout(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_key(id)) return bad("rollout id: 1-64 characters of A-Z a-z 0-9 . _ -", req);
  std::string_view devices = ctx.query_param("devices");
  if (!devices.empty() && devices != "0" && devices != "1") return bad("devices: 0 or 1", req);
  return show_rollout_json(api, req, id, http::status::ok, devices == "1");
}

// POST /api/v1/rollouts/{id}/{pause|resume|abort|promote}
Reply command(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_key(id)) return bad("rollout id: 1-64 characters of A-Z a-z 0-9 . _ -", req);
  auto cmd = ro::command_from_string(ctx.param("command"));
  if (!cmd)
    return json_error(
        http::status::not_found, "unknown_command",
        fmt::format("POST /api/v1/rollouts/{{id}}/COMMAND: COMMAND is one of pause, resume, abort, "
                    "promote"),
        req);
  auto d = command_rollout(*api.store, id, *cmd, "admin", api.now());
  if (!d) {
    if (d.error().code() == ErrorCode::not_found)
      return json_error(http::status::not_found, "unknown_rollout", d.error().message(), req);
    if (d.error().code() == ErrorCode::invalid_argument)
      return json_error(http::status::conflict, "conflict", d.error().message(), req);
    return store_error(d.error(), req);
  }
  return show_rollout_json(api, req, id, http::status::ok);
}

}  // namespace

void register_rollout_routes(Router& router, ApiContext& api) {
  auto bind = [&api](ApiHandler fn) { return bind_api(api, fn); };
  router.add(http::verb::post, "/api/v1/groups", bind(create_group));
  router.add(http::verb::get, "/api/v1/groups", bind(list_groups));
  router.add(http::verb::get, "/api/v1/groups/{name}", bind(get_group));
  router.add(http::verb::delete_, "/api/v1/groups/{name}", bind(delete_group));
  router.add(http::verb::put, "/api/v1/devices/{id}/tags", bind(put_tags));
  router.add(http::verb::put, "/api/v1/devices/{id}/attributes", bind(put_attributes));
  router.add(http::verb::post, "/api/v1/rollouts", bind(create_rollout));
  router.add(http::verb::get, "/api/v1/rollouts", bind(list_rollouts));
  router.add(http::verb::get, "/api/v1/rollouts/{id}", bind(get_rollout));
  router.add(http::verb::post, "/api/v1/rollouts/{id}/{command}", bind(command));
}

}  // namespace api_detail
}  // namespace ota32::server
