#include "server/fleet_client.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <charconv>
#include <memory>
#include <set>

#include "core/numbers.h"
#include "server/fw_client.h"

namespace ota32::server {

namespace http = boost::beast::http;
using json = nlohmann::json;

Result<int64_t> parse_duration(std::string_view text, std::string_view what) {
  auto bad = [&] {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{} '{}': a duration like 90, 90s, 15m, 2h or 1d", what, text));
  };
  if (text.empty()) return bad();
  int64_t unit = 1;
  std::string_view num = text;
  switch (text.back()) {
    case 's':
      unit = 1;
      num.remove_suffix(1);
      break;
    case 'm':
      unit = 60;
      num.remove_suffix(1);
      break;
    case 'h':
      unit = 3600;
      num.remove_suffix(1);
      break;
    case 'd':
      unit = 86400;
      num.remove_suffix(1);
      break;
    default:
      break;
  }
  int64_t n = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), n);
  if (num.empty() || ec != std::errc() || p != num.data() + num.size() || n < 0 || n > 366 * 86400 / unit)
    return bad();
  return n * unit;
}

Result<double> parse_rate(std::string_view text, std::string_view what) {
  std::string_view num = text;
  const bool percent = !num.empty() && num.back() == '%';
  if (percent) num.remove_suffix(1);
  double v = 0;
  auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), v);
  if (num.empty() || ec != std::errc() || p != num.data() + num.size())
    return Error(ErrorCode::invalid_argument, fmt::format("{} '{}': a rate like 5% or 0.05", what, text));
  if (percent) v /= 100;
  if (!(v >= 0 && v <= 1))
    return Error(ErrorCode::invalid_argument, fmt::format("{} '{}': between 0% and 100%", what, text));
  return v;
}

