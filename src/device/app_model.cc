#include "device/app_model.h"

#include <algorithm>

#include "device/virtual_device.h"

namespace ota32 {

AppOtaContext app_ota_context(VirtualDevice& dev, const BootResult& boot, const PartitionTable& table) {
  AppOtaContext ctx{dev.flash(), table, silent_app_verifier(dev.flash(), dev.chip(), boot.efuse),
                    dev.efuse().secure_version, dev.config().bootloader.anti_rollback};
  if (boot.app) ctx.running = &boot.app->partition;
  ctx.secure_version_bits = dev.efuse().secure_version_bits;
  ctx.burn_secure_version = dev.secure_version_burner();
  return ctx;
}

agent::RunningApp running_app(const VirtualDevice& dev, const BootResult& boot) {
  agent::RunningApp app;
  if (boot.app) {
    app.partition = boot.app->partition;
    app.desc = boot.app->desc;
  }
  app.chip = std::string(dev.chip().name);
  return app;
}

std::function<bool(std::string_view version)> self_test(const VirtualDevice& dev) {
  return [fails = dev.config().app.self_test_fails](std::string_view version) {
    return std::find(fails.begin(), fails.end(), version) == fails.end();
  };
}

Result<AppExit> DefaultAppModel::run(VirtualDevice& dev, const BootResult& boot, BootLog& log) {
  if (!boot.app) return AppExit::halt;
  OTA32_ASSIGN(auto table, dev.partition_table());
  AppOtaContext ctx = app_ota_context(dev, boot, table);
  agent::UpdateAgentConfig cfg;  // no update source: only the confirm rows run
  cfg.self_test = self_test(dev);
  agent::MemoryStateStore nothing_to_keep;
  agent::UpdateAgent agent(std::move(cfg), ctx, nothing_to_keep, log);
  OTA32_ASSIGN(agent::AgentExit e, agent.run(running_app(dev, boot)));
  return e == agent::AgentExit::reboot ? AppExit::reboot : AppExit::halt;
}

}  // namespace ota32
