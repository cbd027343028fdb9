#include "device/device_config.h"

#include <fmt/format.h>

#include <cctype>
#include <limits>

#include "core/file_io.h"
#include "core/numbers.h"

namespace ota32 {

namespace {

using nlohmann::json;

Error field_error(std::string_view file, std::string_view field, std::string_view what) {
  return Error(ErrorCode::invalid_argument, fmt::format("{}: {}: {}", file, field, what));
}

template <class T>
Result<void> get(const json& obj, const char* key, T& out, std::string_view file, std::string_view path) {
  auto it = obj.find(key);
  if (it == obj.end()) return {};
  const std::string field = path.empty() ? key : fmt::format("{}.{}", path, key);
  if constexpr (std::is_same_v<T, bool>) {
    if (!it->is_boolean()) return field_error(file, field, "not a boolean");
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (!it->is_string()) return field_error(file, field, "not a string");
  } else {
    if (!it->is_number_unsigned()) return field_error(file, field, "not a non-negative integer");
    if (it->template get<uint64_t>() > std::numeric_limits<T>::max())
      return field_error(file, field, "too large");
  }
  out = it->template get<T>();
  return {};
}

}  // namespace

json to_json(const DeviceConfig& c) {
  json app = c.app.extra;
  app["self_test_fails"] = c.app.self_test_fails;
  app["ota_url"] = c.app.ota_url;
  app["ca_cert"] = c.app.ca_cert;
  return json{{"chip", c.chip},
              {"flash_size", c.flash_size},
              {"bootloader",
               {{"rollback", c.bootloader.rollback},
                {"anti_rollback", c.bootloader.anti_rollback},
                {"signed_apps_no_secure_boot", c.bootloader.signed_apps_no_secure_boot},
                {"idf_version", c.bootloader.idf_version}}},
              {"app", app}};
}

json to_json(const Efuse& e) {
  json j{{"mac", e.mac},
         {"chip_revision", chip_revision_text(e.chip_revision)},
         {"secure_version", e.secure_version},
         {"secure_version_bits", e.secure_version_bits}};
  const SecureBootEfuse& sb = e.secure_boot;
  json digests = json::array(), revoked = json::array();
  for (size_t i = 0; i < kSigMaxBlocks; ++i) {
    digests.push_back(sb.key_digests[i] ? json(to_hex(*sb.key_digests[i])) : json(nullptr));
    revoked.push_back(sb.revoked[i]);
  }
  j["secure_boot"] = {{"enabled", sb.enabled}, {"key_digests", digests}, {"key_revoked", revoked}};
  return j;
}

// efuse.json "secure_boot": {"enabled": bool, "key_digests": [hex|null x3], "key_revoked": [bool x3]}.
static Result<SecureBootEfuse> secure_boot_from_json(const json& j, std::string_view file) {
  SecureBootEfuse sb;
  if (!j.is_object()) return field_error(file, "secure_boot", "not an object");
  OTA32_TRY(get(j, "enabled", sb.enabled, file, "secure_boot"));
  if (auto it = j.find("key_digests"); it != j.end()) {
    if (!it->is_array() || it->size() > kSigMaxBlocks)
      return field_error(file, "secure_boot.key_digests", "not an array of up to 3 digests");
    for (size_t i = 0; i < it->size(); ++i) {
      const json& d = (*it)[i];
      if (d.is_null()) continue;
      auto bytes =
          d.is_string() ? from_hex(d.get<std::string>()) : Result<Bytes>(Error(ErrorCode::corrupt, ""));
      if (!bytes || bytes->size() != 32)
        return field_error(file, fmt::format("secure_boot.key_digests[{}]", i), "not 64 hex digits or null");
      Sha256Digest dg;
      std::copy(bytes->begin(), bytes->end(), dg.begin());
      sb.key_digests[i] = dg;
    }
  }
  if (auto it = j.find("key_revoked"); it != j.end()) {
    if (!it->is_array() || it->size() > kSigMaxBlocks)
      return field_error(file, "secure_boot.key_revoked", "not an array of up to 3 booleans");
    for (size_t i = 0; i < it->size(); ++i) {
      if (!(*it)[i].is_boolean())
        return field_error(file, fmt::format("secure_boot.key_revoked[{}]", i), "not a boolean");
      sb.revoked[i] = (*it)[i].get<bool>();
    }
  }
  return sb;
}

Result<DeviceConfig> device_config_from_json(const json& j, std::string_view file) {
  if (!j.is_object()) return Error(ErrorCode::invalid_argument, fmt::format("{}: not a JSON object", file));
  DeviceConfig c;
  OTA32_TRY(get(j, "chip", c.chip, file, ""));
  OTA32_TRY(get(j, "flash_size", c.flash_size, file, ""));
  if (auto it = j.find("bootloader"); it != j.end()) {
    if (!it->is_object()) return field_error(file, "bootloader", "not an object");
    OTA32_TRY(get(*it, "rollback", c.bootloader.rollback, file, "bootloader"));
    OTA32_TRY(get(*it, "anti_rollback", c.bootloader.anti_rollback, file, "bootloader"));
    OTA32_TRY(
        get(*it, "signed_apps_no_secure_boot", c.bootloader.signed_apps_no_secure_boot, file, "bootloader"));
    OTA32_TRY(get(*it, "idf_version", c.bootloader.idf_version, file, "bootloader"));
  }
  if (auto it = j.find("app"); it != j.end()) {
    if (!it->is_object()) return field_error(file, "app", "not an object");
    c.app.extra = *it;
    OTA32_TRY(get(*it, "ota_url", c.app.ota_url, file, "app"));
    OTA32_TRY(get(*it, "ca_cert", c.app.ca_cert, file, "app"));
    if (auto f = it->find("self_test_fails"); f != it->end()) {
      if (!f->is_array()) return field_error(file, "app.self_test_fails", "not an array of versions");
      for (const auto& v : *f) {
        if (!v.is_string()) return field_error(file, "app.self_test_fails", "not an array of versions");
        c.app.self_test_fails.push_back(v.get<std::string>());
      }
    }
    for (const char* k : {"self_test_fails", "ota_url", "ca_cert"}) c.app.extra.erase(k);
  }
  if (c.bootloader.anti_rollback && !c.bootloader.rollback) {
    return field_error(file, "bootloader.anti_rollback", "requires bootloader.rollback (Kconfig dependency)");
  }
  return c;
}

Result<Efuse> efuse_from_json(const json& j, std::string_view file) {
  if (!j.is_object()) return Error(ErrorCode::invalid_argument, fmt::format("{}: not a JSON object", file));
  Efuse e;
  std::string mac, rev = "v0.0";
  OTA32_TRY(get(j, "mac", mac, file, ""));
  OTA32_TRY(get(j, "chip_revision", rev, file, ""));
  OTA32_TRY(get(j, "secure_version", e.secure_version, file, ""));
  OTA32_TRY(get(j, "secure_version_bits", e.secure_version_bits, file, ""));
  auto m = parse_mac(mac);
  if (!m) return field_error(file, "mac", m.error().message());
  e.mac = *m;
  auto r = parse_chip_revision(rev);
  if (!r) return field_error(file, "chip_revision", r.error().message());
  e.chip_revision = *r;
  if (e.secure_version_bits == 0 || e.secure_version_bits > 32) {
    return field_error(file, "secure_version_bits", "must be 1..32");
  }
  if (e.secure_version > e.secure_version_bits) {
    return field_error(
        file, "secure_version",
        fmt::format("{} exceeds the field's {} bits", e.secure_version, e.secure_version_bits));
  }
  if (auto it = j.find("secure_boot"); it != j.end()) {
    OTA32_ASSIGN(e.secure_boot, secure_boot_from_json(*it, file));
  }
  return e;
}

Result<json> read_json_file(const std::filesystem::path& path) {
  OTA32_ASSIGN(auto text, read_text_file(path));
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return Error(ErrorCode::invalid_argument, fmt::format("{}: not valid JSON", path.string()));
  }
  return j;
}

