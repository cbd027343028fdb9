#include "device/ota_app_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "agent/update_client.h"
#include "core/file_io.h"
#include "device/virtual_device.h"
#include "ota_ops/log_text.h"

namespace ota32 {
namespace {

constexpr const char* kTag = "simple_ota_example";

Result<nlohmann::json> load_agent_state(VirtualDevice& dev, nlohmann::json& memory) {
  if (dev.dir().empty()) return memory;
  auto path = dev.dir() / kAgentStateFile;
  if (!std::filesystem::exists(path)) return nlohmann::json::object();
  OTA32_ASSIGN(std::string text, read_text_file(path));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(ErrorCode::corrupt, fmt::format("{}: not a JSON object", path.string()));
  }
  return j;
}

Result<void> save_agent_state(VirtualDevice& dev, nlohmann::json& memory, const nlohmann::json& j) {
  if (dev.dir().empty()) {
    memory = j;
    return {};
  }
  return write_file_atomic(dev.dir() / kAgentStateFile,
                           j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                           Durability::synced);
}

bool rejected(const nlohmann::json& state, const std::string& version) {
  if (!state.contains("rolled_back") || !state["rolled_back"].is_array()) return false;
  for (const auto& v : state["rolled_back"]) {
    if (v.is_string() && v.get<std::string>() == version) return true;
  }
  return false;
}

}  // namespace

void BootLogSink::log(char level, std::string_view tag, std::string text) {
  if (level == 'D' || level == 'V') return;  // info-level log, as the default build prints
  log_.log(level, std::string(tag), std::move(text));
}

Result<OtaAppSettings> ota_settings(const VirtualDevice& dev) {
  const auto& app = dev.config().app;
  OtaAppSettings s;
  s.ota_url = app.ota_url;
  if (!app.ca_cert.empty()) {
    std::filesystem::path p = app.ca_cert;
    s.ca_cert = p.is_absolute() || dev.dir().empty() ? p : dev.dir() / p;
  }
  const auto& x = app.extra;
  auto field = [&](const char* name) { return fmt::format("device.json: app.{}", name); };
  if (x.contains("update_server")) {
    if (!x["update_server"].is_string())
      return Error(ErrorCode::invalid_argument, field("update_server") + ": not a string");
    s.update_server = x["update_server"].get<std::string>();
  }
  if (x.contains("skip_cert_common_name_check")) {
    if (!x["skip_cert_common_name_check"].is_boolean()) {
      return Error(ErrorCode::invalid_argument, field("skip_cert_common_name_check") + ": not a boolean");
    }
    s.skip_cert_common_name_check = x["skip_cert_common_name_check"].get<bool>();
  }
  if (x.contains("timeout_ms")) {
    if (!x["timeout_ms"].is_number_unsigned() || x["timeout_ms"].get<uint64_t>() == 0 ||
        x["timeout_ms"].get<uint64_t>() > 600000) {
      return Error(ErrorCode::invalid_argument,
                   field("timeout_ms") + ": not a number of milliseconds (1..600000)");
    }
    s.timeout_ms = x["timeout_ms"].get<uint32_t>();
  }
  if (x.contains("device_id")) {
    if (!x["device_id"].is_string())
      return Error(ErrorCode::invalid_argument, field("device_id") + ": not a string");
    s.device_id = x["device_id"].get<std::string>();
  }
  if (s.device_id.empty()) s.device_id = dev.efuse().mac;
  for (const char* key : {"device_token", "gateway_token"}) {
    if (!x.contains(key)) continue;
    if (!x[key].is_string() || x[key].get<std::string>().empty())
      return Error(ErrorCode::invalid_argument, field(key) + ": not a non-empty string");
    if (!s.credential.token.empty())
      return Error(ErrorCode::invalid_argument,
                   field(key) + ": give device_token or gateway_token, not both");
    s.credential = {x[key].get<std::string>(), std::string_view(key) == "gateway_token"};
  }
  return s;
}

