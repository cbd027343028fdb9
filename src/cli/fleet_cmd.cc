// ota32 fleet run: many virtual devices against a real update server (src/fleet).
#include <fmt/format.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "core/numbers.h"
#include "fleet/fleet.h"

namespace ota32::cli {
namespace {

// "500ms", "5s", "2m", "1h" or a number of seconds ("0.5").
Result<std::chrono::milliseconds> parse_duration(std::string_view text, std::string_view field) {
  std::string t(text);
  double scale = 1000;
  auto ends = [&](std::string_view s) { return t.size() > s.size() && t.ends_with(s); };
  if (ends("ms")) {
    scale = 1;
    t.resize(t.size() - 2);
  } else if (ends("s")) {
    t.pop_back();
  } else if (ends("m")) {
    scale = 60000;
    t.pop_back();
  } else if (ends("h")) {
    scale = 3600000;
    t.pop_back();
  }
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size() || !std::isfinite(v) || v < 0 || v * scale > 864e5 * 7) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: '{}' is not a duration (500ms, 5s, 2m, 1h; at most a week)", field, text));
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::llround(v * scale)));
}

// A token file: its first line, trimmed.
Result<std::string> read_token_file(const std::string& path, std::string_view option) {
  OTA32_ASSIGN(std::string text, read_text_file(path));
  auto nl = text.find_first_of("\r\n");
  if (nl != std::string::npos) text.resize(nl);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.pop_back();
  if (text.empty()) return Error(ErrorCode::invalid_argument, fmt::format("{}: {}: empty", option, path));
  return text;
}