Result<void> write_json_file(const std::filesystem::path& path, const json& j) {
  return write_file_atomic(path, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                           Durability::synced);
}

namespace {

Result<bool> parse_bool(std::string_view key, std::string_view v) {
  if (v == "true" || v == "1" || v == "yes" || v == "on") return true;
  if (v == "false" || v == "0" || v == "no" || v == "off") return false;
  return Error(ErrorCode::invalid_argument, fmt::format("{}: '{}' is not true or false", key, v));
}

Result<void> check_url(std::string_view key, std::string_view v) {
  if (v.empty() || v.starts_with("https://") || v.starts_with("http://")) return {};
  return Error(ErrorCode::invalid_argument,
               fmt::format("{}: '{}' is not a URL (https://HOST:PORT/...; empty to clear)", key, v));
}

// An "app" key kept in the extra object: set, or removed by an empty value.
void set_or_clear(json& extra, const char* key, const std::string& v) {
  if (v.empty()) {
    extra.erase(key);
  } else {
    extra[key] = v;
  }
}

constexpr std::string_view kSettingKeys =
    "ota_url, update_server, ca_cert, self_test_fails, rollback, anti_rollback, signed_apps, "
    "skip_cert_common_name_check, timeout_ms, device_id, bootloader_idf_version";

}  // namespace