agent::OtaWriterOptions ota_writer_options(const VirtualDevice& dev) {
  agent::OtaWriterOptions w;
  const BootloaderConfig& bl = dev.config().bootloader;
  w.chip = &dev.chip();
  w.chip_revision = dev.efuse().chip_revision;
  w.rollback_enabled = bl.rollback || bl.anti_rollback;
  if (bl.anti_rollback) w.efuse_secure_version = dev.efuse().secure_version;
  w.old_log_format = old_segment_log_format(dev.boot_config().idf_version);
  const SecureBootEfuse& sb = dev.efuse().secure_boot;
  if (sb.enabled || bl.signed_apps_no_secure_boot) {
    w.signed_apps = agent::SignedAppsOptions{default_sign_scheme(dev.chip().name), sb.enabled, sb};
  }
  return w;
}

Result<agent::HttpsOtaResult> run_device_ota(VirtualDevice& dev, const BootResult& boot,
                                             const DirectOtaOptions& o, BootLog& log) {
  if (!boot.app) return Error(ErrorCode::invalid_argument, "no app is running: the device did not boot");
  OTA32_ASSIGN(auto table, dev.partition_table());
  agent::HttpsOtaConfig cfg;
  cfg.url = o.url;
  cfg.http.tls.ca_pem = o.ca_pem;
  cfg.http.tls.ca_name = o.ca_name;
  cfg.http.tls.skip_cert_common_name_check = o.skip_cert_common_name_check;
  cfg.http.timeout = std::chrono::milliseconds(o.timeout_ms);
  cfg.writer = ota_writer_options(dev);
  if (boot.app->desc) cfg.writer.running_version = boot.app->desc->version;
  cfg.writer.allow_same_version = o.allow_same_version;
  cfg.expected_size = o.expected_size;
  cfg.expected_sha256 = o.expected_sha256;
  // Reconnect waits spread by device (FNV-1a of the MAC): deterministic per device, not in lockstep.
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : dev.efuse().mac) h = (h ^ c) * 0x100000001b3ull;
  cfg.backoff.jitter_seed = h;
  cfg.stop_after = o.stop_after;
  cfg.writer.invalid_versions = o.invalid_versions;
  std::optional<agent::FileProgressStore> progress;
  if (!dev.dir().empty()) {
    progress.emplace(dev.dir() / kOtaProgressFile);
    cfg.progress = &*progress;
  }
  // Waiting between reconnects takes real time (the server may be restarting) and virtual time in the log.
  cfg.sleep = [&log](std::chrono::milliseconds d) {
    log.spend_ms(static_cast<uint32_t>(d.count()));
    std::this_thread::sleep_for(d);
  };
  BootLogSink sink(log);
  return agent::https_ota(dev.flash(), table, &boot.app->partition, cfg, sink);
}

