// ota32 image info | verify | make | elf2image: esptool's image_info / elf2image and synthetic test apps.
#include <fmt/format.h>

#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "cli/cli_util.h"
#include "cli/commands.h"
#include "cli/inputs.h"
#include "core/file_io.h"
#include "core/numbers.h"
#include "format/app_image.h"
#include "format/chip.h"
#include "format/elf2image.h"
#include "format/esp8266_image.h"
#include "format/image_info.h"
#include "format/image_make.h"

namespace ota32::cli {
namespace {

Result<const ChipInfo*> chip_option(const std::string& name) {
  if (name.empty()) return static_cast<const ChipInfo*>(nullptr);
  const ChipInfo* c = find_chip(name);
  if (c == nullptr) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("--chip: unknown chip '{}' (supported: {})", name, supported_chip_names()));
  }
  return c;
}

// image info and elf2image also take esp8266, as esptool's image_info and elf2image do; other commands take
// ESP32-family chips only.
Result<const ChipInfo*> chip_or_esp8266(const std::string& name) {
  if (normalise_chip_name(name) == "esp8266") return &esp8266_chip();
  return chip_option(name);
}

nlohmann::ordered_json info_json(const std::string& file, ByteView data, const AppImage& img,
                                 const ChipInfo* chip) {
  using json = nlohmann::ordered_json;
  const ImageHeader& h = img.header;
  json j;
  j["file"] = file;
  j["file_size"] = data.size();
  j["chip"] = chip ? json(chip->name) : json(nullptr);
  j["header"] = {{"segment_count", h.segment_count},
                 {"entry_addr", format_hex(h.entry_addr, 8)},
                 {"flash_mode",
                  flash_mode_name(h.spi_mode).empty() ? json(h.spi_mode) : json(flash_mode_name(h.spi_mode))},
                 {"flash_size", flash_size_name(h.spi_size()).empty() ? json(h.spi_size())
                                                                      : json(flash_size_name(h.spi_size()))},
                 {"flash_freq", chip && !flash_freq_name(*chip, h.spi_speed()).empty()
                                    ? json(flash_freq_name(*chip, h.spi_speed()))
                                    : json(h.spi_speed())},
                 {"wp_pin", h.wp_pin},
                 {"spi_pin_drv", h.spi_pin_drv},
                 {"chip_id", h.chip_id},
                 {"min_chip_rev", h.min_chip_rev},
                 {"min_chip_rev_full", h.min_chip_rev_full},
                 {"max_chip_rev_full", h.max_chip_rev_full},
                 {"hash_appended", h.hash_appended == 1}};
  json segs = json::array();
  for (size_t i = 0; i < img.segments.size(); ++i) {
    const auto& s = img.segments[i];
    json names = json::array();
    if (chip) {
      for (const auto& r : chip->memory_map)
        if (s.load_addr >= r.start && s.load_addr < r.end) names.push_back(r.name);
    }
    segs.push_back({{"index", i},
                    {"header_offset", s.header_offset()},
                    {"data_offset", s.data_offset},
                    {"load_addr", format_hex(s.load_addr, 8)},
                    {"length", s.data_len},
                    {"mapped", chip ? segment_is_mapped(*chip, s.load_addr) : false},
                    {"memory_types", names}});
  }
  j["segments"] = segs;
  j["checksum"] = {{"offset", img.checksum_offset},
                   {"stored", img.stored_checksum},
                   {"calculated", img.calculated_checksum},
                   {"valid", img.stored_checksum == img.calculated_checksum}};
  if (h.hash_appended == 1) {
    auto calc = image_sha256(img, data);
    j["sha256"] = {{"offset", img.checksum_offset + 1},
                   {"stored", img.stored_sha256 ? json(to_hex(*img.stored_sha256)) : json(nullptr)},
                   {"calculated", to_hex(calc)},
                   {"valid", img.stored_sha256 && *img.stored_sha256 == calc}};
  }
  j["image_size"] = img.image_size;
  if (img.app_desc) {
    const auto& d = *img.app_desc;
    j["app_desc"] = {{"secure_version", d.secure_version},
                     {"version", d.version},
                     {"project_name", d.project_name},
                     {"time", d.time},
                     {"date", d.date},
                     {"idf_ver", d.idf_ver},
                     {"app_elf_sha256", to_hex(d.app_elf_sha256)},
                     {"min_efuse_blk_rev_full", d.min_efuse_blk_rev_full},
                     {"max_efuse_blk_rev_full", d.max_efuse_blk_rev_full},
                     {"mmu_page_size", d.mmu_page_size}};
  }
  if (img.bootloader_desc) {
    const auto& d = *img.bootloader_desc;
    j["bootloader_desc"] = {{"version", d.version},
                            {"secure_version", d.secure_version},
                            {"idf_ver", d.idf_ver},
                            {"date_time", d.date_time}};
  }
  return j;
}

