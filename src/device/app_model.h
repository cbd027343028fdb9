// The app model: what stands in for the firmware's own code after the bootloader jumps to it. The OTA
// agent (src/agent) plugs in here; the default model does what ESP-IDF's OTA examples do on start-up.
#pragma once

#include <functional>
#include <string_view>

#include "agent/update_agent.h"
#include "boot/boot_log.h"
#include "boot/bootloader.h"
#include "core/result.h"
#include "ota_ops/ota_ops.h"

namespace ota32 {

class VirtualDevice;

enum class AppExit {
  halt,    // the firmware keeps running: `device run` stops here
  reboot,  // esp_restart(): power_on again
};

class AppModel {
 public:
  virtual ~AppModel() = default;
  // Runs after a boot that started `boot.app`. Lines go to `log` (its clock continues the boot's).
  // Errors: flash failures (power_lost) only.
  virtual Result<AppExit> run(VirtualDevice& dev, const BootResult& boot, BootLog& log) = 0;
};

// What the device gives the update agent (agent/update_agent.h): esp_ota_ops on its flash and eFuses
// (`table` must outlive the context), the running app, and the self-test verdict (device.json
// app.self_test_fails lists the versions whose self-test fails).
AppOtaContext app_ota_context(VirtualDevice& dev, const BootResult& boot, const PartitionTable& table);
agent::RunningApp running_app(const VirtualDevice& dev, const BootResult& boot);
std::function<bool(std::string_view version)> self_test(const VirtualDevice& dev);

// The start-up of ESP-IDF's native_ota_example: if the running OTA slot is PENDING_VERIFY, run the
// self-test, then esp_ota_mark_app_valid_cancel_rollback() or esp_ota_mark_app_invalid_rollback_and_reboot().
// It is the update agent's lifecycle without an update source (the confirm rows of its table).
class DefaultAppModel : public AppModel {
 public:
  Result<AppExit> run(VirtualDevice& dev, const BootResult& boot, BootLog& log) override;
};

}  // namespace ota32
