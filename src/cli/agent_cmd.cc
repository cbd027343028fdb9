// ota32 device ota DIR URL --ca PEM: one esp_https_ota() on the virtual device's running firmware (the OTA
// agent, src/agent + src/device/ota_app_model). Registered into the `device` group.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "core/numbers.h"
#include "device/ota_app_model.h"
#include "device/virtual_device.h"

namespace ota32::cli {
namespace {

void add_ota(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "ota",
      "Boot, then download URL into the next OTA slot over HTTPS (esp_https_ota), verify it and select it "
      "for the next boot; an interrupted download resumes with Range");
  struct Opts {
    std::string dir, url, ca;
    bool skip_cn = false, force = false, json = false;
    uint64_t timeout_ms = 5000, stop_after = 0;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Device directory")->required();
  cmd->add_option("URL", opts->url, "Firmware URL, e.g. https://127.0.0.1:8070/simple_ota.bin")->required();
  cmd->add_option(
      "--ca", opts->ca,
      "PEM CA certificate the server's certificate must chain to (ca_cert.pem); default: device.json's "
      "app.ca_cert (ota32 device set DIR ca_cert=FILE)");
  cmd->add_flag("--skip-cert-common-name-check", opts->skip_cn,
                "Do not check the certificate's host name / IP (esp-tls skip_cert_common_name_check)");
  cmd->add_flag("--force", opts->force, "Install even if the image has the running version");
  add_number_option(cmd, "--timeout", opts->timeout_ms, "Connect / read timeout in ms (default 5000)");
  add_number_option(cmd, "--stop-after", opts->stop_after,
                    "Cut power after this many image bytes are in flash (to show resume after reboot)");
  cmd->add_flag("--json", opts->json, "Print the outcome and the log as JSON");
  cmd->callback([opts] {
    if (opts->timeout_ms == 0 || opts->timeout_ms > 600000) {
      return set_exit_code(fail("--timeout: between 1 and 600000 ms"));
    }
    DirectOtaOptions o;
    o.url = opts->url;
    auto dev = VirtualDevice::open(opts->dir);
    if (!dev) return set_exit_code(fail(dev.error()));
    if (!opts->ca.empty()) {
      auto pem = read_input(opts->ca, kPemInput);
      if (!pem) return set_exit_code(fail(pem.error().with_context("--ca")));
      o.ca_pem = std::string(as_chars(*pem));
      o.ca_name = opts->ca;
    } else {
      // Without --ca: the CA the firmware was built with (device.json app.ca_cert, `device set DIR
      // ca_cert=`).
      auto s = ota_settings(**dev);
      if (!s) return set_exit_code(fail(s.error()));
      if (!s->ca_cert.empty()) {
        auto pem = read_text_file(s->ca_cert);
        if (!pem) return set_exit_code(fail(pem.error().with_context("device.json app.ca_cert")));
        o.ca_pem = *pem;
        o.ca_name = s->ca_cert.string();
      }
    }
    o.skip_cert_common_name_check = opts->skip_cn;
    o.allow_same_version = opts->force;
    o.timeout_ms = static_cast<uint32_t>(opts->timeout_ms);
    o.stop_after = opts->stop_after;
    auto boot = (*dev)->power_on();
    if (!boot) return set_exit_code(fail(boot.error()));
    if (!boot->app) return set_exit_code(fail(fmt::format("{}: did not boot: {}", opts->dir, boot->failure)));
    BootLog log(boot->log.empty() ? 0 : boot->log.back().ms);
    auto r = run_device_ota(**dev, *boot, o, log);
    if (opts->json) {
      nlohmann::json j;
      j["ok"] = static_cast<bool>(r);
      j["running"] = boot->app->partition.name;
      if (r) {
        j["partition"] = r->slot.name;
        j["offset"] = r->slot.offset;
        j["size"] = r->image.size;
        j["sha256"] = to_hex(r->image.sha256);
        if (r->image.desc) j["version"] = r->image.desc->version;
        j["connections"] = r->connections;
        j["resumed_from"] = r->resumed_from;
      } else {
        j["error"] = r.error().message();
        j["code"] = std::string(to_string(r.error().code()));
      }
      j["log"] = nlohmann::json::array();
      for (const auto& l : log.lines()) j["log"].push_back(format_log_line(l));
      out(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    } else {
      for (const auto& l : log.lines()) out(format_log_line(l) + "\n");
    }
    if (!r) return set_exit_code(fail(r.error()));
    if (!opts->json) {
      print_out("OTA done: {} at 0x{:x} now holds {} {} ({} bytes, sha256 {}); the next boot starts it\n",
                r->slot.name, r->slot.offset, r->image.desc ? r->image.desc->project_name : "an app",
                r->image.desc ? r->image.desc->version : "", r->image.size, to_hex(r->image.sha256));
    }
  });
}

void register_agent(CLI::App& app) {
  // The device group (device_cmd.cc) registers first; `ota` joins it.
  for (auto* sub : app.get_subcommands([](CLI::App* s) { return s->get_name() == "device"; })) add_ota(*sub);
}

}  // namespace

OTA32_REGISTER_COMMANDS(61, register_agent, "device");

}  // namespace ota32::cli