namespace {

// One admin request whose 2xx JSON reply is handed to `print` (or printed raw with --json). Returns the
// exit status.
int call(const AdminOptions& o, http::verb method, const std::string& target, const std::string& body,
         std::string_view what, const std::function<void(const json&)>& print, json* reply = nullptr) {
  auto r = fw_request(client_of(o), method, target, body, body.empty() ? "" : "application/json");
  if (!r) return fail_with(r.error());
  if (r->status < 200 || r->status > 299) return report_http_error(what, *r);
  json b = json::parse(r->body, nullptr, false);
  if (!b.is_object())
    return fail_with(Error(ErrorCode::corrupt, fmt::format("{}: the server's reply is not JSON", what)));
  if (reply) *reply = b;
  if (o.json) {
    fmt::print("{}\n", b.dump(2));
    return 0;
  }
  if (print) print(b);
  return 0;
}

std::string str(const json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}
int64_t num(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<int64_t>() : 0;
}

std::string seconds_text(int64_t s) {
  if (s == 0) return "0";
  if (s % 86400 == 0) return fmt::format("{}d", s / 86400);
  if (s % 3600 == 0) return fmt::format("{}h", s / 3600);
  if (s % 60 == 0) return fmt::format("{}m", s / 60);
  return fmt::format("{}s", s);
}

// ---- group ----

void register_group(CLI::App& app, int& exit_code) {
  auto* g =
      app.add_subcommand("group", "device groups of an ota32 server: saved filters over device attributes");
  g->require_subcommand(1);
  struct State {
    AdminOptions common;
    std::string name, filter;
  };
  auto create = std::make_shared<State>();
  auto* c = g->add_subcommand("create",
                              "create a group: NAME and a filter like 'chip=esp32 tag=canary version<2.0'");
  c->add_option("name", create->name, "group name (1-64 of A-Z a-z 0-9 . _ -)")->required();
  c->add_option("--filter", create->filter,
                "terms that must all hold: chip=, project=, channel=, id=, status=, version= (also < <= > >= "
                "!=), tag=, tag!=, attr.NAME=; a value ending in * is a prefix. Empty = every device");
  add_admin_options(c, create->common);
  c->callback([create, &exit_code] {
    json body{{"name", create->name}, {"filter", create->filter}};
    exit_code = call(create->common, http::verb::post, "/api/v1/groups", body.dump(), create->name,
                     [](const json& b) {
                       fmt::print("created group {} (filter '{}'): {} device(s) match now\n", str(b, "name"),
                                  str(b, "filter"), num(b, "devices"));
                     });
  });
  auto list = std::make_shared<State>();
  auto* l = g->add_subcommand("list", "list the groups and how many devices each matches");
  add_admin_options(l, list->common);
  l->callback([list, &exit_code] {
    exit_code = call(list->common, http::verb::get, "/api/v1/groups", "", "group list", [](const json& b) {
      fmt::print("{:<24} {:>7}  {:<20}  {}\n", "NAME", "DEVICES", "CREATED", "FILTER");
      for (const auto& x : b.value("groups", json::array()))
        fmt::print("{:<24} {:>7}  {:<20}  {}\n", str(x, "name"), num(x, "devices"),
                   format_time(num(x, "created_at")),
                   str(x, "filter").empty() ? "(every device)" : str(x, "filter"));
    });
  });
  auto show = std::make_shared<State>();
  auto* s = g->add_subcommand("show", "a group's filter and the devices it matches now");
  s->add_option("name", show->name, "group name")->required();
  add_admin_options(s, show->common);
  s->callback([show, &exit_code] {
    exit_code = call(show->common, http::verb::get, "/api/v1/groups/" + percent_encode(show->name), "",
                     show->name, [](const json& b) {
                       fmt::print("group {}\nfilter: {}\ncreated: {}\ndevices: {}\n", str(b, "name"),
                                  str(b, "filter").empty() ? "(every device)" : str(b, "filter"),
                                  format_time(num(b, "created_at")), num(b, "devices"));
                       for (const auto& m : b.value("members", json::array()))
                         fmt::print("  {}\n", m.get<std::string>());
                     });
  });
  auto rm = std::make_shared<State>();
  auto* r = g->add_subcommand("rm", "delete a group (refused while a running or paused rollout uses it)");
  r->add_option("name", rm->name, "group name")->required();
  add_admin_options(r, rm->common);
  r->callback([rm, &exit_code] {
    exit_code = call(rm->common, http::verb::delete_, "/api/v1/groups/" + percent_encode(rm->name), "",
                     rm->name, [&](const json&) { fmt::print("deleted group {}\n", rm->name); });
  });
}

// ---- device-registry ----

void print_registry_entry(std::string_view verb, const json& b) {
  fmt::print("{} {}: {}\n", verb, str(b, "id"), str(b, "status"));
  if (b.contains("token") && b["token"].is_string())
    fmt::print("token for {} (shown only this once; set it on the device as device_token): {}\n",
               str(b, "id"), b["token"].get<std::string>());
}

void register_registry(CLI::App& app, int& exit_code) {
  auto* g =
      app.add_subcommand("device-registry",
                         "the device registry of an ota32 server: pending / accepted / rejected devices, "
                         "their tokens, tags and attributes");
  g->require_subcommand(1);
  struct State {
    AdminOptions common;
    std::string status, id;
    std::vector<std::string> ids, add, remove, set;
  };
  auto list = std::make_shared<State>();
  auto* l = g->add_subcommand("list", "list devices with their registry status");
  l->add_option("--status", list->status, "only pending, accepted or rejected devices")
      ->check(CLI::IsMember({"pending", "accepted", "rejected"}));
  add_admin_options(l, list->common);
  l->callback([list, &exit_code] {
    std::string q = list->status.empty() ? "" : "?status=" + list->status;
    exit_code = call(
        list->common, http::verb::get, "/api/v1/registry" + q, "", "device-registry list", [](const json& b) {
          fmt::print("{:<24} {:<9} {:<5} {:<20} {:<9} {:<16} {}\n", "ID", "STATUS", "TOKEN", "PROJECT",
                     "CHIP", "ADDRESS", "LAST REPORT");
          for (const auto& d : b.value("devices", json::array()))
            fmt::print("{:<24} {:<9} {:<5} {:<20} {:<9} {:<16} {}\n", str(d, "id"), str(d, "status"),
                       d.value("token", false) ? "yes" : "no", str(d, "project"), str(d, "chip"),
                       str(d, "address"), format_time(num(d, "last_report_at")));
        });
  });
  auto each = [&exit_code](const std::shared_ptr<State>& st, std::string_view action, std::string_view verb) {
    int status = 0;
    for (const auto& id : st->ids) {
      int rc = call(st->common, http::verb::post,
                    fmt::format("/api/v1/registry/{}/{}", percent_encode(id), action), "", id,
                    [verb](const json& b) { print_registry_entry(verb, b); });
      status = std::max(status, rc);
    }
    exit_code = status;
  };
  struct Verb {
    const char *name, *help, *action, *past;
  };
  for (const Verb& v :
       {Verb{"accept",
             "accept devices (pending or rejected; an unknown id is pre-authorised); a device "
             "without a token gets one, shown once",
             "accept", "accepted"},
        Verb{"reject", "reject devices: their requests get 403", "reject", "rejected"},
        Verb{"token",
             "issue a new token for each device (the old one stops working; an unknown id is "
             "pre-authorised), shown once",
             "token", "new token:"}}) {
    auto st = std::make_shared<State>();
    auto* c = g->add_subcommand(v.name, v.help);
    c->add_option("ids", st->ids, "device ids")->required();
    add_admin_options(c, st->common);
    c->callback([st, each, v] { each(st, v.action, v.past); });
  }
  // tag: read the device's tags, change them, write them back.
  auto tag = std::make_shared<State>();
  auto* t = g->add_subcommand("tag", "add or remove a device's tags (groups filter on them: tag=canary)");
  t->add_option("id", tag->id, "device id")->required();
  t->add_option("--add", tag->add, "tags to add")->allow_extra_args(false);
  t->add_option("--remove", tag->remove, "tags to remove")->allow_extra_args(false);
  add_admin_options(t, tag->common);
  t->callback([tag, &exit_code] {
    json dev;
    AdminOptions quiet = tag->common;
    quiet.json = false;
    const std::string path = "/api/v1/devices/" + percent_encode(tag->id);
    if (int rc = call(quiet, http::verb::get, path + "?reports=0", "", tag->id, nullptr, &dev); rc != 0) {
      exit_code = rc;
      return;
    }
    std::set<std::string> tags;
    for (const auto& x : dev.value("tags", json::array()))
      if (x.is_string()) tags.insert(x.get<std::string>());
    for (const auto& a : tag->add) tags.insert(a);
    for (const auto& r : tag->remove) tags.erase(r);
    json body{{"tags", std::vector<std::string>(tags.begin(), tags.end())}};
    exit_code = call(tag->common, http::verb::put, path + "/tags", body.dump(), tag->id, [](const json& b) {
      std::string list;
      for (const auto& x : b.value("tags", json::array()))
        list += (list.empty() ? "" : ", ") + x.get<std::string>();
      fmt::print("{} tags: {}\n", str(b, "id"), list.empty() ? "(none)" : list);
    });
  });
  auto attr = std::make_shared<State>();
  auto* a = g->add_subcommand(
      "attr", "set or remove a device's attributes (groups filter on them: attr.site=berlin)");
  a->add_option("id", attr->id, "device id")->required();
  a->add_option("--set", attr->set, "KEY=VALUE to set")->allow_extra_args(false);
  a->add_option("--remove", attr->remove, "keys to remove")->allow_extra_args(false);
  add_admin_options(a, attr->common);
  a->callback([attr, &exit_code] {
    json dev;
    AdminOptions quiet = attr->common;
    quiet.json = false;
    const std::string path = "/api/v1/devices/" + percent_encode(attr->id);
    if (int rc = call(quiet, http::verb::get, path + "?reports=0", "", attr->id, nullptr, &dev); rc != 0) {
      exit_code = rc;
      return;
    }
    json attrs = dev.value("attributes", json::object());
    for (const auto& kv : attr->set) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        exit_code =
            fail_with(Error(ErrorCode::invalid_argument, fmt::format("--set '{}': expected KEY=VALUE", kv)));
        return;
      }
      attrs[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
    for (const auto& r : attr->remove) attrs.erase(r);
    json body{{"attributes", attrs}};
    exit_code =
        call(attr->common, http::verb::put, path + "/attributes", body.dump(), attr->id, [](const json& b) {
          std::string list;
          const json attrs = b.value("attributes", json::object());
          for (const auto& [k, v] : attrs.items())
            list += fmt::format("{}{}={}", list.empty() ? "" : ", ", k, v.get<std::string>());
          fmt::print("{} attributes: {}\n", str(b, "id"), list.empty() ? "(none)" : list);
        });
  });
}

// ---- rollout ----

void print_rollout(const json& b) {
  fmt::print("rollout {}: {}, stage {} of {} open since {}\n", str(b, "id"), str(b, "state"), num(b, "stage"),
             num(b, "stages"), format_time(num(b, "stage_started_at")));
  const json rel = b.value("release", json());
  if (rel.is_object())
    fmt::print("release: {} {} ({}, sha256 {})\n", str(rel, "project"), str(rel, "version"), str(rel, "chip"),
               str(rel, "sha256"));
  fmt::print("group: {}\n", str(b, "group").empty()
                                ? std::string("(every device of the release's project and chip)")
                                : fmt::format("{} (filter '{}')", str(b, "group"), str(b, "filter")));
  const json p = b.value("policy", json::object());
  fmt::print(
      "policy: at most {} updating at once, {} retries, action timeout {}, confirm timeout {}; pause at {} "
      "failures or above {:.1f} % of at least {} reported, window {}{}\n",
      num(p, "max_in_flight"), num(p, "retries"), seconds_text(num(p, "action_timeout_s")),
      seconds_text(num(p, "confirm_timeout_s")), num(p, "max_failures"),
      p.value("max_failure_rate", 0.0) * 100, num(p, "min_samples"), seconds_text(num(p, "window_s")),
      p.value("wilson", false) ? ", Wilson bound" : "");
  fmt::print("{:<5} {:>7} {:>5} {:>8} {:>7} {:>7} {:>11} {:>9} {:>5} {:>9} {:>6}  {}\n", "STAGE", "PERCENT",
             "SOAK", "ELIGIBLE", "OFFERED", "WAITING", "DOWNLOADING", "INSTALLED", "RETRY", "CONFIRMED",
             "FAILED", "FAILED BY REASON");
  for (const auto& s : b.value("stage_list", json::array())) {
    const json f = s.value("funnel", json::object());
    std::string reasons;
    const json by_reason = f.value("failed_by_reason", json::object());
    for (const auto& [k, v] : by_reason.items())
      reasons += fmt::format("{}{} {}", reasons.empty() ? "" : ", ", k, v.get<int64_t>());
    fmt::print("{:<5} {:>6}% {:>5} {:>8} {:>7} {:>7} {:>11} {:>9} {:>5} {:>9} {:>6}  {}\n",
               fmt::format("{}{}", num(s, "stage"), s.value("open", false) ? "" : "*"),
               fmt::format("{:g}", s.value("percent", 0.0)), seconds_text(num(s, "min_soak_s")),
               num(f, "eligible"), num(f, "offered"), num(f, "waiting"), num(f, "downloading"),
               num(f, "installed"), num(f, "retry_wait"), num(f, "confirmed"), num(f, "failed"),
               reasons.empty() ? "-" : reasons);
  }
  fmt::print("(* = not open yet)\n");
  const json decisions = b.value("decisions", json::array());
  fmt::print("decisions ({}, newest first):\n", decisions.size());
  for (const auto& d : decisions) {
    fmt::print("  {} {} (stage {}, by {}): {}\n", format_time(num(d, "at")), str(d, "kind"), num(d, "stage"),
               str(d, "actor"), str(d, "summary"));
    for (const auto& e : d.value("evidence", json::array()))
      fmt::print("      {} {:<16} {} [{} .. {}]\n", e.value("fired", false) ? "[fired]" : "[     ]",
                 str(e, "rule"), str(e, "text"), format_time(num(e, "from")), format_time(num(e, "to")));
  }
}

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i <= s.size()) {
    size_t j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

struct CreateOptions {
  AdminOptions common;
  std::string id, firmware, version, project, chip, group, stages = "10,100", soak = "1h", success_fraction,
                                                           max_failure_rate, window, retry_backoff,
                                                           action_timeout, confirm_timeout, zero_tolerance;
  std::optional<int64_t> max_in_flight, retries, max_failures, min_samples;
  bool wilson = false;
};

// The create request's JSON from the options; errors name the option.
Result<json> create_body(const CreateOptions& o) {
  json body = json::object();
  if (!o.id.empty()) body["id"] = o.id;
  if (!o.firmware.empty()) body["firmware"] = o.firmware;
  if (!o.version.empty()) body["version"] = o.version;
  if (!o.project.empty()) body["project"] = o.project;
  if (!o.chip.empty()) body["chip"] = o.chip;
  if (!o.group.empty()) body["group"] = o.group;
  const auto percents = split_list(o.stages);
  const auto soaks = split_list(o.soak);
  if (soaks.size() != 1 && soaks.size() != percents.size())
    return Error(ErrorCode::invalid_argument,
                 fmt::format("--soak '{}': one duration (for every stage but the last) or one per stage ({})",
                             o.soak, percents.size()));
  std::optional<double> fraction;
  if (!o.success_fraction.empty()) {
    OTA32_ASSIGN(fraction, parse_rate(o.success_fraction, "--success-fraction"));
  }
  json stages = json::array();
  for (size_t k = 0; k < percents.size(); ++k) {
    std::string_view p = percents[k];
    if (!p.empty() && p.back() == '%') p.remove_suffix(1);
    double v = 0;
    auto [end, ec] = std::from_chars(p.data(), p.data() + p.size(), v);
    if (p.empty() || ec != std::errc() || end != p.data() + p.size())
      return Error(ErrorCode::invalid_argument,
                   fmt::format("--stages '{}': cumulative percentages like 1,10,50,100", o.stages));
    json s{{"percent", v}};
    const bool last = k + 1 == percents.size();
    if (soaks.size() == 1) {
      OTA32_ASSIGN(int64_t soak, parse_duration(soaks[0], "--soak"));
      s["min_soak_s"] = last ? 0 : soak;
    } else {
      OTA32_ASSIGN(int64_t soak, parse_duration(soaks[k], "--soak"));
      s["min_soak_s"] = soak;
    }
    if (fraction) s["success_fraction"] = *fraction;
    stages.push_back(std::move(s));
  }
  body["stages"] = std::move(stages);
  json policy = json::object();
  if (o.max_in_flight) policy["max_in_flight"] = *o.max_in_flight;
  if (o.retries) policy["retries"] = *o.retries;
  if (o.max_failures) policy["max_failures"] = *o.max_failures;
  if (o.min_samples) policy["min_samples"] = *o.min_samples;
  if (o.wilson) policy["wilson"] = true;
  if (!o.max_failure_rate.empty()) {
    OTA32_ASSIGN(policy["max_failure_rate"], parse_rate(o.max_failure_rate, "--max-failure-rate"));
  }
  for (auto [opt, key, text] : {std::tuple{"--window", "window_s", &o.window},
                                std::tuple{"--retry-backoff", "retry_backoff_s", &o.retry_backoff},
                                std::tuple{"--action-timeout", "action_timeout_s", &o.action_timeout},
                                std::tuple{"--confirm-timeout", "confirm_timeout_s", &o.confirm_timeout}}) {
    if (text->empty()) continue;
    OTA32_ASSIGN(policy[key], parse_duration(*text, opt));
  }
  if (!o.zero_tolerance.empty()) policy["zero_tolerance"] = split_list(o.zero_tolerance);
  body["policy"] = std::move(policy);
  return body;
}

void register_rollout(CLI::App& app, int& exit_code) {
  auto* g = app.add_subcommand("rollout",
                               "staged rollouts on an ota32 server: create, list, show, pause, resume, "
                               "abort, promote");
  g->require_subcommand(1);
  auto c_opt = std::make_shared<CreateOptions>();
  auto* c = g->add_subcommand(
      "create", "roll a catalog image out to a group in stages; it pauses itself when devices fail");
  auto* fw = c->add_option("--firmware", c_opt->firmware, "the image's SHA-256 (as `ota32 fw list` shows)");
  c->add_option("--version", c_opt->version, "or the image's version (with --project / --chip if ambiguous)")
      ->excludes(fw);
  c->add_option("--project", c_opt->project, "with --version: the image's project");
  c->add_option("--chip", c_opt->chip, "with --version: the image's chip");
  c->add_option("--group", c_opt->group,
                "the group to update (default: every device of the image's project/chip)");
  c->add_option("--id", c_opt->id, "rollout id (default: r-<random>)");
  c->add_option("--stages", c_opt->stages, "cumulative percentages of the group, the last 100")
      ->capture_default_str();
  c->add_option(
       "--soak", c_opt->soak,
       "least time a stage runs before the next opens: one duration for every stage but the last, or "
       "one per stage (90s, 15m, 2h, 1d)")
      ->capture_default_str();
  c->add_option("--success-fraction", c_opt->success_fraction,
                "share of a stage's seen devices that must confirm before the next opens (default 90%)");
  c->add_option("--max-in-flight", c_opt->max_in_flight, "most devices updating at once (default 50)");
  c->add_option("--retries", c_opt->retries,
                "new attempts per device after a download failure or timeout (default 2)");
  c->add_option("--retry-backoff", c_opt->retry_backoff,
                "wait before the first retry, doubling (default 5m)");
  c->add_option("--action-timeout", c_opt->action_timeout,
                "offered but not installed within this: timeout (default 1d)");
  c->add_option("--confirm-timeout", c_opt->confirm_timeout,
                "installed but not confirmed after reboot within this: timeout (default 30m)");
  c->add_option("--max-failures", c_opt->max_failures,
                "auto-pause at this many failed devices (default 5; 0 = off)");
  c->add_option("--max-failure-rate", c_opt->max_failure_rate,
                "auto-pause above this failure rate (default 5%)");
  c->add_option("--min-samples", c_opt->min_samples,
                "the rate counts from this many reported devices (default 20)");
  c->add_option("--window", c_opt->window,
                "the rules also run over this sliding window across stages (default 1h)");
  c->add_flag("--wilson", c_opt->wilson,
              "also pause when the 95 % Wilson lower bound of the rate is above the limit");
  c->add_option("--zero-tolerance", c_opt->zero_tolerance,
                "failure reasons that pause at the first occurrence, e.g. rolled_back,verify_failed");
  add_admin_options(c, c_opt->common);
  c->callback([c_opt, &exit_code] {
    if (c_opt->firmware.empty() && c_opt->version.empty()) {
      exit_code = fail_with(
          Error(ErrorCode::invalid_argument, "rollout create: give --firmware SHA256 or --version V"));
      return;
    }
    auto body = create_body(*c_opt);
    if (!body) {
      exit_code = fail_with(body.error());
      return;
    }
    exit_code =
        call(c_opt->common, http::verb::post, "/api/v1/rollouts", body->dump(), "rollout create",
             [](const json& b) {
               std::string percents;
               for (const auto& s : b.value("stage_list", json::array()))
                 percents += fmt::format("{}{:g}%", percents.empty() ? "" : " ", s.value("percent", 0.0));
               fmt::print("created rollout {}: version {} to {}, stages {}; stage 1 is open\n", str(b, "id"),
                          str(b, "version"),
                          str(b, "group").empty() ? "every device" : "group " + str(b, "group"), percents);
             });
  });

  auto l_opt = std::make_shared<AdminOptions>();
  auto* l = g->add_subcommand("list", "list rollouts, oldest first");
  add_admin_options(l, *l_opt);
  l->callback([l_opt, &exit_code] {
    exit_code = call(*l_opt, http::verb::get, "/api/v1/rollouts", "", "rollout list", [](const json& b) {
      fmt::print("{:<20} {:<13} {:>5} {:<14} {:<16} {:>7} {:>9} {:>9} {:>6}  {}\n", "ID", "STATE", "STAGE",
                 "VERSION", "GROUP", "OFFERED", "IN FLIGHT", "CONFIRMED", "FAILED", "CREATED");
      for (const auto& r : b.value("rollouts", json::array()))
        fmt::print("{:<20} {:<13} {:>5} {:<14} {:<16} {:>7} {:>9} {:>9} {:>6}  {}\n", str(r, "id"),
                   str(r, "state"), fmt::format("{}/{}", num(r, "stage"), num(r, "stages")),
                   str(r, "version"), str(r, "group").empty() ? "-" : str(r, "group"), num(r, "offered"),
                   num(r, "in_flight"), num(r, "confirmed"), num(r, "failed"),
                   format_time(num(r, "created_at")));
    });
  });

  struct ShowOptions {
    AdminOptions common;
    std::string id;
    bool devices = false;
  };
  auto s_opt = std::make_shared<ShowOptions>();
  auto* s =
      g->add_subcommand("show", "a rollout's state, per-stage funnel and every decision with its evidence");
  s->add_option("id", s_opt->id, "rollout id")->required();
  s->add_flag("--devices", s_opt->devices, "also list every device's action");
  add_admin_options(s, s_opt->common);
  s->callback([s_opt, &exit_code] {
    exit_code = call(s_opt->common, http::verb::get,
                     "/api/v1/rollouts/" + percent_encode(s_opt->id) + (s_opt->devices ? "?devices=1" : ""),
                     "", s_opt->id, [&](const json& b) {
                       print_rollout(b);
                       if (!s_opt->devices) return;
                       fmt::print("{:<24} {:>5} {:<11} {:>8} {:<16} {}\n", "DEVICE", "STAGE", "STATE",
                                  "ATTEMPTS", "REASON", "UPDATED");
                       for (const auto& d : b.value("devices", json::array()))
                         fmt::print("{:<24} {:>5} {:<11} {:>8} {:<16} {}\n", str(d, "device"),
                                    num(d, "stage"), str(d, "state"), num(d, "attempts"), str(d, "reason"),
                                    format_time(num(d, "updated_at")));
                     });
  });

  struct Verb {
    const char *name, *help;
  };
  for (const Verb& v : {Verb{"pause", "stop offering the update (devices already downloading finish)"},
                        Verb{"resume", "resume a paused rollout; auto-pause counts failures from now on"},
                        Verb{"abort", "end the rollout for good: nothing more is offered"},
                        Verb{"promote", "open the next stage now (skips soak time and success fraction)"}}) {
    auto st = std::make_shared<ShowOptions>();
    auto* cmd = g->add_subcommand(v.name, v.help);
    cmd->add_option("id", st->id, "rollout id")->required();
    add_admin_options(cmd, *&st->common);
    std::string verb = v.name;
    cmd->callback([st, verb, &exit_code] {
      exit_code = call(
          st->common, http::verb::post, fmt::format("/api/v1/rollouts/{}/{}", percent_encode(st->id), verb),
          "", st->id, [](const json& b) {
            const json d = b.value("decisions", json::array());
            fmt::print("rollout {}: {}, stage {} of {}{}\n", str(b, "id"), str(b, "state"), num(b, "stage"),
                       num(b, "stages"), d.empty() ? "" : " (" + str(d[0], "summary") + ")");
          });
    });
  }
}

}  // namespace

void register_fleet_commands(CLI::App& app, int& exit_code) {
  register_group(app, exit_code);
  register_registry(app, exit_code);
  register_rollout(app, exit_code);
}

}  // namespace ota32::server
