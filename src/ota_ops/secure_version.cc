#include "ota_ops/secure_version.h"

#include <fmt/format.h>

namespace ota32 {

Result<uint32_t> update_secure_version(uint32_t current, uint32_t field_bits, uint32_t app_secure_version,
                                       const SecureVersionBurner& burn, EspLog& log) {
  if (app_secure_version > field_bits) {
    std::string text = fmt::format("Max secure version is {}. Given {} version can not be written.",
                                   field_bits, app_secure_version);
    log.error("efuse", text);
    return Error(ErrorCode::invalid_argument, text);
  }
  if (app_secure_version < current) {
    std::string text = fmt::format(
        "Anti-rollback is not set. secure_version of app is lower that eFuse field({}).", current);
    log.error("efuse", text);
    return Error(ErrorCode::rollback_refused, text);
  }
  if (app_secure_version == current) return current;
  OTA32_TRY(burn(app_secure_version));
  log.info("efuse", fmt::format("Anti-rollback is set. eFuse field is updated({}).", app_secure_version));
  return app_secure_version;
}

}  // namespace ota32