std::string device_setting_keys() { return std::string(kSettingKeys); }

Result<std::string> apply_device_setting(DeviceConfig& c, std::string_view key, std::string_view value,
                                         const std::filesystem::path& dev_dir) {
  namespace fs = std::filesystem;
  const std::string v(value);
  if (key == "ota_url") {
    OTA32_TRY(check_url(key, v));
    c.app.ota_url = v;
    return std::string("app.ota_url");
  }
  if (key == "update_server") {
    OTA32_TRY(check_url(key, v));
    set_or_clear(c.app.extra, "update_server", v);
    return std::string("app.update_server");
  }
  if (key == "ca_cert") {
    if (v.empty()) {
      c.app.ca_cert.clear();
      return std::string("app.ca_cert");
    }
    auto text = read_text_file(v);
    if (!text) return text.error().with_context("ca_cert");
    const std::string& pem = *text;
    if (pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("ca_cert: {}: no PEM certificate in it (-----BEGIN CERTIFICATE-----)", v));
    }
    fs::path p = v;
    if (p.is_relative()) {
      std::error_code ec;
      fs::path rel = fs::relative(fs::absolute(p, ec), fs::absolute(dev_dir, ec), ec);
      if (!ec && !rel.empty()) p = rel;
    }
    c.app.ca_cert = p.generic_string();
    return std::string("app.ca_cert");
  }
  if (key == "self_test_fails") {
    std::vector<std::string> versions;
    size_t start = 0;
    while (start <= v.size() && !v.empty()) {
      size_t comma = v.find(',', start);
      std::string item = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
      if (item.empty() || item.size() > 32) {
        return Error(
            ErrorCode::invalid_argument,
            fmt::format("self_test_fails: '{}' is not a comma-separated list of versions (at most 32 "
                        "characters each, as esp_app_desc_t.version)",
                        v));
      }
      versions.push_back(item);
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    c.app.self_test_fails = std::move(versions);
    return std::string("app.self_test_fails");
  }
  if (key == "rollback") {
    OTA32_ASSIGN(c.bootloader.rollback, parse_bool(key, v));
    if (!c.bootloader.rollback && c.bootloader.anti_rollback) {
      return Error(ErrorCode::invalid_argument,
                   "rollback=false: anti_rollback is on and requires it (set anti_rollback=false first)");
    }
    return std::string("bootloader.rollback");
  }
  if (key == "anti_rollback") {
    OTA32_ASSIGN(c.bootloader.anti_rollback, parse_bool(key, v));
    if (c.bootloader.anti_rollback) c.bootloader.rollback = true;  // Kconfig: implies rollback
    return std::string("bootloader.anti_rollback");
  }
  if (key == "signed_apps") {  // CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT (device new --signed-apps)
    OTA32_ASSIGN(c.bootloader.signed_apps_no_secure_boot, parse_bool(key, v));
    return std::string("bootloader.signed_apps_no_secure_boot");
  }
  if (key == "skip_cert_common_name_check") {
    OTA32_ASSIGN(bool b, parse_bool(key, v));
    c.app.extra["skip_cert_common_name_check"] = b;
    return std::string("app.skip_cert_common_name_check");
  }
  if (key == "timeout_ms") {
    auto n = parse_u32(v, "timeout_ms");
    if (!n || *n == 0 || *n > 600000) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("timeout_ms: '{}' is not a number of milliseconds (1..600000)", v));
    }
    c.app.extra["timeout_ms"] = *n;
    return std::string("app.timeout_ms");
  }
  if (key == "device_id") {
    set_or_clear(c.app.extra, "device_id", v);
    return std::string("app.device_id");
  }
  if (key == "bootloader_idf_version") {
    if (!v.empty() && v[0] != 'v') {
      return Error(
          ErrorCode::invalid_argument,
          fmt::format("bootloader_idf_version: '{}' is not an ESP-IDF version (v5.5.5, v4.3, ...)", v));
    }
    c.bootloader.idf_version = v;
    return std::string("bootloader.idf_version");
  }
  return Error(ErrorCode::invalid_argument,
               fmt::format("'{}' is not a device setting (one of: {})", key, kSettingKeys));
}

