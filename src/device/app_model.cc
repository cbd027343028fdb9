#include "device/app_model.h"

#include <fmt/format.h>

#include <algorithm>

#include "device/virtual_device.h"
#include "ota_ops/ota_ops.h"

namespace ota32 {

Result<AppExit> DefaultAppModel::run(VirtualDevice& dev, const BootResult& boot, BootLog& log) {
  if (!boot.app) return AppExit::halt;
  OTA32_ASSIGN(auto table, dev.partition_table());
  AppOtaContext ctx{dev.flash(), table, silent_app_verifier(dev.flash(), dev.chip(), boot.efuse),
                    dev.efuse().secure_version, dev.config().bootloader.anti_rollback};
  ctx.running = &boot.app->partition;
  ctx.secure_version_bits = dev.efuse().secure_version_bits;
  ctx.burn_secure_version = dev.secure_version_burner();
  auto state = get_state_partition(dev.flash(), table, boot.app->partition);
  if (!state) {
    if (state.error().code() == ErrorCode::power_lost) return state.error();
    return AppExit::halt;  // factory / test app, or no otadata: nothing to confirm
  }
  if (*state != kOtaStatePendingVerify) return AppExit::halt;
  const std::string version = boot.app->desc ? boot.app->desc->version : "";
  const auto& fails = dev.config().app.self_test_fails;
  const bool ok = std::find(fails.begin(), fails.end(), version) == fails.end();
  if (ok) {
    log.info(
        "app_model",
        fmt::format("self-test of version {} passed: esp_ota_mark_app_valid_cancel_rollback()", version));
    auto r = mark_app_valid_cancel_rollback(ctx, log);
    if (!r && r.error().code() == ErrorCode::power_lost) return r.error();
    return AppExit::halt;
  }
  log.error("app_model", fmt::format("self-test of version {} failed: "
                                     "esp_ota_mark_app_invalid_rollback_and_reboot()",
                                     version));
  auto r = mark_app_invalid_rollback(ctx, log);
  if (!r) {
    if (r.error().code() == ErrorCode::power_lost) return r.error();
    return AppExit::halt;  // the call returned an error: the firmware keeps running
  }
  return AppExit::reboot;
}

}  // namespace ota32
