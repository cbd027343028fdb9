// ota32 sign verify | info | digest: espsecure.py verify_signature / signature_info_v2 /
// digest_sbv2_public_key (--version 2), with mbedTLS as on the chip. key | sign | pubkey need OpenSSL and
// run the sibling executable ota32-sign, so that this binary never loads libcrypto (design.md: start-up
// cost).
#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "format/secure_boot_v2.h"
#include "format/secure_boot_v2_crypto.h"

namespace ota32::cli {
namespace {

constexpr const char* kSignBinary = "ota32-sign";

Result<SbPublicKey> read_key(const std::string& path) {
  OTA32_ASSIGN(Bytes pem, read_input(path, kKeyInput));
  auto key = sb_public_key_from_pem(pem);
  if (!key) return key.error().with_context(path);
  return key;
}

std::string spaced_hex(ByteView b) {
  std::string out;
  for (size_t i = 0; i < b.size(); ++i) out += fmt::format("{}{:02x}", i ? " " : "", b[i]);
  return out;
}

std::string_view status_word(SigBlockStatus s) {
  switch (s) {
    case SigBlockStatus::valid:
      return "valid";
    case SigBlockStatus::absent:
      return "absent";
    case SigBlockStatus::bad_crc:
      return "bad_crc";
    case SigBlockStatus::unknown_version:
      return "unknown_version";
    case SigBlockStatus::unknown_curve:
      return "unknown_curve";
  }
  return "?";
}

nlohmann::ordered_json slot_json(size_t index, const SigBlockSlot& slot) {
  nlohmann::ordered_json j{{"index", index}, {"status", status_word(slot.status)}};
  if (slot.block) {
    j["scheme"] = scheme_name(slot.block->scheme);
    j["image_digest"] = to_hex(slot.block->image_digest);
    j["key_digest"] = to_hex(key_digest(slot.block->key));
  } else {
    j["why"] = slot.describe();
  }
  return j;
}

struct VerifyArgs {
  std::string key, file;
  bool json = false;
};

int run_verify(const VerifyArgs& a) {
  auto key = read_key(a.key);
  if (!key) return fail(key.error());
  auto data = read_input(a.file, kImageInput);
  if (!data) return fail(data.error());
  auto report = verify_signed_image(*data, *key);
  if (!report) return fail(report.error().with_context(a.file));
  if (a.json) {
    nlohmann::ordered_json blocks = nlohmann::ordered_json::array();
    for (size_t i = 0; i < report->blocks.size(); ++i) {
      const auto& c = report->blocks[i];
      auto j = slot_json(i, c.slot);
      if (c.slot.block) {
        j["digest_matches"] = c.digest_matches;
        j["key_matches"] = c.key_matches;
        j["verified"] = c.verified;
        if (!c.verified) j["why"] = c.why;
      }
      blocks.push_back(j);
    }
    nlohmann::ordered_json out{{"file", a.file},
                               {"key", a.key},
                               {"key_digest", to_hex(key_digest(*key))},
                               {"verified", report->matched.has_value() && !report->digest_mismatch},
                               {"matched_block", report->matched ? nlohmann::ordered_json(*report->matched)
                                                                 : nlohmann::ordered_json(nullptr)},
                               {"blocks", blocks}};
    fmt::print("{}\n", out.dump(2));
    return report->matched && !report->digest_mismatch ? kExitOk : kExitFailed;
  }
  // espsecure's lines (v4.12's reading: all three blocks, also for EC keys), then why none matched.
  std::vector<std::string> whys;
  for (size_t i = 0; i < report->blocks.size(); ++i) {
    const auto& c = report->blocks[i];
    if (!c.slot.block) {
      fmt::print("Signature block {} invalid. Skipping.\n", i);
      whys.push_back(fmt::format("block {}: {}", i, c.why));
      continue;
    }
    auto kind = scheme_kind(c.slot.block->scheme);
    fmt::print("Signature block {} is valid ({}).\n", i, kind);
    if (!c.digest_matches) return fail(fmt::format("{}: signature block {}: {}", a.file, i, c.why));
    if (c.verified) {
      fmt::print("Signature block {} verification successful using the supplied key ({}).\n", i, kind);
    } else {
      fmt::print("Signature block {} is not signed by the supplied key. Checking the next block\n", i);
      whys.push_back(fmt::format("block {}: {}", i, c.why));
    }
  }
  if (report->matched) return kExitOk;
  return fail(
      fmt::format("{}: no signature block verifies with {}: {}", a.file, a.key, fmt::join(whys, "; ")));
}

struct InfoArgs {
  std::string file;
  bool json = false;
};

int run_info(const InfoArgs& a) {
  auto data = read_input(a.file, kImageInput);
  if (!data) return fail(data.error());
  auto view = split_signed_image(*data);
  if (!view) return fail(view.error().with_context(a.file));
  auto slots = parse_signature_sector(view->sector);
  nlohmann::ordered_json blocks = nlohmann::ordered_json::array();
  for (size_t i = 0; i < slots.size(); ++i) {
    const auto& s = slots[i];
    // signature_info_v2 stops at the first block that is not valid.
    if (!s.block) {
      if (a.json) {
        blocks.push_back(slot_json(i, s));
      } else {
        fmt::print("Signature block {} absent/invalid. Skipping checking next blocks.\n", i);
      }
      break;
    }
    if (!a.json) fmt::print("Signature block {} is valid ({}).\n", i, scheme_kind(s.block->scheme));
    if (s.block->image_digest != image_digest(s.block->scheme, view->signed_data)) {
      return fail(
          fmt::format("{}: Digest in signature block {} doesn't match the image digest (the image "
                      "changed after signing)",
                      a.file, i));
    }
    if (a.json) {
      blocks.push_back(slot_json(i, s));
    } else {
      fmt::print("Public key digest for block {}: {}\n", i, spaced_hex(key_digest(s.block->key)));
    }
  }
  if (a.json) {
    nlohmann::ordered_json out{
        {"file", a.file}, {"signed_length", view->signed_data.size()}, {"blocks", blocks}};
    fmt::print("{}\n", out.dump(2));
  }
  return kExitOk;
}

struct DigestArgs {
  std::string key, out;
};

int run_digest(const DigestArgs& a) {
  auto key = read_key(a.key);
  if (!key) return fail(key.error());
  fmt::print("Writing the public key digest of {} to {}.\n", a.key, a.out);
  auto d = key_digest(*key);
  if (auto w = write_file_atomic(a.out, ByteView(d), Durability::artifact); !w) return fail(w.error());
  return kExitOk;
}

void register_sign_commands(CLI::App& app) {
  auto* sign =
      app.add_subcommand("sign", "Secure Boot v2 signing keys, signatures and key digests (espsecure)");
  sign->require_subcommand(1);

  add_passthrough(*sign, "key",
                  "Generate a signing key: --scheme rsa3072|ecdsa192|ecdsa256|ecdsa384 -o KEY.pem",
                  kSignBinary, {"sign", "key"});
  add_passthrough(*sign, "sign",
                  "Sign an image: pad to 4 KiB, append the signature sector (up to 3 blocks; --append keeps "
                  "existing ones)",
                  kSignBinary, {"sign", "sign"});
  add_passthrough(*sign, "pubkey", "Write the public key of a private key: KEY.pem -o PUB.pem", kSignBinary,
                  {"sign", "pubkey"});

  auto va = std::make_shared<VerifyArgs>();
  auto* verify = sign->add_subcommand(
      "verify", "Check a signed image against a key: which signature block matched, or why none did");
  verify->add_option("--key,--keyfile", va->key, "Private or public key, PEM")->required();
  verify->add_option("file", va->file, "Signed image")->required();
  verify->add_flag("--json", va->json, "Print the result per block as JSON");
  verify->callback([va] { set_exit_code(run_verify(*va)); });

  auto ia = std::make_shared<InfoArgs>();
  auto* info =
      sign->add_subcommand("info", "List the signature blocks and their key digests (signature_info_v2)");
  info->add_option("file", ia->file, "Signed image")->required();
  info->add_flag("--json", ia->json, "Print as JSON");
  info->callback([ia] { set_exit_code(run_info(*ia)); });

  auto da = std::make_shared<DigestArgs>();
  auto* digest = sign->add_subcommand(
      "digest", "Write the 32-byte eFuse key digest of a public or private key (digest_sbv2_public_key)");
  digest->add_option("key", da->key, "Public or private key, PEM")->required();
  digest->add_option("-o,--output", da->out, "Output file (raw 32 bytes)")->required();
  digest->callback([da] { set_exit_code(run_digest(*da)); });
}

}  // namespace

OTA32_REGISTER_COMMANDS(35, register_sign_commands, "sign");

}  // namespace ota32::cli
