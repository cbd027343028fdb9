#include "device/esptool_cmds.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>

#include "core/file_io.h"
#include "core/numbers.h"
#include "device/virtual_device.h"
#include "format/app_image.h"
#include "format/image_info.h"

namespace ota32 {

namespace fs = std::filesystem;

namespace {

// The line esptool's main() prints for --after once the command is done (write_flash prints its own,
// after "Leaving...").
std::string after_line(std::string_view after) {
  if (after == "soft_reset") return "Soft resetting...";
  if (after == "no_reset") return "Staying in bootloader.";
  if (after == "no_reset_stub") return "Staying in flasher stub.";
  return "Hard resetting via RTS pin...";
}

Result<const ChipInfo*> chip_arg(std::string_view chip) {
  if (chip == "auto") return static_cast<const ChipInfo*>(nullptr);
  const ChipInfo* c = find_chip(normalise_chip_name(chip));
  if (!c || !c->released) {
    return Error(
        ErrorCode::invalid_argument,
        fmt::format("--chip: invalid choice '{}' (choose from auto, {})", chip, supported_chip_names()));
  }
  return c;
}

Result<std::vector<FlashFile>> read_pairs(const EsptoolArgs& a, const EsptoolContext& ctx) {
  std::vector<FlashFile> files;
  for (const auto& [addr_text, name] : a.pairs) {
    OTA32_ASSIGN(uint32_t addr, parse_u32(addr_text, "address"));
    OTA32_ASSIGN(Bytes data,
                 read_file(resolve_flash_file(name, ctx.arg_files), kLargestFlashSize, kLargestFlashWhat));
    files.push_back({addr, name, std::move(data)});
  }
  if (files.empty()) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: the following arguments are required: <address> <filename>", a.command));
  }
  return files;
}

Result<uint32_t> number(const std::string& text, std::string_view field) { return parse_u32(text, field); }

}  // namespace

Result<Bytes> merge_bin_raw(const ChipInfo& chip, std::vector<FlashFile> files, const WriteFlashOptions& opt,
                            uint32_t target_offset, std::string_view fill_flash_size,
                            std::vector<std::string>& lines) {
  if (files.empty()) return Error(ErrorCode::invalid_argument, "No input files specified");
  OTA32_TRY(check_sector_overlaps(files));
  if (opt.flash_size == "detect") {
    return Error(ErrorCode::invalid_argument,
                 "--flash_size: 'detect' is not a choice for merge_bin (there is no chip to detect)");
  }
  std::stable_sort(files.begin(), files.end(), [](const auto& x, const auto& y) { return x.addr < y.addr; });
  if (files.front().addr < target_offset) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("Output file target offset is {:#x}. Input file offset {:#x} is before this.",
                             target_offset, files.front().addr));
  }
  uint64_t fill_to = 0;
  if (!fill_flash_size.empty()) {
    auto n = parse_number(fill_flash_size, "--fill-flash-size");
    if (!n || *n == 0 || *n > (256ull << 20)) {
      return Error(
          ErrorCode::invalid_argument,
          fmt::format("--fill-flash-size: '{}' is not a flash size (256KB .. 128MB)", fill_flash_size));
    }
    fill_to = *n;
  }
  Bytes out;
  auto pad_to = [&](uint64_t flash_offs) {
    // esptool writes b"\xFF" * (flash_offs - target_offset - tell): nothing when already past it.
    if (flash_offs - target_offset > out.size()) out.resize(flash_offs - target_offset, 0xFF);
  };
  for (auto& f : files) {
    pad_to(f.addr);
    OTA32_ASSIGN(auto patch_lines, patch_flash_params(chip, f.addr, f.data, opt));
    for (auto& l : patch_lines) lines.push_back(std::move(l));
    // Written at the current end, as esptool does (the overlap check keeps files apart).
    out.insert(out.end(), f.data.begin(), f.data.end());
  }
  if (fill_to) pad_to(fill_to);
  return out;
}