Result<AppExit> OtaAppModel::run(VirtualDevice& dev, const BootResult& boot, BootLog& log) {
  if (!boot.app) return AppExit::halt;
  // First what every OTA-capable firmware does at start: confirm itself, or roll back.
  DefaultAppModel confirm;
  OTA32_ASSIGN(AppExit first, confirm.run(dev, boot, log));
  const std::string running = boot.app->desc ? boot.app->desc->version : "";
  OTA32_ASSIGN(nlohmann::json state, load_agent_state(dev, memory_state_));
  if (first == AppExit::reboot) {
    // The self-test failed and the image marked itself invalid. "installed" stays, so that the next boot
    // (the previous image again) sees that it is not running the installed version and reports rolled_back.
    if (!rejected(state, running)) state["rolled_back"].push_back(running);
    OTA32_TRY(save_agent_state(dev, memory_state_, state));
    return AppExit::reboot;
  }
  auto settings_or = ota_settings(dev);
  if (!settings_or) {
    log.error(kTag, settings_or.error().message());
    return AppExit::halt;
  }
  const OtaAppSettings& s = *settings_or;
  if (!s.enabled()) return AppExit::halt;

  agent::HttpOptions http;
  std::string ca_pem;
  if (!s.ca_cert.empty()) {
    auto pem = read_text_file(s.ca_cert);
    if (!pem) {
      log.error(kTag, fmt::format("cannot read the CA certificate: {}", pem.error().message()));
      return AppExit::halt;
    }
    ca_pem = *pem;
  }
  http.tls.ca_pem = ca_pem;
  http.tls.ca_name = s.ca_cert.filename().string();
  http.tls.skip_cert_common_name_check = s.skip_cert_common_name_check;
  http.timeout = std::chrono::milliseconds(s.timeout_ms);
  agent::HttpClient client(http);
  const std::string project = boot.app->desc ? boot.app->desc->project_name : "";
  auto report = [&](agent::ReportState st, std::string version, std::string error) {
    if (s.update_server.empty()) return;
    agent::DeviceReport rep{st, std::move(version), std::move(error), project, std::string(dev.chip().name)};
    auto r = agent::report_state(client, s.update_server, s.device_id, rep, s.credential);
    if (!r) log.warn(kTag, fmt::format("report to {} failed: {}", s.update_server, r.error().message()));
  };

  // What became of the update installed before this boot.
  if (state.contains("installed") && state["installed"].is_string()) {
    std::string installed = state["installed"].get<std::string>();
    if (installed == running) {
      report(agent::ReportState::booted, running, "");
    } else {
      if (!rejected(state, installed)) state["rolled_back"].push_back(installed);
      report(agent::ReportState::rolled_back, running,
             fmt::format("version {} did not stay booted; running {} again", installed, running));
    }
    state.erase("installed");
    OTA32_TRY(save_agent_state(dev, memory_state_, state));
  }

  log.info(kTag, "Starting OTA example");
  DirectOtaOptions o;
  o.url = s.ota_url;
  o.ca_pem = ca_pem;
  o.ca_name = http.tls.ca_name;
  o.skip_cert_common_name_check = s.skip_cert_common_name_check;
  o.timeout_ms = s.timeout_ms;
  std::string offered_version;
  if (state.contains("rolled_back") && state["rolled_back"].is_array()) {
    for (const auto& v : state["rolled_back"]) {
      if (v.is_string()) o.invalid_versions.push_back(v.get<std::string>());
    }
  }
  if (!s.update_server.empty()) {
    agent::UpdateQuery q{s.update_server, project,     running, std::string(dev.chip().name),
                         s.device_id,     s.credential};
    if (boot.app->desc) q.secure_version = boot.app->desc->secure_version;  // the server's anti-rollback
    auto offer = agent::check_for_update(client, q);
    if (!offer) {
      log.error(kTag, fmt::format("update check failed: {}", offer.error().message()));
      return AppExit::halt;
    }
    if (!*offer) {
      log.info(kTag, fmt::format("no update for {} version {}", q.project, running));
      return AppExit::halt;
    }
    if (rejected(state, (*offer)->version)) {
      log.warn(kTag,
               fmt::format("New version is the same as invalid version. Previously, there was an attempt to "
                           "launch the firmware with {} version, but it failed. The firmware has been rolled "
                           "back to the previous version.",
                           (*offer)->version));
      return AppExit::halt;
    }
    o.url = (*offer)->url;
    o.expected_size = (*offer)->size ? std::optional<uint64_t>((*offer)->size) : std::nullopt;
    o.expected_sha256 = (*offer)->sha256;
    offered_version = (*offer)->version;
    report(agent::ReportState::downloading, running, "");
  }
  auto done = run_device_ota(dev, boot, o, log);
  if (!done) {
    if (done.error().code() == ErrorCode::power_lost) return done.error();
    if (done.error().code() == ErrorCode::already_exists) {  // advanced_https_ota_example's version check
      log.warn(kTag, "Current running version is the same as a new. We will not continue the update.");
      return AppExit::halt;
    }
    if (done.error().code() == ErrorCode::rollback_refused) {  // refusals the agent logged (version checks)
      report(agent::ReportState::failed, running, done.error().message());
      return AppExit::halt;
    }
    log.error(kTag, fmt::format("Firmware upgrade failed: {}", done.error().message()));
    report(agent::ReportState::failed, running, done.error().message());
    return AppExit::halt;
  }
  std::string new_version = done->image.desc ? done->image.desc->version : offered_version;
  state["installed"] = new_version;
  OTA32_TRY(save_agent_state(dev, memory_state_, state));
  report(agent::ReportState::installed, running, "");
  log.info(kTag, "Prepare to restart system!");
  return AppExit::reboot;
}

}  // namespace ota32
