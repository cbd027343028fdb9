// esp_https_ota in C++: download an app image over HTTPS into the next OTA slot with OtaWriter, resume with
// Range after a dropped connection and after a reboot (progress kept in the device's state), verify, and
// switch otadata. spec/https-ota-client.md §1.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "agent/agent_log.h"
#include "agent/http_client.h"
#include "agent/ota_writer.h"
#include "core/hash.h"
#include "core/result.h"

namespace ota32::agent {

// How far an interrupted download got: enough to continue it after a reboot with a Range request.
struct DownloadProgress {
  std::string url;
  uint32_t slot_offset = 0;  // the OTA slot being written
  uint32_t written = 0;      // image bytes already in flash
  std::optional<uint64_t> total;
};

class ProgressStore {
 public:
  virtual ~ProgressStore() = default;
  virtual Result<std::optional<DownloadProgress>> load() = 0;
  virtual Result<void> save(const DownloadProgress& p) = 0;
  virtual Result<void> clear() = 0;
};

// Progress in a JSON file written atomically (the virtual device keeps it in its directory, where the
// chip would keep it in NVS). A missing file is "no download in progress".
class FileProgressStore final : public ProgressStore {
 public:
  explicit FileProgressStore(std::filesystem::path path) : path_(std::move(path)) {}
  Result<std::optional<DownloadProgress>> load() override;
  Result<void> save(const DownloadProgress& p) override;
  Result<void> clear() override;

 private:
  std::filesystem::path path_;
};

// When the download saves its progress: not after every write (each save is an NVS write on the chip, an
// fsync + rename on the virtual device). Saves happen where a write crosses a 4 KiB sector boundary: at
// every `sectors`-th boundary, or at the first boundary once `interval` has passed on the device's clock
// (`now`) since the last save; and when a connection drops. A power cut resumes from the last save, at the
// start of the sector holding its byte: at most that much is downloaded again, never a byte that is not in
// flash (the power-cut sweep checks it).
struct ProgressCadence {
  uint32_t sectors = 64;                           // 256 KiB
  std::chrono::milliseconds interval{1000};        // with `now`; 0 = sectors only
  std::function<std::chrono::milliseconds()> now;  // the device's clock; empty = sectors only
};

// What the attempt loop does with a response's status: esp_https_ota's _http_handle_response_code plus
// ota32's reconnects. The first row whose range holds the status (and, for `ranged` rows, only when the
// request asked for a Range) decides.
enum class StatusAction {
  stream,   // 2xx: the body is the image (or its rest)
  restart,  // the saved range no longer fits (416): forget it and download from the start
  retry,    // reconnect after the backoff (5xx)
  abort,    // give up with `code`
};
struct StatusRule {
  int first, last;  // inclusive
  bool ranged;      // only for a request with a Range header
  StatusAction action;
  std::optional<ErrorCode> code;  // retry / abort
};
std::span<const StatusRule> status_rules();
const StatusRule& status_rule(int status, bool ranged);

// The wait before reconnecting after a connection failed with unavailable / timeout (refused, reset, 5xx,
// cut short): `initial` after the first such failure, doubled for each further failure in a row, never more
// than `max`. A connection that brought image bytes into flash starts the count again. (esp_https_ota itself
// never reconnects; this is ota32's.)
// With a jitter_seed the wait is spread over [d/2, d] by a hash of (seed, failures): a fleet that lost its
// server at the same moment does not come back in lockstep, yet the same device (the same seed, e.g. from
// its MAC) waits exactly the same in a replayed run. No seed = exactly d.
struct ReconnectBackoff {
  std::chrono::milliseconds initial{500};
  std::chrono::milliseconds max{8000};
  std::optional<uint64_t> jitter_seed;
};
// The wait after `failures_in_a_row` (>= 1) failed connections.
std::chrono::milliseconds reconnect_delay(const ReconnectBackoff& b, int failures_in_a_row);

struct HttpsOtaConfig {
  std::string url;
  HttpOptions http;
  OtaWriterOptions writer;
  std::optional<uint64_t> expected_size;        // from the update check, when known
  std::optional<Sha256Digest> expected_sha256;  // from the update check, when known
  int max_connections = 5;  // the first request plus reconnects after dropped connections (bounded)
  ReconnectBackoff backoff;
  // How to wait between connections; empty = std::this_thread::sleep_for. Tests record the waits instead of
  // sleeping; the virtual device also advances its log clock.
  std::function<void(std::chrono::milliseconds)> sleep;
  ProgressStore* progress = nullptr;  // resume after a reboot when set
  ProgressCadence cadence;            // how often `progress` is saved
  // Called after every write with the bytes in flash and the total when known.
  std::function<void(uint64_t written, std::optional<uint64_t> total)> on_progress;
};

struct HttpsOtaResult {
  PartitionEntry slot;  // the OTA slot written (a copy: the result outlives the table it was found in)
  VerifiedImage image;
  int connections = 0;        // requests made (1 = no resume)
  uint32_t resumed_from = 0;  // byte where a download interrupted by a reboot continued (0 = fresh)
};

// The whole esp_https_ota(): begin, perform until complete, finish (verify + set boot partition).
// Errors by what the caller does next:
// - unavailable / timeout: all max_connections connections failed (with config.backoff waits between
//   them); progress is kept so a later call (after a reboot) resumes;
// - not_found: "firmware not found at URL" (HTTP 403/404, or s_server's "Error opening" page);
// - bad_signature / invalid_argument: TLS trust or configuration problems;
// - unsupported (another chip), out_of_range (too large for the slot), corrupt (not an image, truncated,
//   failed verification), already_exists (same version), rollback_refused (lower secure_version, a version
//   rolled back before, or the running app still PENDING_VERIFY with rollback enabled).
// - power_lost: the flash lost power (the progress saved before it is kept for the next boot).
// In every failure the otadata is untouched, so the running image keeps booting. A power cut in tests and
// demos is the Flash's (FaultFlash, BudgetFlash), not a switch of the agent.
Result<HttpsOtaResult> https_ota(Flash& flash, const PartitionTable& table, const PartitionEntry* running,
                                 const HttpsOtaConfig& config, AgentLog& log);

}  // namespace ota32::agent
