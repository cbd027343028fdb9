// ota32 device new | flash | boot | run: the virtual ESP32 (src/device, src/boot).
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <optional>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "core/numbers.h"
#include "device/esptool_args.h"
#include "device/esptool_cmds.h"
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
    std::string build;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Directory to create (must not exist, or be empty)")->required();
  cmd->add_option("--build", opts->build,
                  "An ESP-IDF build directory: the chip and flash size come from its flasher_args.json");
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
  cmd->add_flag("--signed-apps", opts->o.bootloader.signed_apps_no_secure_boot,
                "Firmware built with CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT: an OTA image must carry a "
                "Secure Boot v2 signature made with the running app's key");
  cmd->callback([opts, cmd] {
    auto& o = opts->o;
    if (!opts->build.empty()) {
      auto b = read_flasher_args(opts->build);
      if (!b) return set_exit_code(fail(b.error()));
      const std::string where = (std::filesystem::path(opts->build) / "flasher_args.json").string();
      if (cmd->count("--chip") && normalise_chip_name(o.chip) != normalise_chip_name(b->chip)) {
        return set_exit_code(fail(fmt::format("--chip {}: {} is a build for {}", o.chip, where, b->chip)));
      }
      o.chip = b->chip;
      if (b->flash_size != "detect" && b->flash_size != "keep") {
        auto size = parse_number(b->flash_size, "flash_settings.flash_size");
        if (!size) return set_exit_code(fail(size.error().with_context(where)));
        if (cmd->count("--flash-size") && *size != opts->flash_size) {
          return set_exit_code(fail(fmt::format("--flash-size {}: {} says flash_size {}",
                                                format_size(opts->flash_size), where, b->flash_size)));
        }
        opts->flash_size = *size;
      }
    }
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

constexpr const char* kEsptoolFooter = R"(Arguments are esptool.py v4.8.1's, as `idf.py flash` passes them:
  global options  --chip/-c CHIP, -p/--port PORT (noted, not opened), -b/--baud N (the modelled
                  transfer time follows it), --before, --after hard_reset|soft_reset|no_reset|no_reset_stub
  write_flash     [--flash_mode/-fm M] [--flash_freq/-ff F] [--flash_size/-fs S] [-z/-u] [-e] [--force]
                  ADDR FILE [ADDR FILE ...]
  read_flash      [-p/--no-progress] ADDR SIZE|ALL FILE
  erase_flash     [--force]
  erase_region    ADDR SIZE
  merge_bin       -o FILE [-f raw] [-t OFFSET] [--fill-flash-size SIZE] [-fm/-ff/-fs] ADDR FILE ...
  image_info      [--version 1|2] FILE | ADDR (an image in the device's flash at ADDR)
  @FILE           the arguments in FILE (build/flash_args, flash_app_args, flash_bootloader_args); file
                  names in it are found relative to the working directory, else beside FILE)";

void print_note(const std::string& l) { std::fprintf(stderr, "ota32: note: %s\n", l.c_str()); }

// Runs parsed esptool arguments on the device in `dir` (empty: no device, for merge_bin / image_info).
int run_esptool_on(const std::string& dir, const EsptoolArgs& a, const std::vector<std::string>& tokens) {
  std::unique_ptr<VirtualDevice> dev;
  if (!dir.empty()) {
    auto d = VirtualDevice::open(dir);
    if (!d) return fail(d.error());
    dev = std::move(*d);
  }
  EsptoolContext ctx;
  ctx.device = dev.get();
  ctx.device_name = dir;
  ctx.arg_files = arg_file_names(tokens);
  ctx.out = print_line;
  ctx.note = print_note;
  auto r = run_esptool(a, ctx);
  if (!r) return fail(r.error());
  return kExitOk;
}

// `--build DIR` / `--build=DIR` taken out of the tokens (the only option of `device flash` esptool lacks).
std::optional<std::string> take_build_option(std::vector<std::string>& t, std::string& error) {
  std::optional<std::string> build;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == "--build" || t[i].rfind("--build=", 0) == 0) {
      if (t[i] == "--build") {
        if (i + 1 >= t.size()) {
          error = "--build: expected a build directory";
          return std::nullopt;
        }
        build = t[i + 1];
        t.erase(t.begin() + i, t.begin() + i + 2);
      } else {
        build = t[i].substr(8);
        t.erase(t.begin() + i);
      }
      --i;
    }
  }
  return build;
}