Result<uint32_t> parse_chip_revision(std::string_view text) {
  std::string_view t = text;
  if (!t.empty() && (t[0] == 'v' || t[0] == 'V')) t.remove_prefix(1);
  auto dot = t.find('.');
  auto bad = [&] {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("'{}' is not a chip revision (v<major>.<minor>, e.g. v1.0)", text));
  };
  if (dot == std::string_view::npos) {
    auto v = parse_u32(t, "chip revision");
    if (!v || *v > 0xFFFF) return bad();
    return *v;
  }
  auto major = parse_u32(t.substr(0, dot), "major"), minor = parse_u32(t.substr(dot + 1), "minor");
  if (!major || !minor || *minor > 99 || *major > 99) return bad();
  return *major * 100 + *minor;
}

std::string chip_revision_text(uint32_t rev) { return fmt::format("v{}.{}", rev / 100, rev % 100); }

Result<std::string> parse_mac(std::string_view text) {
  std::string out;
  auto bad = [&] {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("'{}' is not a MAC address (aa:bb:cc:dd:ee:ff)", text));
  };
  if (text.size() != 17) return bad();
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (i % 3 == 2) {
      if (c != ':') return bad();
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return bad();
    }
    out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  // esp_base_mac_addr_set refuses a multicast address ("Base MAC must be a unicast MAC"); the factory MAC in
  // eFuse is always unicast.
  if (std::stoi(out.substr(0, 2), nullptr, 16) & 1) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("'{}' is a multicast address: a base MAC must be unicast (first byte even), as "
                             "esp_base_mac_addr_set requires",
                             text));
  }
  return out;
}

uint32_t default_chip_revision(std::string_view chip) {
  if (chip == "esp32") return 100;  // ECO1, the seed's "chip revision: 1"
  if (chip == "esp32s2") return 100;
  if (chip == "esp32c3") return 4;  // v0.4 (ECO3); the default build needs >= v0.3
  if (chip == "esp32s3") return 2;
  if (chip == "esp32c2") return 100;
  if (chip == "esp32p4") return 100;
  return 1;  // v0.1
}

}  // namespace ota32