struct InfoArgs {
  std::string file, chip;
  int version = 2;
  bool json = false;
};

nlohmann::ordered_json esp8266_json(const std::string& file, ByteView data, const Esp8266Image& img) {
  using json = nlohmann::ordered_json;
  const ChipInfo& chip = esp8266_chip();
  json segs = json::array();
  for (size_t i = 0; i < img.segments.size(); ++i) {
    const auto& s = img.segments[i];
    json names = json::array();
    for (const auto& r : chip.memory_map)
      if (s.load_addr >= r.start && s.load_addr < r.end) names.push_back(r.name);
    segs.push_back({{"index", i},
                    {"header_offset", s.header_offset},
                    {"data_offset", s.header_offset + kSegmentHeaderSize},
                    {"load_addr", format_hex(s.load_addr, 8)},
                    {"length", s.data_len},
                    {"in_checksum", s.in_checksum},
                    {"memory_types", names}});
  }
  auto size = esp8266_flash_size_name(img.flash_size_freq & 0xF0);
  auto freq = flash_freq_name(chip, img.flash_size_freq & 0x0F);
  auto mode = flash_mode_name(img.flash_mode);
  return {{"file", file},
          {"file_size", data.size()},
          {"chip", "esp8266"},
          {"image_version", img.version},
          {"header",
           {{"entry_addr", format_hex(img.entry, 8)},
            {"flash_mode", mode.empty() ? json(img.flash_mode) : json(mode)},
            {"flash_size", size.empty() ? json(img.flash_size_freq & 0xF0) : json(size)},
            {"flash_freq", freq.empty() ? json(img.flash_size_freq & 0x0F) : json(freq)}}},
          {"segments", segs},
          {"checksum",
           {{"offset", img.checksum_offset},
            {"stored", img.stored_checksum},
            {"calculated", img.calculated_checksum},
            {"valid", img.stored_checksum == img.calculated_checksum}}}};
}

int run_info(const InfoArgs& a) {
  auto chip = chip_or_esp8266(a.chip);
  if (!chip) return fail(chip.error());
  auto data = read_input(a.file, kImageInput);
  if (!data) return fail(data.error());
  ImageInfoOptions o;
  o.chip = *chip;
  o.chip_arg = a.chip;
  o.version = a.version;
  o.file_name = a.file;
  // One verdict for both forms: the JSON is printed only for an image the text report accepts.
  auto r = image_info_report(*data, o);
  if (a.json) {
    if (r.error) return fail(*r.error);
    if (r.chip != nullptr && is_esp8266(*r.chip)) {
      std::vector<std::string> warnings;
      auto img = parse_esp8266_image(*data, a.file, warnings);
      if (!img) return fail(img.error());
      out(esp8266_json(a.file, *data, *img).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
          "\n");
      return kExitOk;
    }
    auto img = parse_image(*data, a.file);
    if (!img) return fail(img.error());
    const ChipInfo* c = *chip ? *chip : find_chip_by_id(img->header.chip_id);
    out(info_json(a.file, *data, *img, c).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) +
        "\n");
    return kExitOk;
  }
  out(r.text);
  if (r.error) return fail(*r.error);
  return kExitOk;
}

struct VerifyArgs {
  std::string file, chip, kind = "auto";
  bool no_hash = false, json = false;
};

