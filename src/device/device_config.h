// The virtual ESP32's settings, as stored in its directory: device.json (the firmware build's properties
// and the app model's settings) and efuse.json (the chip's one-time-programmable state).
#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "core/result.h"
#include "format/secure_boot_v2.h"

namespace ota32 {

// CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE / CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK: properties of the bootloader
// build, so they live with the device, not with the flash contents. Defaults are ESP-IDF's (both off).
struct BootloaderConfig {
  bool rollback = false;
  bool anti_rollback = false;  // implies rollback (Kconfig dependency)
  // CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT: the firmware checks a downloaded image's Secure Boot v2
  // signature (against the running app's key) although SECURE_BOOT_EN is not burnt. With SECURE_BOOT_EN
  // the check happens anyway, against the eFuse key digests.
  bool signed_apps_no_secure_boot = false;
  // The bootloader build's ESP-IDF version, used only when its image carries no descriptor (pre-v5):
  // decides the log format of the segment lines. Empty: v5.5.
  std::string idf_version;
};

// What the app model does after boot (the stand-in for the firmware's own code). Unknown keys of the
// "app" object are kept, for the app models that come later (the OTA agent).
struct AppModelConfig {
  // Versions (esp_app_desc_t.version) whose self-test fails: they call
  // esp_ota_mark_app_invalid_rollback_and_reboot() instead of esp_ota_mark_app_valid_cancel_rollback().
  std::vector<std::string> self_test_fails;
  std::string ota_url;  // for the OTA agent
  std::string ca_cert;  // PEM file path, for the OTA agent
  nlohmann::json extra = nlohmann::json::object();
};

struct DeviceConfig {
  std::string chip = "esp32";
  uint32_t flash_size = 4u << 20;
  BootloaderConfig bootloader;
  AppModelConfig app;
};

struct Efuse {
  std::string mac;                    // "24:0a:c4:12:34:56"
  uint32_t chip_revision = 0;         // major*100 + minor ("v1.0" = 100)
  uint32_t secure_version = 0;        // anti-rollback: the number of bits burnt in SECURE_VERSION
  uint32_t secure_version_bits = 32;  // CONFIG_BOOTLOADER_APP_SEC_VER_SIZE_EFUSE_FIELD (32 on ESP32)
  SecureBootEfuse secure_boot;        // key digests, revocations, SECURE_BOOT_EN (efuse.json "secure_boot")
};

nlohmann::json to_json(const DeviceConfig& c);
nlohmann::json to_json(const Efuse& e);
// Errors (invalid_argument) name the file and the field: "device.json: bootloader.rollback: not a boolean".
Result<DeviceConfig> device_config_from_json(const nlohmann::json& j, std::string_view file);
Result<Efuse> efuse_from_json(const nlohmann::json& j, std::string_view file);

Result<nlohmann::json> read_json_file(const std::filesystem::path& path);
Result<void> write_json_file(const std::filesystem::path& path, const nlohmann::json& j);

// `ota32 device set DIR key=value`: one setting of device.json by its short name (ota_url, update_server,
// ca_cert, self_test_fails, rollback, anti_rollback, skip_cert_common_name_check, timeout_ms, device_id,
// bootloader_idf_version), checked like device.json itself. A relative ca_cert is taken relative to the
// working directory and stored relative to `dev_dir`, as device.json keeps it; the file must hold a PEM
// certificate. Returns the field it set ("app.ota_url"). Errors name the key and say what it takes.
Result<std::string> apply_device_setting(DeviceConfig& c, std::string_view key, std::string_view value,
                                         const std::filesystem::path& dev_dir);
// The keys apply_device_setting takes, for messages and --help.
std::string device_setting_keys();

// "v1.0" / "1.0" / "100" -> 100.
Result<uint32_t> parse_chip_revision(std::string_view text);
std::string chip_revision_text(uint32_t rev);  // "v1.0"
// "10:52:1c:67:b1:10" (six hex pairs, any case) -> normalised lower case.
Result<std::string> parse_mac(std::string_view text);
// A typical revision of each chip (the one the default build accepts): ESP32 v1.0, as in the seed.
uint32_t default_chip_revision(std::string_view chip);

}  // namespace ota32
