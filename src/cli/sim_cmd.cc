// ota32 device powercut-sweep: the power-cut sweep (src/sim) on a copy of a virtual device's state.
#include <fmt/format.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cstdio>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "device/virtual_device.h"
#include "sim/powercut_sweep.h"

namespace ota32::cli {
namespace {

void add_powercut_sweep(CLI::App& device) {
  std::string scenarios;
  std::vector<std::string> names;
  for (sim::Scenario s : sim::all_scenarios()) {
    names.emplace_back(sim::to_string(s));
    scenarios += fmt::format("\n  {:<13} {}", sim::to_string(s), sim::describe(s));
  }
  auto* cmd = device.add_subcommand(
      "powercut-sweep",
      "Cut the power at every flash operation of a scenario on a copy of the device (the device is not "
      "changed) and check that it survives every cut. Scenarios:" +
          scenarios);
  struct Opts {
    std::string dir, image, scenario = "ota", torn = "random";
    uint64_t multi = 0, seed = 0, sample = 0;
    bool json = false;
  };
  auto opts = std::make_shared<Opts>();
  cmd->add_option("DIR", opts->dir, "Device directory (ota32 device new)")->required();
  cmd->add_option("--image", opts->image, "The new app image the scenario installs")->required();
  cmd->add_option("--scenario", opts->scenario,
                  "ota (default), ota-rollback, rollback, mark-valid, "
                  "write-flash, resume")
      ->check(CLI::IsMember(names));
  cmd->add_option("--torn", opts->torn,
                  "What a cut leaves of the operation: random (default), not-started, completed")
      ->check(CLI::IsMember({"random", "not-started", "completed"}));
  add_number_option(cmd, "--multi", opts->multi,
                    "Also K random pairs of cuts: a second cut during the recovery from the first");
  add_number_option(cmd, "--seed", opts->seed, "Seed of the torn bits and of the pairs (default 0)");
  add_number_option(cmd, "--sample", opts->sample, "Only N cut points, evenly spread (default: every one)");
  cmd->add_flag("--json", opts->json, "Print the report as JSON");
  cmd->callback([opts] {
    auto scenario = sim::parse_scenario(opts->scenario);
    if (!scenario) return set_exit_code(fail(scenario.error().with_context("--scenario")));
    auto torn = parse_torn_mode(opts->torn);
    if (!torn) return set_exit_code(fail(torn.error().with_context("--torn")));
    auto dev = VirtualDevice::open(opts->dir);
    if (!dev) return set_exit_code(fail(dev.error()));
    auto image = read_input(opts->image, kImageInput);
    if (!image) return set_exit_code(fail(image.error()));
    sim::DeviceState state{(*dev)->config(), (*dev)->efuse(), (*dev)->snapshot(), std::nullopt};
    sim::SweepOptions o;
    o.scenario = *scenario;
    o.torn = *torn;
    o.seed = opts->seed;
    o.pairs = opts->multi;
    o.sample = opts->sample;
    const bool tty = isatty(fileno(stderr)) != 0;
    if (tty) {
      o.on_progress = [](const sim::SweepProgress& p) {
        std::fprintf(stderr, "\rcut %llu of %llu (%llu failed)", static_cast<unsigned long long>(p.done),
                     static_cast<unsigned long long>(p.total), static_cast<unsigned long long>(p.failed));
        if (p.done == p.total) std::fputc('\n', stderr);
      };
    }
    auto r = sim::run_powercut_sweep(state, *image, o);
    if (!r) return set_exit_code(fail(r.error().with_context(opts->image)));
    const auto& rep = *r;
    if (opts->json) {
      nlohmann::json j = {{"scenario", sim::to_string(rep.scenario)},
                          {"torn", to_string(rep.torn)},
                          {"seed", rep.seed},
                          {"old_image", rep.old_image},
                          {"new_image", rep.new_image},
                          {"operations", rep.clean_ops},
                          {"commit_operation", rep.commit_op},
                          {"cuts", rep.cuts},
                          {"cuts_survived", rep.cuts_survived},
                          {"pairs", rep.pairs},
                          {"pairs_survived", rep.pairs_survived},
                          {"unbootable_until_retry", rep.unbootable_until_retry},
                          {"failures", nlohmann::json::array()}};
      if (rep.scenario == sim::Scenario::secure_version) {
        j["efuse_secure_version_before"] = rep.counter_before;
        j["efuse_secure_version_after"] = rep.counter_after;
      }
      for (const auto& f : rep.failures) {
        nlohmann::json fj = {{"cut", f.cut}, {"operation", f.op}, {"what", f.what}};
        if (f.second) fj["second_cut"] = *f.second;
        j["failures"].push_back(fj);
      }
      fmt::print("{}\n", j.dump(2));
    } else {
      fmt::print("scenario {}: {}\n", sim::to_string(rep.scenario), sim::describe(rep.scenario));
      fmt::print("old image {}, new image {}\n", rep.old_image, rep.new_image);
      fmt::print("clean run: {} flash operations; torn mode {}, seed {}\n", rep.clean_ops,
                 to_string(rep.torn), rep.seed);
      if (rep.scenario == sim::Scenario::secure_version) {
        fmt::print("eFuse SECURE_VERSION {} -> {} (the burn is one of the operations)\n", rep.counter_before,
                   rep.counter_after);
      }
      if (rep.scenario == sim::Scenario::write_flash) {
        fmt::print(
            "{} of {} cuts left nothing bootable until write_flash was run again (esptool's "
            "flashing is not power-safe)\n",
            rep.unbootable_until_retry, rep.cuts);
      }
      fmt::print("{}\n", sim::summary_line(rep));
    }
    if (!rep.ok()) {
      const auto& f = rep.failures.front();
      std::string at = f.second ? fmt::format(
                                      "cut at operation {} ({}; second cut at operation {} of the "
                                      "recovery)",
                                      f.cut, f.op, *f.second)
                                : fmt::format("cut at operation {} ({})", f.cut, f.op);
      return set_exit_code(fail(fmt::format("{}: {} of {} cut runs failed; first: {}: {}", opts->dir,
                                            rep.failures.size(), rep.cuts + rep.pairs, at, f.what)));
    }
  });
}

void register_sim(CLI::App& app) {
  for (auto* sub : app.get_subcommands([](CLI::App* s) { return s->get_name() == "device"; })) {
    add_powercut_sweep(*sub);
  }
}

}  // namespace

OTA32_REGISTER_COMMANDS(62, register_sim, "device");

}  // namespace ota32::cli
