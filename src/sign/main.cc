// ota32-sign: the OpenSSL half of `ota32 sign` (key, sign, pubkey), exec'd by ota32 so that its format and
// device commands never load libcrypto (design.md: start-up cost). espsecure.py --version 2's job and words.
#include <sys/stat.h>

#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/cli_util.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "format/secure_boot_v2.h"
#include "sign/host_signer.h"

namespace {

using namespace ota32;
using ota32::cli::fail;
using ota32::cli::kExitOk;
using ota32::cli::kImageInput;
using ota32::cli::kKeyInput;
using ota32::cli::read_input;

namespace fs = std::filesystem;

bool same_file(const std::string& a, const std::string& b) {
  std::error_code ec;
  return fs::equivalent(a, b, ec) || fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

// A private key is written 0600 (umask 077 for the atomic write), never over an existing file.
Result<void> write_private_key(const std::string& path, std::string_view pem) {
  std::error_code ec;
  if (fs::exists(path, ec))
    return Error(ErrorCode::already_exists,
                 fmt::format("{}: already exists; not overwriting a signing key", path));
  mode_t old = ::umask(077);
  auto w = write_file_atomic(path, pem, Durability::synced);
  ::umask(old);
  return w;
}

struct KeyArgs {
  std::string scheme = "rsa3072", out;
};

int run_key(const KeyArgs& a) {
  auto scheme = parse_scheme(a.scheme);
  if (!scheme)
    return cli::usage_error("ota32 sign key",
                            "--scheme: " + a.scheme + " not in {rsa3072,ecdsa192,ecdsa256,ecdsa384}");
  auto pem = generate_signing_key(*scheme);
  if (!pem) return fail(pem.error());
  if (auto w = write_private_key(a.out, *pem); !w) return fail(w.error());
  fmt::print("{} private key in PEM format written to {}\n", scheme_key_description(*scheme), a.out);
  return kExitOk;
}

struct SignArgs {
  std::vector<std::string> keys, pub_keys, signatures;
  std::string in, out;
  bool append = false;
};

int run_sign(const SignArgs& a) {
  if (same_file(a.in, a.out))
    return fail(fmt::format("the input \"{}\" and output \"{}\" should not be the same", a.in, a.out));
  for (const auto& k : a.keys)
    if (same_file(k, a.out)) return fail(fmt::format("the output \"{}\" is the key file {}", a.out, k));
  if (a.pub_keys.size() != a.signatures.size()) {
    return cli::usage_error(
        "ota32 sign sign",
        fmt::format("number of public keys ({}) not equal to the number of signatures ({})",
                    a.pub_keys.size(), a.signatures.size()));
  }
  if (a.keys.empty() == a.pub_keys.empty())
    return cli::usage_error("ota32 sign sign", "give either --key (up to 3) or --pub-key with --signature");
  std::vector<BlockSigner> signers;
  for (const auto& k : a.keys) {
    auto pem = read_input(k, kKeyInput);
    if (!pem) return fail(pem.error());
    auto s = load_signing_key(*pem);
    if (!s) return fail(s.error().with_context(k));
    signers.push_back(std::move(*s));
  }
  for (size_t i = 0; i < a.pub_keys.size(); ++i) {
    auto pem = read_input(a.pub_keys[i], kKeyInput);
    if (!pem) return fail(pem.error());
    auto sig = read_input(a.signatures[i], kKeyInput);
    if (!sig) return fail(sig.error());
    auto s = precomputed_signer(*pem, std::move(*sig));
    if (!s) return fail(s.error().with_context(a.signatures[i]));
    signers.push_back(std::move(*s));
  }
  auto input = read_input(a.in, kImageInput);
  if (!input) return fail(input.error());
  SignRequest req{.append = a.append, .precomputed = !a.pub_keys.empty()};
  auto r = sign_image(*input, signers, req);
  if (!r) return fail(r.error().with_context(a.in));
  if (r->padded_by)
    fmt::print("Padding data contents by {} bytes so signature sector aligns at sector boundary\n",
               r->padded_by);
  if (r->append_discarded) {
    fmt::print(
        "No valid signature blocks found. Discarding --append-signature and proceeding to sign the image "
        "afresh.\n");
  }
  if (r->kept_blocks)
    fmt::print("{} valid signature block(s) already present in the signature sector.\n", r->kept_blocks);
  if (r->ignored_valid_blocks) {
    fmt::print(stderr,
               "warning: {} already ends in a signature sector with {} valid block(s); it is signed as data "
               "(use --append to add a block to that sector)\n",
               a.in, r->ignored_valid_blocks);
  }
  if (req.precomputed) fmt::print("Pre-calculated signatures found\n");
  fmt::print("{} signing key(s) found.\n", signers.size());
  if (auto w = write_file_atomic(a.out, ByteView(r->output), Durability::artifact); !w)
    return fail(w.error());
  fmt::print("Signed {} bytes of data from {}. Signature sector now has {} signature blocks.\n",
             r->signed_length, a.in, r->total_blocks);
  return kExitOk;
}

struct PubkeyArgs {
  std::string key, out;
};

int run_pubkey(const PubkeyArgs& a) {
  auto pem = read_input(a.key, kKeyInput);
  if (!pem) return fail(pem.error());
  auto pub = public_key_pem(*pem);
  if (!pub) return fail(pub.error().with_context(a.key));
  if (auto w = write_file_atomic(a.out, *pub, Durability::artifact); !w) return fail(w.error());
  fmt::print("Public key of {} written to {}\n", a.key, a.out);
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ota32-sign: Secure Boot v2 keys and signatures (run as `ota32 sign key|sign|pubkey`)",
               "ota32"};
  app.set_version_flag("--version", "ota32-sign 0.1.0");
  app.require_subcommand(1);
  auto* sign = app.add_subcommand("sign", "Secure Boot v2 signing keys and signatures");
  sign->require_subcommand(1);

  auto ka = std::make_shared<KeyArgs>();
  auto* key =
      sign->add_subcommand("key", "Generate a Secure Boot v2 signing key (espsecure generate_signing_key)");
  key->add_option("--scheme", ka->scheme, "rsa3072 (default), ecdsa192, ecdsa256 or ecdsa384")
      ->check(CLI::IsMember({"rsa3072", "ecdsa192", "ecdsa256", "ecdsa384"}));
  key->add_option("-o,--output", ka->out, "Private key file to write (PEM, mode 0600; never overwritten)")
      ->required();
  key->callback([ka] { cli::set_exit_code(run_key(*ka)); });

  auto sa = std::make_shared<SignArgs>();
  auto* sg = sign->add_subcommand(
      "sign",
      "Sign an image (espsecure sign_data --version 2): pad with 0xFF to 4 KiB, append the signature sector");
  sg->add_option("--key,--keyfile", sa->keys, "Private key, PEM; repeat for up to 3 blocks")
      ->allow_extra_args(false);
  sg->add_option("--pub-key", sa->pub_keys, "Public key of a signature made elsewhere (with --signature)")
      ->allow_extra_args(false);
  sg->add_option(
        "--signature", sa->signatures,
        "That signature: RSA raw 384 bytes big-endian, ECDSA DER; over the SHA-256 (P-384: SHA-384) of "
        "the 4 KiB-aligned input")
      ->allow_extra_args(false);
  sg->add_flag("-a,--append,--append-signatures", sa->append,
               "Keep the valid blocks of the input's signature sector and add the new ones after them");
  sg->add_option("-o,--output", sa->out, "Signed image to write")->required();
  sg->add_option("input", sa->in, "Image to sign")->required();
  sg->callback([sa] { cli::set_exit_code(run_sign(*sa)); });

  auto pa = std::make_shared<PubkeyArgs>();
  auto* pub =
      sign->add_subcommand("pubkey", "Write the public key of a private key (espsecure extract_public_key)");
  pub->add_option("key", pa->key, "Private key, PEM")->required();
  pub->add_option("-o,--output", pa->out, "Public key file to write (PEM)")->required();
  pub->callback([pa] { cli::set_exit_code(run_pubkey(*pa)); });

  if (auto early = cli::parse_command_line(app, argc, argv)) return *early;
  return cli::exit_code();
}
