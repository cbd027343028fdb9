// The OTA agent as the virtual device's firmware: what simple_ota_example / native_ota_example do after
// boot, on the agent library. Settings come from device.json's "app" object:
//   "ota_url": "https://127.0.0.1:8070/simple_ota.bin"   a fixed firmware URL (the seed's way), or
//   "update_server": "https://127.0.0.1:8443"            ask `ota32 serve` (GET /api/v1/update) and report
//   "ca_cert": "ca_cert.pem"                             PEM trust anchor (relative to the device dir)
//   "skip_cert_common_name_check": false, "timeout_ms": 5000, "device_id": "<default: the MAC>",
//   "self_test_fails": ["4"]                             versions whose self-test fails (rollback)
//   "progress_sectors": 64, "progress_ms": 1000          how often a download's progress is saved
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/agent_log.h"
#include "agent/https_ota.h"
#include "agent/update_agent.h"
#include "agent/update_client.h"
#include "boot/boot_log.h"
#include "device/app_model.h"

namespace ota32 {

struct OtaAppSettings {
  std::string ota_url;
  std::string update_server;
  std::filesystem::path ca_cert;  // resolved against the device directory
  bool skip_cert_common_name_check = false;
  uint32_t timeout_ms = 5000;
  std::string device_id;
  // device.json app.device_token (its TargetToken) or app.gateway_token: sent with every update check and
  // report (docs/api.md "Device identity").
  agent::DeviceCredential credential;
  // How often the download's progress is saved (app.progress_sectors, app.progress_ms on the device's
  // virtual clock): agent/https_ota.h ProgressCadence.
  uint32_t progress_sectors = 64;
  uint32_t progress_ms = 1000;
  // Nothing to do for the agent (no URL, no server): `device run` keeps the default app model.
  bool enabled() const { return !ota_url.empty() || !update_server.empty(); }
};

// Errors name device.json and the field.
Result<OtaAppSettings> ota_settings(const VirtualDevice& dev);

// The agent's log lines into the device's boot log (same virtual clock; debug lines dropped).
class BootLogSink final : public agent::AgentLog {
 public:
  explicit BootLogSink(BootLog& log) : log_(log) {}
  void log(char level, std::string_view tag, std::string text) override;
  void spend_bytes(uint64_t bytes) override { log_.spend_bytes(bytes); }

 private:
  BootLog& log_;
};

struct DirectOtaOptions {
  std::string url;
  std::string ca_pem, ca_name;
  bool skip_cert_common_name_check = false;
  bool allow_same_version = false;
  uint32_t timeout_ms = 5000;
  // Cut the power once this many image bytes are in flash (BudgetFlash over the slot: the agent sees a
  // flash that lost power, as on the chip); 0 = never. `device ota --stop-after`.
  uint64_t stop_after = 0;
  std::optional<uint64_t> expected_size;        // from an update check
  std::optional<Sha256Digest> expected_sha256;  // from an update check
  std::vector<std::string> invalid_versions;    // rolled back here before: never installed again
};

// What the device's firmware build gives its OtaWriter: chip and revision, rollback, anti-rollback (the eFuse
// counter), the segment-line format, and the signature check of a signed-apps build (SECURE_BOOT_EN, or
// device.json bootloader.signed_apps_no_secure_boot).
agent::OtaWriterOptions ota_writer_options(const VirtualDevice& dev);

// One esp_https_ota() on the running firmware of `dev` (boot happened: `boot`), with the device's
// download progress (resume after reboot), otadata switch on success. Lines go to `log`.
Result<agent::HttpsOtaResult> run_device_ota(VirtualDevice& dev, const BootResult& boot,
                                             const DirectOtaOptions& o, BootLog& log);

// The download settings of `dev`'s firmware for o.url (TLS, timeout, writer checks, reconnect jitter by
// MAC, the device's clock); `progress` receives the device directory's ota_progress.json store.
agent::HttpsOtaConfig device_ota_config(VirtualDevice& dev, const BootResult& boot, const DirectOtaOptions& o,
                                        BootLog& log, std::optional<agent::FileProgressStore>& progress);

// The app model `ota32 device run` uses when device.json configures the agent: the update agent's
// lifecycle (agent/update_agent.h) with the device directory's agent_state.json as its record: confirm or
// reject a PENDING_VERIFY image, report the boot, then update from ota_url or update_server; reboot after
// a successful update, keep running the current image after a failure.
class OtaAppModel final : public AppModel {
 public:
  Result<AppExit> run(VirtualDevice& dev, const BootResult& boot, BootLog& log) override;

 private:
  agent::MemoryStateStore memory_state_;  // the agent's record on an in-memory device
};

// The file (in the device directory) where the agent keeps an interrupted download's progress.
inline constexpr const char* kOtaProgressFile = "ota_progress.json";
// The agent's own state: the version it installed last (to report booted / rolled back on the next boot)
// and the versions that were rolled back (never installed again, as native_ota_example refuses them).
inline constexpr const char* kAgentStateFile = "agent_state.json";

}  // namespace ota32
