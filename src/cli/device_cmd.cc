// ota32 device new | flash | boot | run: the virtual ESP32 (src/device, src/boot).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <optional>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "core/numbers.h"
#include "device/ota_app_model.h"
#include "device/virtual_device.h"

namespace ota32::cli {
namespace {

void print_line(const std::string& l) {
  out(l);
  out("\n");
}

void add_new(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "new", "Create a virtual device directory: erased flash.bin, efuse.json, device.json");
  struct Opts {
    std::string dir;
    DeviceNewOptions o;
    uint64_t flash_size = 4u << 20;
    std::string mac, rev;
    uint64_t secure_version = 0;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Directory to create (must not exist, or be empty)")->required();
  cmd->add_option("--chip", opts->o.chip, "Chip: esp32, esp32s2, esp32c3, esp32s3, ... (default esp32)");
  add_number_option(cmd, "--flash-size", opts->flash_size,
                    "Flash size: 4MB (default), 2MB, 16MB, 0x400000, ...");
  cmd->add_option("--mac", opts->mac, "Base MAC address in eFuse (default: 24:0a:c4 + 3 random bytes)");
  cmd->add_option("--chip-revision", opts->rev, "Chip revision, e.g. v1.0 (default: a typical one per chip)");
  add_number_option(cmd, "--secure-version", opts->secure_version,
                    "Anti-rollback eFuse secure version (default 0)");
  cmd->add_flag("--rollback", opts->o.bootloader.rollback,
                "Bootloader built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE");
  cmd->add_flag("--anti-rollback", opts->o.bootloader.anti_rollback,
                "Bootloader built with CONFIG_BOOTLOADER_APP_ANTI_ROLLBACK (implies --rollback)");
  cmd->callback([opts] {
    auto& o = opts->o;
    if (opts->flash_size > UINT32_MAX) return set_exit_code(fail("--flash-size: too large"));
    o.flash_size = static_cast<uint32_t>(opts->flash_size);
    if (!opts->mac.empty()) {
      auto mac = parse_mac(opts->mac);
      if (!mac) return set_exit_code(fail(mac.error().with_context("--mac")));
      o.mac = *mac;
    }
    if (!opts->rev.empty()) {
      auto r = parse_chip_revision(opts->rev);
      if (!r) return set_exit_code(fail(r.error().with_context("--chip-revision")));
      o.chip_revision = *r;
    }
    if (opts->secure_version > 32) return set_exit_code(fail("--secure-version: at most 32"));
    o.secure_version = static_cast<uint32_t>(opts->secure_version);
    if (o.bootloader.anti_rollback) o.bootloader.rollback = true;
    auto r = VirtualDevice::create(opts->dir, o);
    if (!r) return set_exit_code(fail(r.error()));
    auto dev = VirtualDevice::open(opts->dir);
    if (!dev) return set_exit_code(fail(dev.error()));
    const auto& d = **dev;
    print_out("Created {}: {} (revision {}), {} flash, MAC {}, bootloader at {:#x}\n", opts->dir,
              d.chip().display_name, chip_revision_text(d.efuse().chip_revision),
              format_size(d.config().flash_size), d.efuse().mac, d.chip().bootloader_offset);
  });
}

void add_flash(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "flash", "Write files to the device's flash like `esptool.py write_flash ADDR FILE [ADDR FILE ...]`");
  struct Opts {
    std::string dir;
    std::vector<std::string> pairs;
    WriteFlashOptions o;
    bool no_compress = false;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Device directory")->required();
  cmd->add_option("ADDR_FILE", opts->pairs, "Address and file pairs: 0x1000 bootloader.bin 0x8000 ...")
      ->required();
  cmd->add_option("--flash-mode,--flash_mode,-m", opts->o.flash_mode,
                  "qio, qout, dio, dout, or keep (default) : patched into the bootloader header");
  cmd->add_option("--flash-freq,--flash_freq,-f", opts->o.flash_freq, "40m, 80m, ... or keep (default)");
  cmd->add_option("--flash-size,--flash_size,-s", opts->o.flash_size, "4MB, ..., detect, or keep (default)");
  cmd->add_flag("--no-compress,-u", opts->no_compress, "Send uncompressed (as esptool -u)");
  cmd->add_flag("--force", opts->o.force, "Skip the chip id / revision checks of images");
  cmd->add_flag("--erase-all,-e", opts->o.erase_all, "Erase the whole flash first");
  cmd->add_option("--after", opts->o.after, "hard_reset (default), soft_reset, no_reset, no_reset_stub");
  cmd->callback([opts] {
    auto& p = opts->pairs;
    if (p.size() % 2 != 0) {
      return set_exit_code(
          fail(fmt::format("ADDR_FILE: '{}' has no file after it (give ADDR FILE pairs)", p.back())));
    }
    std::vector<FlashFile> files;
    for (size_t i = 0; i < p.size(); i += 2) {
      auto addr = parse_u32(p[i], "address");
      if (!addr) return set_exit_code(fail(addr.error()));
      auto data = read_input(p[i + 1], kImageInput);
      if (!data) return set_exit_code(fail(data.error()));
      files.push_back({*addr, p[i + 1], std::move(*data)});
    }
    opts->o.compress = !opts->no_compress;
    auto dev = VirtualDevice::open(opts->dir);
    if (!dev) return set_exit_code(fail(dev.error()));
    auto r = (*dev)->write_flash(std::move(files), opts->o, print_line);
    if (!r) return set_exit_code(fail(r.error()));
  });
}

nlohmann::json boot_json(const BootResult& b) {
  nlohmann::json j;
  j["booted"] = b.app.has_value();
  if (b.app) {
    j["partition"] = b.app->partition.name;
    j["offset"] = b.app->partition.offset;
    j["index"] = b.app->index;
    if (b.app->desc) {
      j["project_name"] = b.app->desc->project_name;
      j["version"] = b.app->desc->version;
      j["secure_version"] = b.app->desc->secure_version;
      j["idf_ver"] = b.app->desc->idf_ver;
    }
  } else {
    j["failure"] = b.failure;
  }
  j["efuse_secure_version"] = b.efuse.secure_version;
  j["log"] = nlohmann::json::array();
  for (const auto& l : b.log) j["log"].push_back(format_log_line(l));
  return j;
}

void print_boot(const BootResult& b) {
  for (const auto& l : b.log) print_line(format_log_line(l));
}

void add_boot(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "boot", "Power on and run the 2nd-stage bootloader on the flash contents; print the boot log");
  struct Opts {
    std::string dir;
    bool json = false;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Device directory")->required();
  cmd->add_flag("--json", opts->json, "Print the outcome and the log as JSON");
  cmd->callback([opts] {
    auto dev = VirtualDevice::open(opts->dir);
    if (!dev) return set_exit_code(fail(dev.error()));
    auto boot = (*dev)->power_on();
    if (!boot) return set_exit_code(fail(boot.error()));
    if (opts->json) {
      print_line(boot_json(*boot).dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      print_boot(*boot);
    }
    if (!boot->app) return set_exit_code(fail(fmt::format("{}: did not boot: {}", opts->dir, boot->failure)));
  });
}

void add_run(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "run", "Power on, boot, run the app model (device.json \"app\"), and boot again when it reboots");
  struct Opts {
    std::string dir;
    int max_boots = 8;
    bool json = false;
    std::optional<std::string> expect_version;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Device directory")->required();
  cmd->add_option("--max-boots", opts->max_boots, "Stop after this many boots (default 8)")
      ->check(CLI::Range(1, 1000));
  cmd->add_flag("--json", opts->json, "Print every boot's outcome and log as JSON");
  cmd->add_option("--expect-version", opts->expect_version,
                  "Exit 1 unless the app running at the end has this version (esp_app_desc_t.version): "
                  "a CI check that an OTA installed, or that a rollback happened");
  cmd->callback([opts] {
    auto dev = VirtualDevice::open(opts->dir);
    if (!dev) return set_exit_code(fail(dev.error()));
    // device.json configures the OTA agent (app.ota_url / app.update_server): it is the firmware then.
    auto agent = ota_settings(**dev);
    if (!agent) return set_exit_code(fail(agent.error()));
    if (agent->enabled()) (*dev)->set_app_model(std::make_shared<OtaAppModel>());
    auto run = (*dev)->run(opts->max_boots);
    if (!run) return set_exit_code(fail(run.error()));
    if (opts->json) {
      nlohmann::json j = nlohmann::json::array();
      for (const auto& b : run->boots) j.push_back(boot_json(b));
      print_line(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
      for (size_t i = 0; i < run->boots.size(); ++i) {
        if (i > 0) print_line("");
        print_boot(run->boots[i]);
      }
    }
    if (!run->booted) {
      return set_exit_code(fail(fmt::format("{}: did not boot: {}", opts->dir, run->boots.back().failure)));
    }
    // A real device whose OTA failed keeps running its firmware, so the run itself succeeded; CI asks here
    // whether it ended on the version it expected.
    if (opts->expect_version) {
      const auto& app = *run->boots.back().app;
      std::string running = app.desc ? app.desc->version : std::string();
      if (running != *opts->expect_version) {
        return set_exit_code(fail(fmt::format("{}: runs version '{}' from {}, expected '{}'", opts->dir,
                                              running, app.partition.name, *opts->expect_version)));
      }
    }
  });
}

void register_device(CLI::App& app) {
  auto* device = app.add_subcommand("device", "The virtual ESP32: new, flash, boot, run");
  device->require_subcommand(1);
  add_new(*device);
  add_flash(*device);
  add_boot(*device);
  add_run(*device);
}

}  // namespace

OTA32_REGISTER_COMMANDS(60, register_device, "device");

}  // namespace ota32::cli