Result<void> run_esptool(const EsptoolArgs& a, const EsptoolContext& ctx) {
  const auto& out = ctx.out;
  OTA32_ASSIGN(const ChipInfo* chip, chip_arg(a.chip));
  VirtualDevice* dev = ctx.device;
  if (a.port && ctx.note) {
    ctx.note(fmt::format("-p {}: no serial port is opened; the virtual device {} is used", *a.port,
                         ctx.device_name.empty() ? std::string("(none)") : ctx.device_name));
  }
  auto echo = [&] {
    if (a.expanded) {
      std::string line = "esptool.py";
      for (const auto& w : *a.expanded) line += " " + w;
      out(line);
    }
  };

  if (a.command == "merge_bin") {
    if (!chip) {
      if (!dev) {
        return Error(
            ErrorCode::invalid_argument,
            fmt::format("Please specify the chip argument (choose from {})", supported_chip_names()));
      }
      chip = &dev->chip();
    }
    if (a.format != "raw") {
      return Error(
          ErrorCode::unsupported,
          fmt::format("merge_bin --format {}: only raw output is made here (uf2 and hex are not)", a.format));
    }
    OTA32_ASSIGN(auto files, read_pairs(a, ctx));
    std::vector<std::string> lines;
    OTA32_ASSIGN(Bytes merged,
                 merge_bin_raw(*chip, std::move(files), a.write, a.target_offset, a.fill_flash_size, lines));
    OTA32_TRY(write_file_atomic(a.output, merged, Durability::artifact));
    echo();
    out(std::string(kEsptoolBanner));
    for (const auto& l : lines) out(l);
    out(fmt::format("Wrote {:#x} bytes to file {}, ready to flash to offset {:#x}", merged.size(), a.output,
                    a.target_offset));
    return {};
  }

  if (a.command == "image_info") {
    const std::string& what = a.positionals.front();
    Bytes data;
    std::string name = what;
    std::error_code ec;
    auto addr = parse_u32(what, "address");
    if (addr && dev && !fs::exists(what, ec)) {
      // An image in the device's flash: from the offset to the end of the flash, cut to the image's size.
      const uint32_t size = dev->flash().size();
      if (*addr >= size) {
        return Error(ErrorCode::out_of_range,
                     fmt::format("image_info {}: past the end of the {} flash", what, format_size(size)));
      }
      data.resize(size - *addr);
      OTA32_TRY(dev->flash().read(*addr, data));
      if (auto img = parse_image(data); img && img->image_size <= data.size()) data.resize(img->image_size);
      name = fmt::format("flash at {:#x}", *addr);
      if (!chip) chip = &dev->chip();
    } else {
      OTA32_ASSIGN(data, read_file(what, kLargestFlashSize, kLargestFlashWhat));
    }
    ImageInfoOptions o;
    o.chip = chip;
    o.chip_arg = chip ? std::string(chip->name) : std::string("auto");
    o.version = a.image_info_version;
    o.file_name = name;
    auto rep = image_info_report(data, o);
    echo();
    out(std::string(kEsptoolBanner));
    std::string_view text = rep.text;
    while (!text.empty()) {
      auto nl = text.find('\n');
      out(std::string(text.substr(0, nl)));
      if (nl == std::string_view::npos) break;
      text.remove_prefix(nl + 1);
    }
    if (rep.error) return *rep.error;
    return {};
  }

  // The commands that talk to the chip.
  if (!dev) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{} needs a device: give the device directory first", a.command));
  }
  if (chip && chip != &dev->chip()) {
    return Error(ErrorCode::invalid_argument, fmt::format("This chip is {} not {}. Wrong --chip argument?",
                                                          dev->chip().display_name, chip->display_name));
  }
  EsptoolConnect c;
  c.port = a.port.value_or(ctx.device_name);
  c.detect_chip = !chip;
  c.baud = a.baud;
  c.chip_revision = dev->efuse().chip_revision;
  c.mac = dev->efuse().mac;
  std::vector<std::string> preamble = esptool_connect_lines(dev->chip(), c);
  auto print_preamble = [&] {
    echo();
    for (const auto& l : preamble) out(l);
  };
  const uint32_t flash_size = dev->flash().size();

  if (a.command == "write_flash") {
    OTA32_ASSIGN(auto files, read_pairs(a, ctx));
    return dev->write_flash(std::move(files), a.write, out, [&] { print_preamble(); });
  }
  if (a.command == "read_flash") {
    OTA32_ASSIGN(uint32_t addr, number(a.positionals[0], "read_flash address"));
    uint64_t size = 0;
    if (a.positionals[1] == "ALL") {
      if (addr >= flash_size) {
        return Error(ErrorCode::out_of_range,
                     fmt::format("read_flash: address {:#x} is past the end of the {} flash", addr,
                                 format_size(flash_size)));
      }
      size = flash_size - addr;
    } else {
      OTA32_ASSIGN(size, parse_number(a.positionals[1], "read_flash size"));
    }
    if (size == 0 || uint64_t{addr} + size > flash_size) {
      return Error(ErrorCode::out_of_range,
                   fmt::format("read_flash: {:#x} bytes at {:#x} do not fit in the {} flash ({:#x} bytes)",
                               size, addr, format_size(flash_size), flash_size));
    }
    Bytes data(size);
    OTA32_TRY(dev->flash().read(addr, data));
    print_preamble();
    if (!a.no_progress) out(fmt::format("{} (100 %)", size));
    const double t = esptool_transfer_seconds(size, a.baud);
    out(fmt::format("Read {} bytes at {:#010x}{}...", size, addr, esptool_speed_tail(size, t, false)));
    OTA32_TRY(write_file_atomic(a.positionals[2], data, Durability::artifact));
    out(after_line(a.after));
    return {};
  }
  if (a.command == "erase_flash") {
    print_preamble();
    out("Erasing flash (this may take a while)...");
    OTA32_TRY(dev->flash().erase(0, flash_size));
    out(fmt::format("Chip erase completed successfully in {:.1f}s",
                    esptool_erase_seconds(0, flash_size, true)));
    out(after_line(a.after));
    return {};
  }
  if (a.command == "erase_region") {
    OTA32_ASSIGN(uint32_t addr, number(a.positionals[0], "erase_region address"));
    OTA32_ASSIGN(uint32_t size, number(a.positionals[1], "erase_region size"));
    if (addr % kFlashSectorSize != 0) {
      return Error(ErrorCode::invalid_argument, "Offset to erase from must be a multiple of 4096");
    }
    if (size % kFlashSectorSize != 0) {
      return Error(ErrorCode::invalid_argument, "Size of data to erase must be a multiple of 4096");
    }
    if (uint64_t{addr} + size > flash_size) {
      return Error(ErrorCode::out_of_range,
                   fmt::format("erase_region: {:#x} bytes at {:#x} do not fit in the {} flash", size, addr,
                               format_size(flash_size)));
    }
    print_preamble();
    out("Erasing region (may be slow depending on size)...");
    if (size) OTA32_TRY(dev->flash().erase(addr, size));
    out(fmt::format("Erase completed successfully in {:.1f} seconds.",
                    esptool_erase_seconds(addr, size, false)));
    out(after_line(a.after));
    return {};
  }
  return Error(ErrorCode::invalid_argument, fmt::format("'{}' is not an esptool command", a.command));
}

}  // namespace ota32