void add_flash(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "flash",
      "Write files to the device's flash like `esptool.py write_flash ADDR FILE ...`, or everything an "
      "ESP-IDF "
      "build directory holds (`idf.py flash`): ota32 device flash DIR --build BUILD_DIR");
  cmd->prefix_command();
  cmd->footer(std::string("Usage: ota32 device flash DIR [--build BUILD_DIR] [esptool options] [write_flash] "
                          "[ADDR FILE ...] [@FILE]\n") +
              kEsptoolFooter);
  cmd->callback([cmd] {
    std::vector<std::string> t = cmd->remaining();
    if (t.empty() || t[0].empty() || t[0][0] == '-' || t[0][0] == '@') {
      return set_exit_code(usage_error("ota32 device flash", "DIR is required (the device directory first)"));
    }
    const std::string dir = t.front();
    t.erase(t.begin());
    std::string err;
    auto build = take_build_option(t, err);
    if (!err.empty()) return set_exit_code(usage_error("ota32 device flash", err));
    auto a = parse_esptool_args(t, "write_flash");
    if (!a) return set_exit_code(fail(a.error()));
    if (a->command != "write_flash") {
      return set_exit_code(
          fail(fmt::format("device flash runs write_flash, not {} (use `ota32 device esptool "
                           "{} {} ...`)",
                           a->command, dir, a->command)));
    }
    if (build) {
      if (!a->pairs.empty()) {
        return set_exit_code(
            fail("--build flashes what flasher_args.json lists: give no ADDR FILE pairs with it"));
      }
      auto b = read_flasher_args(*build);
      if (!b) return set_exit_code(fail(b.error()));
      // What idf.py passes: the build's settings, unless given here.
      const bool given_after = std::any_of(t.begin(), t.end(), [](const std::string& x) {
        return x == "--after" || x == "-a" || x.rfind("--after=", 0) == 0;
      });
      const bool given_baud = std::any_of(t.begin(), t.end(), [](const std::string& x) {
        return x == "-b" || x == "--baud" || x.rfind("--baud=", 0) == 0;
      });
      if (a->chip == "auto") a->chip = b->chip;
      if (!given_after) a->after = a->write.after = b->after;
      if (std::none_of(t.begin(), t.end(), [](const std::string& x) { return x.rfind("--before", 0) == 0; }))
        a->before = b->before;
      if (!given_baud) a->baud = a->write.baud = 460800;  // idf.py's default (ESPBAUD)
      if (a->write.flash_mode == "keep") a->write.flash_mode = b->flash_mode;
      if (a->write.flash_freq == "keep") a->write.flash_freq = b->flash_freq;
      if (a->write.flash_size == "keep") a->write.flash_size = b->flash_size;
      for (const auto& f : b->files) a->pairs.emplace_back(format_hex(f.addr), f.path.string());
      // The command line idf.py runs (run_esptool.cmake prints it, as in the seed's log).
      std::vector<std::string> line = {"--chip", a->chip};
      if (a->port) line.insert(line.end(), {"-p", *a->port});
      line.insert(line.end(), {"-b", std::to_string(a->baud), "--before=" + a->before, "--after=" + a->after,
                               "write_flash", "--flash_mode", a->write.flash_mode, "--flash_freq",
                               a->write.flash_freq, "--flash_size", a->write.flash_size});
      for (const auto& f : b->files) line.insert(line.end(), {format_hex(f.addr), f.name});
      a->expanded = std::move(line);
    }
    set_exit_code(run_esptool_on(dir, *a, t));
  });
}

void add_esptool(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "esptool",
      "Run an esptool.py command line on the device: ota32 device esptool DIR <what follows esptool.py>");
  cmd->prefix_command();
  cmd->footer(
      std::string("Usage: ota32 device esptool [DIR] [global options] COMMAND [arguments] (DIR may be "
                  "left out for merge_bin and image_info FILE)\n") +
      kEsptoolFooter);
  cmd->callback([cmd] {
    std::vector<std::string> t = cmd->remaining();
    std::string dir;
    if (!t.empty() && !t[0].empty() && t[0][0] != '-' && t[0][0] != '@') {
      if (!is_esptool_command(t[0])) {
        dir = t.front();
        t.erase(t.begin());
      }
    }
    auto a = parse_esptool_args(t);
    if (!a) return set_exit_code(fail(a.error()));
    set_exit_code(run_esptool_on(dir, *a, t));
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

void add_set(CLI::App& device) {
  auto* cmd = device.add_subcommand(
      "set", "Change the device's settings in device.json: ota32 device set DIR key=value [key=value ...]");
  struct Opts {
    std::string dir;
    std::vector<std::string> settings;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Device directory")->required();
  cmd->add_option("KEY=VALUE", opts->settings,
                  "Settings: " + device_setting_keys() + " (an empty value clears)")
      ->required();
  cmd->footer(
      "Examples:\n  ota32 device set dev ota_url=https://127.0.0.1:8070/simple_ota.bin "
      "ca_cert=data/ca_cert.pem\n"
      "  ota32 device set dev update_server=https://127.0.0.1:8070 self_test_fails=3,4 rollback=true\n"
      "ca_cert is a path from here; device.json keeps it relative to DIR. Nothing is written unless every\n"
      "setting is valid.");
  cmd->callback([opts] {
    auto dev = VirtualDevice::open(opts->dir);
    if (!dev) return set_exit_code(fail(dev.error()));
    DeviceConfig c = (*dev)->config();
    std::vector<std::string> fields;
    for (const auto& kv : opts->settings) {
      auto eq = kv.find('=');
      if (eq == std::string::npos || eq == 0) {
        return set_exit_code(fail(fmt::format("'{}': give key=value (keys: {})", kv, device_setting_keys())));
      }
      auto f = apply_device_setting(c, kv.substr(0, eq), kv.substr(eq + 1), opts->dir);
      if (!f) return set_exit_code(fail(f.error()));
      fields.push_back(*f);
    }
    auto r = (*dev)->set_config(c);
    if (!r) return set_exit_code(fail(r.error()));
    // Read back through the agent's own checks, so that what `device run` will refuse is said now.
    auto agent = ota_settings(**dev);
    if (!agent) return set_exit_code(fail(agent.error()));
    const auto j = to_json((*dev)->config());
    for (const auto& f : fields) {
      auto dot = f.find('.');
      const auto& group = j.at(f.substr(0, dot));
      const auto it = group.find(f.substr(dot + 1));
      print_line(fmt::format("{}: {} = {}", (std::filesystem::path(opts->dir) / "device.json").string(), f,
                             it == group.end()
                                 ? std::string("(unset)")
                                 : it->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
    }
  });
}

void register_device(CLI::App& app) {
  auto* device = app.add_subcommand("device", "The virtual ESP32: new, flash, esptool, boot, run, set");
  device->require_subcommand(1);
  add_new(*device);
  add_flash(*device);
  add_esptool(*device);
  add_boot(*device);
  add_run(*device);
  add_set(*device);
}

}  // namespace

OTA32_REGISTER_COMMANDS(60, register_device, "device");

}  // namespace ota32::cli
