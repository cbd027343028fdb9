#include "device/ota_app_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <thread>

#include "agent/update_client.h"
#include "core/file_io.h"
#include "device/virtual_device.h"
#include "flash/budget_flash.h"
#include "ota_ops/log_text.h"

namespace ota32 {
namespace {

constexpr const char* kTag = "simple_ota_example";

// agent_state.json in the device directory (NVS on the chip), written atomically and synced.
class FileStateStore final : public agent::StateStore {
 public:
  explicit FileStateStore(std::filesystem::path path) : path_(std::move(path)) {}
  Result<agent::AgentState> load() override {
    if (!std::filesystem::exists(path_)) return agent::AgentState{};
    OTA32_ASSIGN(std::string text, read_text_file(path_));
    return agent::parse_agent_state(text, path_.string());
  }
  Result<void> save(const agent::AgentState& s) override {
    return write_file_atomic(path_, agent::agent_state_json(s), Durability::synced);
  }

 private:
  std::filesystem::path path_;
};

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
  if (x.contains("progress_sectors")) {
    if (!x["progress_sectors"].is_number_unsigned() || x["progress_sectors"].get<uint64_t>() == 0 ||
        x["progress_sectors"].get<uint64_t>() > 4096) {
      return Error(ErrorCode::invalid_argument,
                   field("progress_sectors") + ": not a number of sectors (1..4096)");
    }
    s.progress_sectors = x["progress_sectors"].get<uint32_t>();
  }
  if (x.contains("progress_ms")) {
    if (!x["progress_ms"].is_number_unsigned() || x["progress_ms"].get<uint64_t>() > 600000) {
      return Error(ErrorCode::invalid_argument,
                   field("progress_ms") + ": not a number of milliseconds (0..600000, 0 = sectors only)");
    }
    s.progress_ms = x["progress_ms"].get<uint32_t>();
  }
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

agent::HttpsOtaConfig device_ota_config(VirtualDevice& dev, const BootResult& boot, const DirectOtaOptions& o,
                                        BootLog& log, std::optional<agent::FileProgressStore>& progress) {
  agent::HttpsOtaConfig cfg;
  cfg.url = o.url;
  cfg.http.tls.ca_pem = o.ca_pem;
  cfg.http.tls.ca_name = o.ca_name;
  cfg.http.tls.skip_cert_common_name_check = o.skip_cert_common_name_check;
  cfg.http.timeout = std::chrono::milliseconds(o.timeout_ms);
  cfg.writer = ota_writer_options(dev);
  if (boot.app && boot.app->desc) cfg.writer.running_version = boot.app->desc->version;
  cfg.writer.allow_same_version = o.allow_same_version;
  cfg.expected_size = o.expected_size;
  cfg.expected_sha256 = o.expected_sha256;
  // Reconnect waits spread by device (FNV-1a of the MAC): deterministic per device, not in lockstep.
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : dev.efuse().mac) h = (h ^ c) * 0x100000001b3ull;
  cfg.backoff.jitter_seed = h;
  cfg.writer.invalid_versions = o.invalid_versions;
  if (!dev.dir().empty()) {
    progress.emplace(dev.dir() / kOtaProgressFile);
    cfg.progress = &*progress;
  }
  // The progress cadence on the device's virtual clock (the boot log's): replays save at the same points.
  if (auto st = ota_settings(dev)) {
    cfg.cadence.sectors = st->progress_sectors;
    cfg.cadence.interval = std::chrono::milliseconds(st->progress_ms);
  }
  cfg.cadence.now = [&log] { return std::chrono::milliseconds(log.now_ms()); };
  // Waiting between reconnects takes real time (the server may be restarting) and virtual time in the log.
  cfg.sleep = [&log](std::chrono::milliseconds d) {
    log.spend_ms(static_cast<uint32_t>(d.count()));
    std::this_thread::sleep_for(d);
  };
  return cfg;
}

Result<agent::HttpsOtaResult> run_device_ota(VirtualDevice& dev, const BootResult& boot,
                                             const DirectOtaOptions& o, BootLog& log) {
  if (!boot.app) return Error(ErrorCode::invalid_argument, "no app is running: the device did not boot");
  OTA32_ASSIGN(auto table, dev.partition_table());
  std::optional<agent::FileProgressStore> progress;
  OTA32_TRY(ota_settings(dev));  // a device.json the agent cannot use (the cadence) is named
  agent::HttpsOtaConfig cfg = device_ota_config(dev, boot, o, log, progress);
  BootLogSink sink(log);
  Flash* flash = &dev.flash();
  std::optional<BudgetFlash> cut;
  const PartitionEntry* slot = agent::next_update_partition(table, &boot.app->partition);
  if (o.stop_after != 0 && slot != nullptr)
    flash = &cut.emplace(dev.flash(), slot->offset, slot->size, o.stop_after);
  auto r = agent::https_ota(*flash, table, &boot.app->partition, cfg, sink);
  if (!r && cut && cut->power_lost()) {
    return Error(ErrorCode::power_lost,
                 fmt::format("power cut after {} image bytes of {} (--stop-after); the next `device ota` or "
                             "`device run` resumes from the progress saved before it",
                             o.stop_after, o.url));
  }
  return r;
}

Result<AppExit> OtaAppModel::run(VirtualDevice& dev, const BootResult& boot, BootLog& log) {
  if (!boot.app) return AppExit::halt;
  OTA32_ASSIGN(auto table, dev.partition_table());
  AppOtaContext ctx = app_ota_context(dev, boot, table);
  agent::UpdateAgentConfig cfg;
  cfg.self_test = self_test(dev);
  std::optional<agent::FileProgressStore> progress;
  // A device.json the agent cannot use: the image still confirms itself, then the firmware stops.
  std::optional<std::string> problem;
  auto s = ota_settings(dev);
  std::string ca_pem;
  if (!s) {
    problem = s.error().message();
  } else if (!s->ca_cert.empty()) {
    auto pem = read_text_file(s->ca_cert);
    if (pem) {
      ca_pem = *pem;
    } else {
      problem = fmt::format("cannot read the CA certificate: {}", pem.error().message());
    }
  }
  if (!problem) {
    cfg.update_server = s->update_server;
    cfg.ota_url = s->ota_url;
    cfg.device_id = s->device_id;
    cfg.credential = s->credential;
    DirectOtaOptions o;
    o.url = s->ota_url;
    o.ca_pem = ca_pem;
    o.ca_name = s->ca_cert.filename().string();
    o.skip_cert_common_name_check = s->skip_cert_common_name_check;
    o.timeout_ms = s->timeout_ms;
    cfg.ota = device_ota_config(dev, boot, o, log, progress);
  }
  std::optional<FileStateStore> file_store;
  agent::StateStore* store = &memory_state_;
  if (!dev.dir().empty()) store = &file_store.emplace(dev.dir() / kAgentStateFile);
  BootLogSink sink(log);
  agent::UpdateAgent agent(std::move(cfg), ctx, *store, sink);
  OTA32_ASSIGN(agent::AgentExit e, agent.run(running_app(dev, boot)));
  if (e == agent::AgentExit::reboot) return AppExit::reboot;
  if (problem) log.error(kTag, *problem);
  return AppExit::halt;
}

}  // namespace ota32