int run_verify(const VerifyArgs& a) {
  auto chip = chip_option(a.chip);
  if (!chip) return fail(chip.error());
  auto data = read_input(a.file, kImageInput);
  if (!data) return fail(data.error());
  auto img = parse_image(*data, a.file);
  Result<void> v = img ? Result<void>() : Result<void>(img.error());
  if (img) {
    VerifyOptions o;
    o.chip = *chip;
    o.check_hash = !a.no_hash;
    o.kind = a.kind == "app"          ? ImageKind::app
             : a.kind == "bootloader" ? ImageKind::bootloader
                                      : ImageKind::automatic;
    o.file_name = a.file;
    v = verify_image(*img, *data, o);
  }
  if (a.json) {
    nlohmann::ordered_json j{{"file", a.file}, {"valid", bool(v)}};
    if (!v) j["error"] = v.error().message();
    out(j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
    return v ? kExitOk : kExitFailed;
  }
  if (!v) return fail(v.error());
  print_out("{}: valid {} image, {} segments, {} bytes\n", a.file,
            (*chip ? *chip : find_chip_by_id(img->header.chip_id))->display_name, img->segments.size(),
            img->image_size);
  return kExitOk;
}

struct MakeArgs {
  std::string out, chip, project, version;
  uint64_t secure_version = 0, size = 0, seed = 0;
  bool bootloader = false;
};

// The made image, or its error, to the output file (atomically).
int write_made(const std::string& out, const Result<Bytes>& img) {
  if (!img) return fail(img.error());
  if (auto w = write_file_atomic(out, *img, Durability::artifact); !w) return fail(w.error());
  return kExitOk;
}

int run_make_bootloader(const MakeArgs& a, const ChipInfo& chip) {
  if (a.secure_version > 255) return fail("--secure-version: a bootloader's must be 0..255");
  MakeBootloaderOptions o;
  o.chip = &chip;
  o.secure_version = static_cast<uint8_t>(a.secure_version);
  o.seed = a.seed;
  return write_made(a.out, make_bootloader_image(o));
}

int run_make(const MakeArgs& a) {
  auto chip = chip_option(a.chip);
  if (!chip) return fail(chip.error());
  if (a.bootloader) return run_make_bootloader(a, **chip);
  // CLI11 cannot make them required only without --bootloader: checked here, as a usage error like CLI11's.
  for (const auto& [name, value] : {std::pair{"--project", &a.project}, std::pair{"--version", &a.version}}) {
    if (value->empty()) return usage_error("ota32", fmt::format("{} is required (or --bootloader)", name));
  }
  if (a.secure_version > UINT32_MAX) return fail("--secure-version: must fit in 32 bits");
  if (a.size > UINT32_MAX) return fail("--size: must fit in 32 bits");
  MakeImageOptions o;
  o.chip = *chip;
  o.project = a.project;
  o.version = a.version;
  o.secure_version = static_cast<uint32_t>(a.secure_version);
  o.size = static_cast<uint32_t>(a.size);
  o.seed = a.seed;
  return write_made(a.out, make_app_image(o));
}

struct Elf2ImageArgs {
  std::string elf, out, chip;
  Elf2ImageOptions opt;
  uint64_t min_rev = 0, min_rev_full = 0, max_rev_full = 0xFFFF, sha_offset = 0;
  bool dont_append_digest = false;
};

// elf2image's errors as esptool words them, with the ELF's name in front where the text lacks it (an
// option's own error, "--flash-mode: ...", stays as it is).
Error naming_elf(const Error& e, const std::string& elf) {
  std::string_view m = e.message();
  const bool named = m.find(elf + ":") != std::string_view::npos ||
                     m.find(elf + " ") != std::string_view::npos || m.ends_with(elf);
  if (named || m.starts_with("--")) return e;
  return e.with_context(elf);
}

int run_elf2image(Elf2ImageArgs a) {
  auto chip = chip_or_esp8266(a.chip);
  if (!chip) return fail(chip.error());
  if (a.min_rev > 255) return fail("--min-rev: must be 0..255");
  if (a.min_rev_full > 65535 || a.max_rev_full > 65535)
    return fail("--min-rev-full/--max-rev-full: must be 0..65535");
  if (a.sha_offset > UINT32_MAX) return fail("--elf-sha256-offset: must fit in 32 bits");
  a.opt.chip = *chip;
  a.opt.min_rev = static_cast<uint8_t>(a.min_rev);
  a.opt.min_rev_full = static_cast<uint16_t>(a.min_rev_full);
  a.opt.max_rev_full = static_cast<uint16_t>(a.max_rev_full);
  a.opt.elf_sha256_offset = static_cast<uint32_t>(a.sha_offset);
  a.opt.append_digest = !a.dont_append_digest;
  auto elf = read_input(a.elf, kElfInput);
  if (!elf) return fail(elf.error());
  std::vector<std::string> console;
  auto r = elf2image(*elf, a.elf, a.opt, &console);
  for (const auto& line : console) print_out("{}\n", line);
  if (!r) return fail(naming_elf(r.error(), a.elf));
  std::string out = a.out;
  if (out.empty()) {  // esptool: the input path with its last extension replaced by .bin
    std::filesystem::path p(a.elf);
    out = p.replace_extension(".bin").string();
    if (is_esp8266(**chip) && a.opt.version == 2) {  // ESP8266V2FirmwareImage.default_output_name
      out = fmt::format("{}-0x{:05x}.bin", std::filesystem::path(a.elf).replace_extension("").string(),
                        r->irom_offset & ~0xFFFu);
    }
  }
  if (auto w = write_file_atomic(out, r->image, Durability::artifact); !w) return fail(w.error());
  return kExitOk;
}

void register_image(CLI::App& app) {
  auto* image = app.add_subcommand("image", "App and bootloader images: info, verify, make, elf2image");
  image->require_subcommand(1);

  auto info = std::make_shared<InfoArgs>();
  auto* ci = image->add_subcommand("info",
                                   "Print an image's header, segments, checksum, hash and app descriptor "
                                   "(esptool image_info --version 2)");
  ci->add_option("file", info->file, "Image file")->required();
  ci->add_option("--chip,-c", info->chip,
                 "Chip, or esp8266 (default: detected from the header, as esptool does)");
  ci->add_option("--version,-v", info->version, "Report version: 1 (legacy) or 2 (extended)")
      ->check(CLI::IsMember({1, 2}));
  ci->add_flag("--json", info->json, "Print the facts as one JSON object");
  ci->callback([info] { set_exit_code(run_info(*info)); });

  auto ver = std::make_shared<VerifyArgs>();
  auto* cv = image->add_subcommand("verify",
                                   "Check an image as the ESP-IDF bootloader does; exit 1 naming the "
                                   "first failure");
  cv->add_option("file", ver->file, "Image file")->required();
  cv->add_option("--chip,-c", ver->chip, "Chip (default: from the header's chip_id)");
  cv->add_option("--kind", ver->kind, "app, bootloader or auto (app if any segment is flash-mapped)")
      ->check(CLI::IsMember({"auto", "app", "bootloader"}));
  cv->add_flag("--no-hash", ver->no_hash, "Do not check the appended SHA-256");
  cv->add_flag("--json", ver->json, "Print the result as JSON");
  cv->callback([ver] { set_exit_code(run_verify(*ver)); });

  auto mk = std::make_shared<MakeArgs>();
  auto* cm = image->add_subcommand(
      "make", "Build a valid, deterministic synthetic app (or bootloader) image (no toolchain needed)");
  cm->add_option("-o,--output", mk->out, "Output file")->required();
  cm->add_option("--chip,-c", mk->chip, "Chip: " + supported_chip_names())->required();
  auto* project = cm->add_option("--project", mk->project,
                                 "Project name (app descriptor, up to 32 bytes; required for an app)");
  auto* version = cm->add_option("--version", mk->version,
                                 "App version (app descriptor, up to 32 bytes; required for an app)");
  auto* size =
      add_number_option(cm, "--size", mk->size,
                        "Exact file size (rounded up to 16; default: the seed app's layout, about 860K)");
  cm->add_flag("--bootloader", mk->bootloader,
               "Make a 2nd-stage bootloader instead (ESP-IDF v5.5.5 descriptor, 2MB DIO 40m header; "
               "boots the virtual device when no ESP-IDF build is at hand)")
      ->excludes(project)
      ->excludes(version)
      ->excludes(size);
  add_number_option(cm, "--secure-version", mk->secure_version,
                    "Anti-rollback secure_version (default 0; a bootloader's: 0..255)");
  add_number_option(cm, "--seed", mk->seed, "Seed for the segment contents (default 0)");
  cm->callback([mk] { set_exit_code(run_make(*mk)); });

  auto ea = std::make_shared<Elf2ImageArgs>();
  auto* ce = image->add_subcommand("elf2image",
                                   "Convert an ELF into an app/bootloader image, byte-identical to "
                                   "esptool v4.8.1 elf2image");
  ce->add_option("elf", ea->elf, "Input ELF file")->required();
  ce->add_option("-o,--output", ea->out, "Output image (default: the ELF path with .bin)");
  ce->add_option("--chip,-c", ea->chip,
                 "Chip: " + supported_chip_names() + ", or esp8266 (with --version 2 or 3)")
      ->required();
  ce->add_option("--flash-mode,--flash_mode", ea->opt.flash_mode, "qio (default), qout, dio, dout")
      ->check(CLI::IsMember({"qio", "qout", "dio", "dout"}));
  ce->add_option("--flash-freq,--flash_freq", ea->opt.flash_freq,
                 "Flash frequency, e.g. 40m, 80m (default: code 0)");
  ce->add_option("--flash-size,--flash_size", ea->opt.flash_size, "1MB (default) .. 128MB");
  add_number_option(ce, "--min-rev,-r", ea->min_rev, "Legacy minimum chip revision (header byte 0x0e)");
  add_number_option(ce, "--min-rev-full,--min_rev_full", ea->min_rev_full,
                    "Minimum chip revision, major*100+minor");
  add_number_option(ce, "--max-rev-full,--max_rev_full", ea->max_rev_full,
                    "Maximum chip revision, major*100+minor (default 65535)");
  ce->add_flag("--dont-append-digest,--dont_append_digest", ea->dont_append_digest,
               "Do not append the SHA-256");
  add_number_option(ce, "--elf-sha256-offset,--elf_sha256_offset", ea->sha_offset,
                    "Write the ELF's SHA-256 at this image offset (IDF apps: 0xb0)");
  ce->add_flag("--secure-pad,--secure_pad", ea->opt.secure_pad,
               "Pad for a Secure Boot v1 signature (ESP32 only)");
  ce->add_flag("--secure-pad-v2,--secure_pad_v2", ea->opt.secure_pad_v2,
               "Pad for a Secure Boot v2 signature");
  ce->add_option("--pad-to-size,--pad_to_size", ea->opt.pad_to_size,
                 "Pad the file with 0xFF to a multiple (4KB, 1MB)");
  ce->add_option("--flash-mmu-page-size,--flash_mmu_page_size", ea->opt.flash_mmu_page_size,
                 "MMU page size: 64KB, 32KB, 16KB, 8KB (C2, C5, C6, C61, H2)");
  ce->add_flag("--use-segments,--use_segments", ea->opt.use_segments,
               "Use ELF program headers, not sections");
  ce->add_flag("--ram-only-header,--ram_only_header", ea->opt.ram_only_header,
               "Only RAM segments in the header and checksum, flash segments after them, no SHA-256 "
               "(an image the ROM loads directly)");
  ce->add_option(
        "--version,-e", ea->opt.version,
        "ESP8266 image format 1, 2 or 3 (default 1; ota32 makes 3); ignored for ESP32-family chips, as "
        "by esptool")
      ->check(CLI::IsMember({1, 2, 3}));
  ce->callback([ea] { set_exit_code(run_elf2image(*ea)); });
}

}  // namespace

OTA32_REGISTER_COMMANDS(40, register_image, "image");

}  // namespace ota32::cli
