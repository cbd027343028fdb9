// The catalog, device and admin APIs and the Arduino / esp32FOTA compatibility endpoints (docs/api.md).
// Handlers are pure `request -> reply` functions over the Store and the blob directory; ota32-serve's main
// opens them with open_api() and mounts them with register_api_routes().
#pragma once

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/result.h"
#include "format/secure_boot_v2.h"
#include "server/http_types.h"
#include "server/metrics.h"
#include "server/rate_limit.h"
#include "server/rollout_service.h"
#include "server/serve_context.h"
#include "store/blob_store.h"
#include "store/store.h"

namespace CLI {
class App;
}

namespace ota32::server {

// How device-facing routes authenticate devices (docs/api.md "Device identity").
enum class DeviceAuth {
  open,   // devices without a token may report and check (created accepted); devices with one must send it
  token,  // every device request needs its TargetToken or a GatewayToken; unknown devices become pending
};

struct ApiConfig {
  std::filesystem::path data_dir;  // holds ota32.db (default store) and blobs/
  std::string store_url;           // empty = sqlite://DATA/ota32.db
  // Base of the URLs handed to devices ("https://ota.example.com:8070"); empty = from the request's Host
  // header and the connection's scheme.
  std::string public_url;
  bool refuse_unknown_devices = false;  // devices must be registered (POST /api/v1/devices) first
  DeviceAuth device_auth = DeviceAuth::open;
  std::size_t max_upload = 16 * 1024 * 1024;
  // Anonymous floods on the device-facing endpoints (update checks, reports, Arduino / esp32FOTA): requests
  // per second per source address (IPv6: per /64) and the burst allowed at once; 0 = no limit. Refused
  // requests get 429 + Retry-After.
  double device_rate = 10;
  double device_burst = 100;
  // Reports from device ids the store has never seen are refused (429) once it holds this many devices
  // (0 = no cap); registered and known devices are always served.
  int64_t max_devices = 100'000;
  // Report history kept: the newest N per device and none older than the age (0 = no limit).
  ReportRetention report_retention{100, int64_t{90} * 24 * 3600};
  // --require-signed: uploads must carry a Secure Boot v2 signature block of one of these public keys that
  // verifies (empty = unsigned uploads are taken). The server never holds a private key.
  struct TrustedKey {
    std::string file;  // where it was read from, for messages
    SbPublicKey key;
  };
  std::vector<TrustedKey> require_signed;
  // How often ota32-serve's rollout timer expires quiet attempts and evaluates running rollouts (soak,
  // promotion, completion, the sliding window): --rollout-interval. Reports evaluate at once as well.
  std::chrono::milliseconds rollout_interval{5000};
};

struct ApiContext {
  std::unique_ptr<Store> store;
  BlobStore blobs;
  ApiConfig config;
  Metrics* metrics = nullptr;                   // optional: update checks and completed downloads are counted
  std::unique_ptr<RateLimiter> device_limiter;  // from config.device_rate / device_burst (open_api)
  // The server log (ota32-serve: a line on stderr): decisions a device cannot be told in its reply, such as
  // an update withheld by the anti-rollback check. Empty = not logged.
  std::function<void(const std::string&)> log;
  // The clock of the rollout logic (Unix seconds); empty = unix_now(). Tests set it.
  std::function<int64_t()> clock;
  // ota32-serve's rollout timer (register_api_routes with a ServeContext); declared last so that it stops
  // before the store it uses goes away.
  std::unique_ptr<RolloutTimer> rollout_timer;
  int64_t now() const { return clock ? clock() : unix_now(); }
};

struct ApiSetup {
  std::unique_ptr<ApiContext> context;
  // Set only by the start that created the first admin token: print it once, it is stored only hashed.
  std::optional<std::string> new_admin_token;
};

// Creates the data directory, opens (and migrates) the store, and creates the first admin token when the
// store has none. Several servers starting at once on one database create exactly one token.
Result<ApiSetup> open_api(const ApiConfig& config);

// Mounts every API route (see docs/api.md) on the router. `ctx` must outlive the router.
void register_api_routes(Router& router, ApiContext& ctx);

// ota32-serve integration (serve_main.cc): add_api_options() puts --public-url, --refuse-unknown-devices and
// --max-upload on the serve command; register_api_routes(router, serve_context) then opens the store in the
// data dir (or --store), prints a newly created admin token once on stdout, and mounts the routes. The API
// context lives until the process exits (one serve per process).
void add_api_options(CLI::App* serve_command);
Result<void> register_api_routes(Router& router, const ServeContext& serve);

// Helpers shared by the API files.
std::string sha256_hex_of(std::string_view text);
// A fresh admin token: 32 random bytes from the kernel as 64 hex digits.
Result<std::string> generate_admin_token();

}  // namespace ota32::server
