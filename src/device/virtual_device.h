// The virtual ESP32: a directory holding flash.bin (the SPI flash, all of it), efuse.json and device.json.
// Power-on runs the 2nd-stage bootloader's logic on the flash contents, then the app model.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "boot/bootloader.h"
#include "core/result.h"
#include "device/app_model.h"
#include "device/device_config.h"
#include "device/esptool_flash.h"
#include "flash/fault_flash.h"
#include "flash/nor_flash.h"
#include "format/chip.h"
#include "format/partition_table.h"

namespace ota32 {

struct DeviceNewOptions {
  std::string chip = "esp32";
  uint32_t flash_size = 4u << 20;
  std::optional<std::string> mac;         // default: Espressif OUI 24:0a:c4 + 3 random bytes
  std::optional<uint32_t> chip_revision;  // default: default_chip_revision(chip)
  uint32_t secure_version = 0;
  BootloaderConfig bootloader;
};

class VirtualDevice {
 public:
  // `device new`: creates DIR (which must not exist or be empty) with an erased flash.bin.
  static Result<void> create(const std::filesystem::path& dir, const DeviceNewOptions& opt);
  // Opens a device directory; "not a device directory" errors name what is missing.
  static Result<std::unique_ptr<VirtualDevice>> open(const std::filesystem::path& dir);
  // A device whose flash lives in memory (tests, power-cut sweeps): nothing is written to disk.
  static Result<std::unique_ptr<VirtualDevice>> in_memory(DeviceConfig config, Efuse efuse, Bytes flash);

  const std::filesystem::path& dir() const { return dir_; }  // empty for in-memory devices
  const ChipInfo& chip() const { return *chip_; }
  const DeviceConfig& config() const { return config_; }
  const Efuse& efuse() const { return efuse_; }
  // All flash access goes through here: a FaultFlash (op log, power cuts) over the flash image.
  FaultFlash& flash() { return *fault_; }
  NorFlash& raw_flash() { return *nor_; }

  // Replaces device.json's settings (checked as when device.json is read); written atomically.
  Result<void> set_config(const DeviceConfig& c);

  // Sets an eFuse field (anti-rollback raises secure_version); persisted to efuse.json for a directory.
  Result<void> set_efuse(const Efuse& e);
  // How the firmware (bootloader, esp_ota_mark_app_valid_cancel_rollback) burns the anti-rollback counter:
  // an operation of flash() (FaultFlash::burn_efuse, so a power cut can hit it), then set_efuse.
  SecureVersionBurner secure_version_burner();

  // esptool write_flash onto this device's flash; the chip revision comes from the eFuses. `connected` runs
  // once the arguments are checked, before the first line of the write (esptool's connection preamble).
  Result<void> write_flash(std::vector<FlashFile> files, WriteFlashOptions opt, const LineSink& out,
                           const std::function<void()>& connected = {});

  // A copy of the whole flash (for snapshots and sweeps).
  Bytes snapshot() const;

  // The partition table at 0x8000 as the app sees it (esp_partition_*); corrupt when it does not parse.
  Result<PartitionTable> partition_table();
  BootConfig boot_config() const;

  // Power on: the 2nd-stage bootloader on the current flash and eFuses. A raised anti-rollback eFuse is
  // burnt when the bootloader raises it (efuse.json). Errors: flash failures only (power_lost).
  Result<BootResult> power_on();

  // The app model `run` uses (default: DefaultAppModel).
  void set_app_model(std::shared_ptr<AppModel> m) { app_model_ = std::move(m); }
  AppModel& app_model() { return *app_model_; }

  struct RunResult {
    std::vector<BootResult> boots;  // each boot's log includes its app model's lines
    bool booted = false;            // the last boot started an app
  };
  // `device run`: power_on, run the app model, and again while it asks for a reboot (at most max_boots).
  Result<RunResult> run(int max_boots = 8);

 private:
  VirtualDevice() = default;
  Result<void> attach(std::unique_ptr<NorFlash> nor);

  std::filesystem::path dir_;
  const ChipInfo* chip_ = nullptr;
  DeviceConfig config_;
  Efuse efuse_;
  std::unique_ptr<NorFlash> nor_;
  std::unique_ptr<FaultFlash> fault_;
  std::shared_ptr<AppModel> app_model_ = std::make_shared<DefaultAppModel>();
};

}  // namespace ota32
