// Upload validation: the catalog takes only app images that the ESP-IDF bootloader / esp_ota_end would take
// for the declared chip (format/app_image.h does the checking), and describes them by their esp_app_desc_t.
#include <fmt/format.h>

#include "core/hash.h"
#include "format/app_image.h"
#include "format/chip.h"
#include "format/secure_boot_v2_trust.h"
#include "server/api_internal.h"

namespace ota32::server::api_detail {

std::string canonical_chip(std::string_view name) {
  if (name.empty() || name.size() > 32) return {};
  const ChipInfo* chip = find_chip(name);
  return chip == nullptr ? std::string() : std::string(chip->name);
}

Result<FirmwareRecord> describe_image(ByteView data, std::string_view chip_name, std::string_view file_name) {
  OTA32_ASSIGN(AppImage img, parse_image(data, file_name));
  const ChipInfo* chip = nullptr;
  if (!chip_name.empty()) {
    chip = find_chip(chip_name);
    if (chip == nullptr)
      return Error(ErrorCode::invalid_argument,
                   fmt::format("chip '{}' is not one of: {}", chip_name, supported_chip_names()));
  } else {
    chip = find_chip_by_id(img.header.chip_id);
    if (chip == nullptr)
      return Error(ErrorCode::unsupported,
                   fmt::format("{}: header chip id {} is not a known chip", file_name, img.header.chip_id));
  }
  VerifyOptions opt;
  opt.chip = chip;
  opt.kind = ImageKind::app;
  opt.file_name = file_name;
  OTA32_TRY(verify_image(img, data, opt));
  if (!img.app_desc)
    return Error(
        ErrorCode::corrupt,
        fmt::format("{}: no esp_app_desc_t (magic 0x{:08X}) at offset 0x{:x}: not an ESP-IDF app image",
                    file_name, kAppDescMagic, kAppDescImageOffset));
  // Bytes after image_size are allowed (a Secure Boot v2 signature sector follows the image); fewer are not.
  if (data.size() < img.image_size)
    return Error(ErrorCode::corrupt, fmt::format("{}: truncated: the image needs {} bytes, the file has {}",
                                                 file_name, img.image_size, data.size()));
  const AppDescription& desc = *img.app_desc;
  for (auto [field, value] :
       {std::pair{"project_name", &desc.project_name}, std::pair{"version", &desc.version},
        std::pair{"idf_ver", &desc.idf_ver}, std::pair{"date", &desc.date}, std::pair{"time", &desc.time}})
    if (!valid_utf8(*value))
      return Error(ErrorCode::corrupt,
                   fmt::format("{}: esp_app_desc_t.{} is not valid text", file_name, field));
  if (desc.project_name.empty())
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: esp_app_desc_t.project_name is empty", file_name));
  if (desc.version.empty())
    return Error(ErrorCode::invalid_argument, fmt::format("{}: esp_app_desc_t.version is empty", file_name));

  FirmwareRecord fw;
  fw.sha256 = to_hex(sha256(data));
  fw.project = desc.project_name;
  fw.version = desc.version;
  fw.chip = std::string(chip->name);
  fw.secure_version = desc.secure_version;
  fw.size = data.size();
  fw.md5 = to_hex(md5(data));
  if (img.stored_sha256) fw.image_hash = to_hex(*img.stored_sha256);
  fw.idf_version = desc.idf_ver;
  fw.compile_date = desc.date;
  fw.compile_time = desc.time;
  fw.elf_sha256 = to_hex(desc.app_elf_sha256);
  fw.file_name = std::string(file_name);
  return fw;
}

std::optional<HttpResponse> check_upload_signature(const ApiContext& api, ByteView image,
                                                   std::string_view file_name, const HttpRequest& req) {
  if (api.config.require_signed.empty()) return std::nullopt;
  auto img = parse_image(image, file_name);  // describe_image accepted it: only its length is wanted here
  if (!img)
    return json_error(http::status::unprocessable_entity, "invalid_image", img.error().message(), req);
  std::vector<SbPublicKey> keys;
  for (const auto& k : api.config.require_signed) keys.push_back(k.key);
  SignedAppCheck check = check_signed_app(image, img->image_size, keys);
  if (check.verdict == SignedAppVerdict::verified) return std::nullopt;
  return json_error(http::status::unprocessable_entity, verdict_code(check.verdict),
                    fmt::format("{}: {} (this server takes only images signed by --require-signed keys)",
                                file_name, check.reason),
                    req);
}

}  // namespace ota32::server::api_detail
