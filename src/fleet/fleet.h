// The fleet simulator (`ota32 fleet run`): N virtual ESP32s in one process against a real update server.
// Every device starts from one template device's flash (a device directory made with `ota32 device new` and
// flashed), shared copy-on-write through a content-addressed SectorStore; each has its own id, MAC,
// credential, eFuses, agent record and download progress. A wake boots the device through the real
// bootloader model (src/boot) and runs the real agent's lifecycle (agent/update_agent.h: confirm or roll
// back, report, check, download over HTTPS with mbedTLS, reboot) on its CowFlash.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/update_client.h"
#include "core/result.h"
#include "device/device_config.h"
#include "fleet/pool.h"

namespace ota32::fleet {

// What every device starts as: a device directory's settings and flash.
struct FleetTemplate {
  DeviceConfig config;
  Efuse efuse;
  Bytes flash;
};
// Errors as VirtualDevice::open's; invalid_argument when its flash boots no app.
Result<FleetTemplate> load_template(const std::filesystem::path& dir);

struct FleetOptions {
  std::string server;  // "https://127.0.0.1:8443"
  std::string ca_pem, ca_name;
  uint32_t devices = 10;
  std::string id_prefix = "sim";  // device i is "<prefix>-<i, 5 digits>"
  // The fraction of devices whose self-test fails: exactly round(R x N) devices, chosen by the seed. They
  // fail on `fail_versions` (empty: on every version but the one they started with).
  double fail_self_test = 0;
  std::vector<std::string> fail_versions;
  uint64_t seed = 1;
  uint64_t bandwidth = 0;  // bytes per second for all downloads together; 0 = as fast as it goes
  std::chrono::milliseconds timeout{10000};  // the agent's connect / read / write timeout
  PoolOptions pool;
  // Credentials: none (an open server), one gateway token for all, or a token per device issued by the
  // registry with the admin token (POST /api/v1/registry/{id}/accept, else /token) before the run.
  std::string gateway_token;
  std::string admin_token;  // with provision
  bool provision = false;
};

struct FleetProgress {
  bool final = false;  // the last call, after the pool stopped
  std::chrono::milliseconds elapsed{0};
  uint32_t devices = 0;
  uint64_t polls = 0, downloading = 0, updated = 0, rolled_back = 0, failed = 0, requests = 0, bytes_in = 0;
};

struct DeviceSummary {
  std::string id;
  std::string start_version, version;  // the version it started with / runs at the end
  bool self_test_fails = false;        // chosen to fail (see fail_versions)
  uint32_t polls = 0, installs = 0, rollbacks = 0, failures = 0, retries = 0;
  std::string last_error;
  std::string outcome;  // updated | rolled_back | failed | unchanged | dead (no app boots)
};

struct FleetReport {
  uint32_t devices = 0;
  uint64_t seed = 0;
  // Devices by outcome: updated (runs another version than it started with, confirmed), rolled_back (an
  // update failed its self-test and the device went back), failed (its last attempt failed: download,
  // verification, refusal, check), unchanged (never offered anything it installed), dead (no app boots).
  uint32_t updated = 0, rolled_back = 0, failed = 0, unchanged = 0, dead = 0;
  uint64_t retried = 0;  // attempts repeated after a failure (checks, downloads, reconnects in a download)
  uint64_t polls = 0, installs = 0, requests = 0, bytes_in = 0, bytes_out = 0;
  double seconds = 0, requests_per_second = 0;
  StopReason stop = StopReason::idle;
  std::map<std::string, uint32_t> versions;  // running version -> devices
  // Memory: the process's resident set before the devices were made and at the end, the shared store.
  // rss_devices: once the devices are made (their own state: sector table, ids, agent records); the
  // per-device figures divide the growth from rss_before by the number of devices.
  uint64_t rss_before = 0, rss_devices = 0, rss_after = 0, store_sectors = 0, store_bytes = 0;
  double rss_per_device_made = 0, rss_per_device = 0;
  std::vector<DeviceSummary> per_device;
};

// Runs the fleet: provisioning (when asked), then the pool until a stop condition. `progress` is called
// from the calling thread about every pool.tick_every, and once with `final` at the end. Errors: bad options
// (invalid_argument), the template (no partition table), provisioning refused by the server.
Result<FleetReport> run_fleet(const FleetTemplate& tpl, const FleetOptions& o,
                              const std::function<void(const FleetProgress&)>& progress = {});

// The final table (plain text, one line per figure) and the JSON form (`--json`).
std::string format_report(const FleetReport& r);
nlohmann::json report_json(const FleetReport& r, bool per_device);
// The live line: "12.0 s  polls 340  downloading 12  updated 20/50  rolled back 3  failed 0  12.3 MB".
std::string format_progress(const FleetProgress& p);

// The devices whose self-test fails: exactly round(rate x n) indices, from the seed (sorted).
std::vector<uint32_t> failing_devices(uint32_t n, double rate, uint64_t seed);
// "sim-00042"
std::string device_id(std::string_view prefix, uint32_t index);
// The process's resident set (VmRSS), 0 when unknown.
uint64_t resident_bytes();

}  // namespace ota32::fleet
