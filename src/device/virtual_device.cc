#include "device/virtual_device.h"

#include <fmt/format.h>

#include <random>

namespace ota32 {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFlashFile = "flash.bin";
constexpr const char* kEfuseFile = "efuse.json";
constexpr const char* kConfigFile = "device.json";

Result<const ChipInfo*> lookup_chip(std::string_view name, std::string_view where) {
  const ChipInfo* chip = find_chip(name);
  if (!chip || !chip->released) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}unknown chip '{}' (supported: {})", where, name, supported_chip_names()));
  }
  return chip;
}

std::string random_mac() {
  std::random_device rd;
  return fmt::format("24:0a:c4:{:02x}:{:02x}:{:02x}", rd() & 0xFF, rd() & 0xFF, rd() & 0xFF);
}

}  // namespace

Result<void> VirtualDevice::create(const fs::path& dir, const DeviceNewOptions& opt) {
  OTA32_ASSIGN(const ChipInfo* chip, lookup_chip(opt.chip, "--chip: "));
  OTA32_TRY(check_flash_size(opt.flash_size, "--flash-size"));
  Efuse efuse;
  if (opt.mac) {
    OTA32_ASSIGN(efuse.mac, parse_mac(*opt.mac));
  } else {
    efuse.mac = random_mac();
  }
  efuse.chip_revision = opt.chip_revision.value_or(default_chip_revision(chip->name));
  efuse.secure_version = opt.secure_version;
  if (efuse.secure_version > efuse.secure_version_bits) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("--secure-version: {} exceeds the eFuse field's {} bits", opt.secure_version,
                             efuse.secure_version_bits));
  }
  if (opt.bootloader.anti_rollback && !opt.bootloader.rollback) {
    return Error(ErrorCode::invalid_argument, "--anti-rollback requires --rollback (Kconfig dependency)");
  }
  DeviceConfig config;
  config.chip = std::string(chip->name);
  config.flash_size = opt.flash_size;
  config.bootloader = opt.bootloader;

  std::error_code ec;
  if (fs::exists(dir, ec)) {
    if (!fs::is_directory(dir, ec) || !fs::is_empty(dir, ec)) {
      return Error(ErrorCode::already_exists,
                   fmt::format("{}: already exists and is not an empty directory", dir.string()));
    }
  } else if (!fs::create_directories(dir, ec)) {
    return Error(ErrorCode::io_error,
                 fmt::format("{}: cannot create directory: {}", dir.string(), ec.message()));
  }
  OTA32_TRY(FileFlash::create(dir / kFlashFile, opt.flash_size));
  OTA32_TRY(write_json_file(dir / kEfuseFile, to_json(efuse)));
  // device.json last: its presence marks a complete device directory.
  OTA32_TRY(write_json_file(dir / kConfigFile, to_json(config)));
  return {};
}

Result<void> VirtualDevice::attach(std::unique_ptr<NorFlash> nor) {
  OTA32_ASSIGN(chip_, lookup_chip(config_.chip, fmt::format("{}: chip: ", kConfigFile)));
  if (nor->size() != config_.flash_size) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: {:#x} bytes, but {} says flash_size {:#x}", nor->name(), nor->size(),
                             kConfigFile, config_.flash_size));
  }
  nor_ = std::move(nor);
  fault_ = std::make_unique<FaultFlash>(*nor_);
  return {};
}

Result<std::unique_ptr<VirtualDevice>> VirtualDevice::open(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return Error(ErrorCode::not_found,
                 fmt::format("{}: not a device directory (no such directory); create one "
                             "with `ota32 device new`",
                             dir.string()));
  }
  for (const char* f : {kConfigFile, kEfuseFile, kFlashFile}) {
    if (!fs::exists(dir / f, ec)) {
      return Error(ErrorCode::not_found,
                   fmt::format("{}: not a device directory (no {}); create one with `ota32 device new`",
                               dir.string(), f));
    }
  }
  std::unique_ptr<VirtualDevice> dev(new VirtualDevice());
  dev->dir_ = dir;
  OTA32_ASSIGN(auto cj, read_json_file(dir / kConfigFile));
  OTA32_ASSIGN(dev->config_, device_config_from_json(cj, (dir / kConfigFile).string()));
  OTA32_ASSIGN(auto ej, read_json_file(dir / kEfuseFile));
  OTA32_ASSIGN(dev->efuse_, efuse_from_json(ej, (dir / kEfuseFile).string()));
  OTA32_ASSIGN(auto flash, FileFlash::open(dir / kFlashFile));
  OTA32_TRY(dev->attach(std::move(flash)));
  return dev;
}

