// ota32 device efuse DIR summary | burn-key-digest | enable-secure-boot | revoke-key: the virtual device's
// Secure Boot v2 eFuses, in espefuse.py's words. eFuses are one-time programmable: a burnt digest or bit is
// never cleared, and each refusal leaves efuse.json as it was.
#include <fmt/format.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "device/virtual_device.h"
#include "format/secure_boot_v2.h"
#include "format/secure_boot_v2_crypto.h"

namespace ota32::cli {
namespace {

// A PEM key (private or public), or the raw 32-byte digest `ota32 sign digest` writes.
Result<Sha256Digest> digest_of_key_file(const std::string& path) {
  OTA32_ASSIGN(Bytes data, read_input(path, kKeyInput));
  Sha256Digest d{};
  if (data.size() == d.size() && as_chars(data).find("-----BEGIN") == std::string_view::npos) {
    std::copy(data.begin(), data.end(), d.begin());
    return d;
  }
  auto key = sb_public_key_from_pem(data);
  if (!key) return key.error().with_context(path);
  return key_digest(*key);
}

struct EfuseArgs {
  std::string dir, key;
  int block = -1;
  int revoke = 0;
  bool json = false;
};

Result<std::unique_ptr<VirtualDevice>> open_device(const EfuseArgs& a) { return VirtualDevice::open(a.dir); }

int run_summary(const EfuseArgs& a) {
  auto dev = open_device(a);
  if (!dev) return fail(dev.error());
  const Efuse& e = (*dev)->efuse();
  const SecureBootEfuse& sb = e.secure_boot;
  const size_t slots = secure_boot_digest_slots((*dev)->chip().name);
  if (a.json) {
    nlohmann::ordered_json digests = nlohmann::ordered_json::array();
    for (size_t i = 0; i < slots; ++i) {
      digests.push_back({{"index", i},
                         {"digest", sb.key_digests[i] ? nlohmann::ordered_json(to_hex(*sb.key_digests[i]))
                                                      : nlohmann::ordered_json(nullptr)},
                         {"revoked", sb.revoked[i]}});
    }
    nlohmann::ordered_json j{{"chip", (*dev)->chip().name},
                             {"secure_boot_enabled", sb.enabled},
                             {"key_digests", digests},
                             {"secure_version", e.secure_version},
                             {"secure_version_bits", e.secure_version_bits}};
    fmt::print("{}\n", j.dump(2));
    return kExitOk;
  }
  fmt::print("Secure Boot v2 eFuses of {} ({}):\n", a.dir, (*dev)->chip().display_name);
  fmt::print("SECURE_BOOT_EN             = {}\n", sb.enabled ? "True" : "False");
  for (size_t i = 0; i < slots; ++i) {
    fmt::print("SECURE_BOOT_DIGEST{}        = {}\n", i,
               sb.key_digests[i] ? to_hex(*sb.key_digests[i]) : std::string("(not burned)"));
    if (slots > 1) fmt::print("SECURE_BOOT_KEY_REVOKE{}    = {}\n", i, sb.revoked[i] ? "True" : "False");
  }
  fmt::print("SECURE_VERSION             = {} (of {} bits)\n", e.secure_version, e.secure_version_bits);
  return kExitOk;
}

int run_burn_key_digest(const EfuseArgs& a) {
  auto dev = open_device(a);
  if (!dev) return fail(dev.error());
  auto digest = digest_of_key_file(a.key);
  if (!digest) return fail(digest.error());
  Efuse e = (*dev)->efuse();
  const size_t slots = secure_boot_digest_slots((*dev)->chip().name);
  for (size_t i = 0; i < slots; ++i) {
    if (e.secure_boot.key_digests[i] == *digest)
      return fail(fmt::format("{}: this key digest is already burned in SECURE_BOOT_DIGEST{}", a.key, i));
  }
  size_t index = 0;
  if (a.block >= 0) {
    if (static_cast<size_t>(a.block) >= slots) {
      return fail(fmt::format("--block {}: {} has {} key digest slot(s) (0..{})", a.block,
                              (*dev)->chip().display_name, slots, slots - 1));
    }
    index = static_cast<size_t>(a.block);
    if (e.secure_boot.key_digests[index]) {
      return fail(
          fmt::format("SECURE_BOOT_DIGEST{} is already burned (eFuses are one-time programmable)", index));
    }
  } else {
    while (index < slots && e.secure_boot.key_digests[index]) ++index;
    if (index == slots) return fail(fmt::format("all {} key digest slot(s) are already burned", slots));
  }
  e.secure_boot.key_digests[index] = *digest;
  if (auto w = (*dev)->set_efuse(e); !w) return fail(w.error());
  fmt::print("Burned key digest {} of {} into SECURE_BOOT_DIGEST{}\n", to_hex(*digest), a.key, index);
  return kExitOk;
}

int run_enable(const EfuseArgs& a) {
  auto dev = open_device(a);
  if (!dev) return fail(dev.error());
  Efuse e = (*dev)->efuse();
  if (e.secure_boot.enabled) {
    fmt::print("SECURE_BOOT_EN is already set\n");
    return kExitOk;
  }
  // A chip with secure boot on and no usable digest never boots again: refuse, as idf.py's flow burns the
  // digest first.
  if (e.secure_boot.trusted().empty()) {
    return fail(
        fmt::format("{}: no usable key digest burned; run `ota32 device efuse {} burn-key-digest "
                    "PUB.pem` first (a chip with SECURE_BOOT_EN and no key never boots)",
                    a.dir, a.dir));
  }
  e.secure_boot.enabled = true;
  if (auto w = (*dev)->set_efuse(e); !w) return fail(w.error());
  fmt::print("SECURE_BOOT_EN is now set: the bootloader verifies each app's signature before it boots it\n");
  return kExitOk;
}

int run_revoke(const EfuseArgs& a) {
  auto dev = open_device(a);
  if (!dev) return fail(dev.error());
  Efuse e = (*dev)->efuse();
  const size_t slots = secure_boot_digest_slots((*dev)->chip().name);
  if (slots == 1) return fail(fmt::format("{} has no key revocation eFuses", (*dev)->chip().display_name));
  if (a.revoke < 0 || static_cast<size_t>(a.revoke) >= slots)
    return fail(fmt::format("revoke-key {}: key digests are numbered 0..{}", a.revoke, slots - 1));
  const size_t n = static_cast<size_t>(a.revoke);
  if (e.secure_boot.revoked[n]) {
    fmt::print("SECURE_BOOT_KEY_REVOKE{} is already set\n", n);
    return kExitOk;
  }
  SecureBootEfuse after = e.secure_boot;
  after.revoked[n] = true;
  if (e.secure_boot.enabled && after.trusted().empty()) {
    return fail(
        fmt::format("revoke-key {}: it is the last usable key digest and SECURE_BOOT_EN is set; the "
                    "chip would never boot again",
                    n));
  }
  e.secure_boot = after;
  if (auto w = (*dev)->set_efuse(e); !w) return fail(w.error());
  fmt::print("SECURE_BOOT_KEY_REVOKE{} is now set: images signed only with that key no longer boot\n", n);
  return kExitOk;
}

void register_efuse(CLI::App& app) {
  CLI::App* device = nullptr;
  try {
    device = app.get_subcommand("device");
  } catch (const CLI::OptionNotFound&) {
    return;
  }
  auto args = std::make_shared<EfuseArgs>();
  auto* efuse =
      device->add_subcommand("efuse",
                             "The device's Secure Boot v2 eFuses (espefuse.py): summary, burn-key-digest, "
                             "enable-secure-boot, revoke-key");
  efuse->add_option("DIR", args->dir, "Device directory")->required();
  efuse->require_subcommand(1);

  auto* summary =
      efuse->add_subcommand("summary", "List the secure boot eFuses and the anti-rollback counter");
  summary->add_flag("--json", args->json, "Print as JSON");
  summary->callback([args] { set_exit_code(run_summary(*args)); });

  auto* burn = efuse->add_subcommand(
      "burn-key-digest", "Burn the SHA-256 digest of a Secure Boot v2 public key into the next free slot");
  burn->add_option("key", args->key, "Public or private key (PEM), or a 32-byte digest from `sign digest`")
      ->required();
  burn->add_option("--block", args->block,
                   "Digest slot 0..2 (ESP32 and ESP32-C2: 0 only); default: next free");
  burn->callback([args] { set_exit_code(run_burn_key_digest(*args)); });

  auto* enable = efuse->add_subcommand("enable-secure-boot", "Burn SECURE_BOOT_EN (irreversible)");
  enable->callback([args] { set_exit_code(run_enable(*args)); });

  auto* revoke =
      efuse->add_subcommand("revoke-key", "Burn SECURE_BOOT_KEY_REVOKEn: key digest N is no longer trusted");
  revoke->add_option("N", args->revoke, "Key digest slot 0..2")->required();
  revoke->callback([args] { set_exit_code(run_revoke(*args)); });
}

}  // namespace

OTA32_REGISTER_COMMANDS(62, register_efuse, "device");

}  // namespace ota32::cli
