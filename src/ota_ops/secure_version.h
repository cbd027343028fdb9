// The anti-rollback eFuse counter SECURE_VERSION (esp_efuse_fields.c), as both the 2nd-stage bootloader and
// the app's esp_ota_mark_app_valid_cancel_rollback raise it. spec/secure-boot-v2.md §9,
// spec/otadata-and-boot.md §3.3.
#pragma once

#include <cstdint>
#include <functional>

#include "core/result.h"
#include "ota_ops/esp_log.h"

namespace ota32 {

// Programs the counter to a higher value (esp_efuse_write_field_blob of the new bits). The virtual device
// burns and keeps it; through FaultFlash::burn_efuse a power cut can hit it like a flash write.
using SecureVersionBurner = std::function<Result<void>(uint32_t new_version)>;

// esp_efuse_update_secure_version: raises the counter `current` (of a `field_bits` wide field) to
// `app_secure_version` when that is higher, logging (tag efuse) "Anti-rollback is set. eFuse field is
// updated(N)."; returns the counter after. Errors, logged with ESP-IDF's words: invalid_argument when the
// version does not fit the field ("Max secure version is %u. ..."), rollback_refused when it is below the
// counter ("Anti-rollback is not set. ..."); and the burner's (power_lost).
Result<uint32_t> update_secure_version(uint32_t current, uint32_t field_bits, uint32_t app_secure_version,
                                       const SecureVersionBurner& burn, EspLog& log);

}  // namespace ota32