Result<std::unique_ptr<VirtualDevice>> VirtualDevice::in_memory(DeviceConfig config, Efuse efuse,
                                                                Bytes flash) {
  std::unique_ptr<VirtualDevice> dev(new VirtualDevice());
  dev->config_ = std::move(config);
  dev->efuse_ = std::move(efuse);
  OTA32_TRY(dev->attach(std::make_unique<MemFlash>(std::move(flash), "flash")));
  return dev;
}

Result<void> VirtualDevice::set_config(const DeviceConfig& c) {
  const std::string file = dir_.empty() ? std::string(kConfigFile) : (dir_ / kConfigFile).string();
  OTA32_ASSIGN(DeviceConfig checked, device_config_from_json(to_json(c), file));
  if (checked.chip != config_.chip || checked.flash_size != config_.flash_size) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: chip and flash_size belong to the flash image; make a new device", file));
  }
  if (!dir_.empty()) OTA32_TRY(write_json_file(dir_ / kConfigFile, to_json(checked)));
  config_ = std::move(checked);
  return {};
}

Result<void> VirtualDevice::set_efuse(const Efuse& e) {
  if (!dir_.empty()) OTA32_TRY(write_json_file(dir_ / kEfuseFile, to_json(e)));
  efuse_ = e;
  return {};
}

Result<void> VirtualDevice::write_flash(std::vector<FlashFile> files, WriteFlashOptions opt,
                                        const LineSink& out, const std::function<void()>& connected) {
  opt.chip_revision = efuse_.chip_revision;
  OTA32_ASSIGN(auto plan, plan_write_flash(*chip_, nor_->size(), std::move(files), opt));
  if (connected) connected();
  return run_write_flash(*fault_, plan, opt, out);
}

Result<PartitionTable> VirtualDevice::partition_table() {
  Bytes bin(0xC00);
  OTA32_TRY(fault_->read(kPartitionTableOffset, bin));
  BinaryOptions bo;
  return parse_partition_binary(bin, bo, "partition table at 0x8000");
}

BootConfig VirtualDevice::boot_config() const {
  BootConfig c;
  c.rollback = config_.bootloader.rollback;
  c.anti_rollback = config_.bootloader.anti_rollback;
  c.idf_version = config_.bootloader.idf_version;
  return c;
}

Result<BootResult> VirtualDevice::power_on() {
  BootEfuse be{efuse_.chip_revision, efuse_.secure_version, efuse_.secure_version_bits, efuse_.secure_boot};
  return run_bootloader(*fault_, *chip_, boot_config(), be, secure_version_burner());
}

SecureVersionBurner VirtualDevice::secure_version_burner() {
  return [this](uint32_t v) -> Result<void> {
    return fault_->burn_efuse(v, [this, v]() -> Result<void> {
      Efuse e = efuse_;
      e.secure_version = v;
      return set_efuse(e);
    });
  };
}

Result<VirtualDevice::RunResult> VirtualDevice::run(int max_boots) {
  RunResult rr;
  for (int i = 0; i < max_boots; ++i) {
    OTA32_ASSIGN(auto boot, power_on());
    rr.booted = boot.app.has_value();
    if (!boot.app) {
      rr.boots.push_back(std::move(boot));
      break;
    }
    BootLog log(boot.log.empty() ? 0 : boot.log.back().ms);
    auto exit = app_model_->run(*this, boot, log);
    for (auto& l : log.take()) boot.log.push_back(std::move(l));
    rr.boots.push_back(std::move(boot));
    if (!exit) return exit.error();
    if (*exit != AppExit::reboot) break;
  }
  return rr;
}

Bytes VirtualDevice::snapshot() const { return Bytes(nor_->contents().begin(), nor_->contents().end()); }

}  // namespace ota32