void add_fleet_commands(CLI::App& app) {
  auto* fleet = app.add_subcommand("fleet", "Many simulated devices against an update server");
  fleet->require_subcommand(1);
  auto* run = fleet->add_subcommand(
      "run",
      "Run N virtual devices in this process against `ota32 serve`: each boots the template device's flash "
      "(shared copy-on-write) through the bootloader model, polls, downloads over HTTPS, reboots, runs its "
      "self-test, confirms or rolls back, and reports. Prints a table (or --json) at the end.");
  struct Opts {
    std::string server, ca, from, gateway_file, admin_file, id_prefix = "sim";
    std::string poll = "5s", duration = "10m", timeout = "10s";
    uint64_t devices = 10, seed = 1, bandwidth = 0, workers = 16, idle_polls = 1, max_polls = 10000;
    double fail = 0;
    std::vector<std::string> fail_versions;
    bool provision = false, no_until_idle = false, json = false, per_device = false, progress = false;
  };
  auto o = std::make_shared<Opts>();
  run->add_option("--server", o->server, "Update server base URL, e.g. https://127.0.0.1:8070")->required();
  run->add_option("--ca", o->ca, "PEM CA certificate the devices trust (the server's ca_cert.pem)")
      ->required();
  run->add_option("--from", o->from,
                  "Template device directory (ota32 device new + device flash): every device starts as a "
                  "copy of its flash, settings and eFuses")
      ->required();
  add_number_option(run, "--devices", o->devices, "Number of devices (default 10, at most 1000000)");
  run->add_option("--fail-self-test", o->fail,
                  "Fraction of devices (0..1) whose self-test fails: exactly "
                  "round(R x N) devices, chosen by --seed")
      ->check(CLI::Range(0.0, 1.0));
  run->add_option("--fail-version", o->fail_versions,
                  "The version(s) whose self-test fails on those devices (default: every version but the "
                  "one they started with)");
  add_number_option(run, "--seed", o->seed, "Seed: device order, failing devices, poll times (default 1)");
  add_number_option(run, "--bandwidth", o->bandwidth,
                    "Bytes per second for all downloads together, K/M suffixes (default: unlimited)");
  run->add_option("--poll-interval", o->poll, "Time between a device's update checks (default 5s)");
  run->add_option("--duration", o->duration, "Stop after this long at the latest (default 10m)");
  run->add_flag("--no-until-idle", o->no_until_idle,
                "Keep polling until --duration even when every device is idle");
  add_number_option(run, "--idle-polls", o->idle_polls,
                    "A device is idle after this many update checks in a row found nothing to install "
                    "(default 1); the run stops when all are idle");
  add_number_option(run, "--max-polls", o->max_polls, "Wakes per device at most (default 10000)");
  add_number_option(run, "--workers", o->workers, "Worker threads driving the devices (default 16)");
  run->add_option("--timeout", o->timeout, "The agent's connect / read / write timeout (default 10s)");
  run->add_option("--id-prefix", o->id_prefix,
                  "Device ids are PREFIX-00000, PREFIX-00001, ... (default sim)");
  run->add_option("--gateway-token-file", o->gateway_file,
                  "Every device sends 'Authorization: GatewayToken <the token in FILE>'");
  run->add_option("--admin-token-file", o->admin_file, "The server's admin token, for --provision");
  run->add_flag("--provision", o->provision,
                "Before the run, have the registry issue each device its own token (TargetToken)");
  run->add_flag("--json", o->json, "Print the result as JSON");
  run->add_flag("--per-device", o->per_device, "With --json: one entry per device");
  run->add_flag("--progress", o->progress, "Show the live progress line even when stderr is not a terminal");
  run->callback([o] {
    fleet::FleetOptions f;
    f.server = o->server;
    auto ca = read_input(o->ca, kPemInput);
    if (!ca) return set_exit_code(fail(ca.error().with_context("--ca")));
    f.ca_pem.assign(ca->begin(), ca->end());
    f.ca_name = o->ca;
    if (o->devices == 0 || o->devices > 1000000)
      return set_exit_code(usage_error("ota32 fleet run", "--devices: 1 to 1000000"));
    if (o->workers == 0 || o->workers > 1024)
      return set_exit_code(usage_error("ota32 fleet run", "--workers: 1 to 1024"));
    if (o->idle_polls == 0 || o->max_polls == 0)
      return set_exit_code(usage_error("ota32 fleet run", "--idle-polls and --max-polls: at least 1"));
    if (o->provision && o->admin_file.empty())
      return set_exit_code(usage_error("ota32 fleet run", "--provision needs --admin-token-file"));
    if (o->provision && !o->gateway_file.empty())
      return set_exit_code(usage_error("ota32 fleet run",
                                       "give --provision (device tokens) or --gateway-token-file, not both"));
    f.devices = static_cast<uint32_t>(o->devices);
    f.fail_self_test = o->fail;
    f.fail_versions = o->fail_versions;
    f.seed = o->seed;
    f.bandwidth = o->bandwidth;
    f.id_prefix = o->id_prefix;
    for (auto [text, field, out] : {std::tuple{&o->poll, "--poll-interval", &f.pool.poll_interval},
                                    std::tuple{&o->duration, "--duration", &f.pool.duration},
                                    std::tuple{&o->timeout, "--timeout", &f.timeout}}) {
      auto d = parse_duration(*text, field);
      if (!d) return set_exit_code(usage_error("ota32 fleet run", d.error().message()));
      *out = *d;
    }
    if (f.timeout.count() == 0) return set_exit_code(usage_error("ota32 fleet run", "--timeout: above 0"));
    f.pool.workers = static_cast<unsigned>(o->workers);
    f.pool.until_idle = !o->no_until_idle;
    f.pool.idle_polls = static_cast<unsigned>(o->idle_polls);
    f.pool.max_wakes = o->max_polls;
    f.pool.seed = o->seed;
    if (!o->gateway_file.empty()) {
      auto t = read_token_file(o->gateway_file, "--gateway-token-file");
      if (!t) return set_exit_code(fail(t.error()));
      f.gateway_token = *t;
    }
    if (!o->admin_file.empty()) {
      auto t = read_token_file(o->admin_file, "--admin-token-file");
      if (!t) return set_exit_code(fail(t.error()));
      f.admin_token = *t;
    }
    f.provision = o->provision;
    auto tpl = fleet::load_template(o->from);
    if (!tpl) return set_exit_code(fail(tpl.error().with_context("--from")));

    const bool tty = isatty(fileno(stderr)) != 0;
    std::function<void(const fleet::FleetProgress&)> progress;
    if (tty || o->progress) {
      progress = [tty,
                  last = std::chrono::steady_clock::time_point()](const fleet::FleetProgress& p) mutable {
        // A terminal gets one line rewritten in place; a log file a line every 5 s.
        auto now = std::chrono::steady_clock::now();
        if (!tty && !p.final && now - last < std::chrono::seconds(5)) return;
        last = now;
        std::fprintf(stderr, tty ? (p.final ? "\r%s\x1b[K\n" : "\r%s\x1b[K") : "%s\n",
                     fleet::format_progress(p).c_str());
        std::fflush(stderr);
      };
    }
    auto r = fleet::run_fleet(*tpl, f, progress);
    if (!r) return set_exit_code(fail(r.error()));
    if (o->json) {
      out(fleet::report_json(*r, o->per_device).dump(2) + "\n");
    } else {
      out(fleet::format_report(*r));
    }
    return set_exit_code(kExitOk);
  });
}

}  // namespace

OTA32_REGISTER_COMMANDS(80, add_fleet_commands, "fleet");

}  // namespace ota32::cli
