#include "device/esptool_args.h"

#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <array>

#include "core/file_io.h"
#include "core/numbers.h"

namespace ota32 {

namespace fs = std::filesystem;

namespace {

constexpr std::array<std::string_view, 6> kCommands = {"write_flash",  "read_flash", "erase_flash",
                                                       "erase_region", "merge_bin",  "image_info"};
constexpr std::array<std::string_view, 4> kAfter = {"hard_reset", "soft_reset", "no_reset", "no_reset_stub"};
constexpr std::array<std::string_view, 4> kBefore = {"default_reset", "usb_reset", "no_reset",
                                                     "no_reset_no_sync"};

bool is_command(std::string_view s) {
  return std::find(kCommands.begin(), kCommands.end(), s) != kCommands.end();
}

// Python's shlex.split (POSIX mode, no comments): whitespace separates words; '...' is literal; "..."
// keeps \" \\ \$ \` escapes; a backslash outside quotes escapes the next character.
Result<std::vector<std::string>> shlex_split(std::string_view line, std::string_view where) {
  std::vector<std::string> out;
  std::string word;
  bool in_word = false;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      if (in_word) out.push_back(std::move(word)), word.clear(), in_word = false;
    } else if (c == '\'') {
      auto end = line.find('\'', i + 1);
      if (end == std::string_view::npos)
        return Error(ErrorCode::invalid_argument, fmt::format("{}: No closing quotation", where));
      word.append(line.substr(i + 1, end - i - 1));
      i = end;
      in_word = true;
    } else if (c == '"') {
      size_t j = i + 1;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size() &&
            std::string_view("\\\"$`\n").find(line[j + 1]) != std::string_view::npos)
          ++j;
        word.push_back(line[j]);
      }
      if (j >= line.size())
        return Error(ErrorCode::invalid_argument, fmt::format("{}: No closing quotation", where));
      i = j;
      in_word = true;
    } else if (c == '\\') {
      if (i + 1 >= line.size())
        return Error(ErrorCode::invalid_argument, fmt::format("{}: No escaped character", where));
      word.push_back(line[++i]);
      in_word = true;
    } else {
      word.push_back(c);
      in_word = true;
    }
  }
  if (in_word) out.push_back(std::move(word));
  return out;
}

// "--name=value" / "--name value"; `i` is moved past the value.
Result<std::string> take_value(const std::vector<std::string>& a, size_t& i, std::string_view opt) {
  const std::string& t = a[i];
  if (auto eq = t.find('='); eq != std::string::npos && t.rfind("--", 0) == 0) return t.substr(eq + 1);
  if (i + 1 >= a.size())
    return Error(ErrorCode::invalid_argument, fmt::format("{}: expected one argument", opt));
  return a[++i];
}

// The option's name without an "=value" part.
std::string_view option_name(const std::string& t) {
  std::string_view v = t;
  if (v.rfind("--", 0) == 0) {
    if (auto eq = v.find('='); eq != std::string_view::npos) v = v.substr(0, eq);
  }
  return v;
}

bool one_of(std::string_view name, std::initializer_list<std::string_view> names) {
  for (auto n : names)
    if (n == name) return true;
  return false;
}

std::string join(auto const& names) {
  std::string s;
  for (auto n : names) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// write_flash's and merge_bin's --flash_mode/--flash_freq/--flash_size (both spellings, esptool's short
// forms -fm/-ff/-fs). True when `name` was one of them.
Result<bool> flash_param(const std::vector<std::string>& a, size_t& i, std::string_view name,
                         WriteFlashOptions& w) {
  if (one_of(name, {"--flash_mode", "--flash-mode", "-fm"})) {
    OTA32_ASSIGN(w.flash_mode, take_value(a, i, "--flash_mode"));
  } else if (one_of(name, {"--flash_freq", "--flash-freq", "-ff"})) {
    OTA32_ASSIGN(w.flash_freq, take_value(a, i, "--flash_freq"));
  } else if (one_of(name, {"--flash_size", "--flash-size", "-fs"})) {
    OTA32_ASSIGN(w.flash_size, take_value(a, i, "--flash_size"));
  } else {
    return false;
  }
  return true;
}

Error unknown_option(std::string_view command, std::string_view opt) {
  return Error(ErrorCode::invalid_argument, fmt::format("{}: unrecognized argument '{}'", command, opt));
}

// esptool's global options (before the command word; ota32 also takes them after it).
Result<bool> global_option(const std::vector<std::string>& a, size_t& i, std::string_view name,
                           EsptoolArgs& r) {
  if (one_of(name, {"--chip", "-c"})) {
    OTA32_ASSIGN(r.chip, take_value(a, i, "--chip"));
  } else if (one_of(name, {"--port", "-p"})) {
    OTA32_ASSIGN(r.port, take_value(a, i, "--port"));
  } else if (one_of(name, {"--baud", "-b"})) {
    OTA32_ASSIGN(auto v, take_value(a, i, "--baud"));
    auto b = parse_u32(v, "--baud");
    if (!b || *b < 300) {
      return Error(ErrorCode::invalid_argument, fmt::format("--baud: '{}' is not a baud rate", v));
    }
    r.baud = *b;
  } else if (name == "--before") {
    OTA32_ASSIGN(r.before, take_value(a, i, "--before"));
    if (std::find(kBefore.begin(), kBefore.end(), r.before) == kBefore.end()) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("--before: '{}' is not one of {}", r.before, join(kBefore)));
    }
  } else if (one_of(name, {"--after", "-a"})) {
    OTA32_ASSIGN(r.after, take_value(a, i, "--after"));
    if (std::find(kAfter.begin(), kAfter.end(), r.after) == kAfter.end()) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("--after: '{}' is not one of {}", r.after, join(kAfter)));
    }
  } else if (one_of(name, {"--no-stub", "--trace", "-t", "--override-vddsdio", "--connect-attempts"})) {
    return Error(
        ErrorCode::unsupported,
        fmt::format("{}: not modelled by the virtual device (it always runs the flasher stub)", name));
  } else {
    return false;
  }
  return true;
}

}  // namespace

bool is_esptool_command(std::string_view word) { return is_command(word); }

Result<std::vector<std::string>> expand_arg_files(const std::vector<std::string>& args, bool* expanded) {
  std::vector<std::string> out;
  bool any = false;
  for (const auto& a : args) {
    if (a.size() < 2 || a[0] != '@') {
      out.push_back(a);
      continue;
    }
    any = true;
    const std::string file = a.substr(1);
    auto text = read_text_file(file);
    if (!text) return text.error().with_context("@" + file);
    size_t start = 0;
    int line_no = 1;
    while (start < text->size()) {
      size_t end = text->find('\n', start);
      if (end == std::string::npos) end = text->size();
      OTA32_ASSIGN(auto words, shlex_split(std::string_view(*text).substr(start, end - start),
                                           fmt::format("@{} line {}", file, line_no)));
      for (auto& w : words) out.push_back(std::move(w));
      start = end + 1;
      ++line_no;
    }
  }
  if (expanded) *expanded = any;
  return out;
}

std::vector<std::string> arg_file_names(const std::vector<std::string>& args) {
  std::vector<std::string> names;
  for (const auto& a : args)
    if (a.size() > 1 && a[0] == '@') names.push_back(a.substr(1));
  return names;
}

fs::path resolve_flash_file(const std::string& name, const std::vector<std::string>& arg_files) {
  fs::path p = name;
  std::error_code ec;
  if (p.is_absolute() || fs::exists(p, ec)) return p;
  for (const auto& af : arg_files) {
    fs::path alt = fs::path(af).parent_path() / p;
    if (fs::exists(alt, ec)) return alt;
  }
  return p;
}

Result<EsptoolArgs> parse_esptool_args(const std::vector<std::string>& in, std::string_view default_command) {
  bool expanded = false;
  OTA32_ASSIGN(auto a, expand_arg_files(in, &expanded));
  EsptoolArgs r;
  if (expanded) r.expanded = a;
  size_t i = 0;
  // Global options, up to the command word.
  for (; i < a.size(); ++i) {
    const std::string& t = a[i];
    OTA32_ASSIGN(bool was_global, global_option(a, i, option_name(t), r));
    if (was_global) {
      continue;
    } else if (is_command(t)) {
      r.command = t;
      ++i;
      break;
    } else if (!default_command.empty()) {
      r.command = default_command;
      break;
    } else if (!t.empty() && t[0] == '-') {
      return unknown_option("esptool", t);
    } else {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("'{}' is not an esptool command (choose from {})", t, join(kCommands)));
    }
  }
  if (r.command.empty()) {
    if (default_command.empty()) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("no esptool command given (choose from {})", join(kCommands)));
    }
    r.command = default_command;
  }
  const std::string& cmd = r.command;
  std::vector<std::string> pos;
  for (; i < a.size(); ++i) {
    const std::string& t = a[i];
    if (t.size() < 2 || t[0] != '-' || (t[1] >= '0' && t[1] <= '9')) {
      pos.push_back(t);
      continue;
    }
    const std::string_view name = option_name(t);
    if (cmd == "write_flash" || cmd == "merge_bin") {
      OTA32_ASSIGN(bool was_param, flash_param(a, i, name, r.write));
      if (was_param) continue;
    }
    if (cmd == "write_flash") {
      if (one_of(name, {"--compress", "-z"})) {
        r.write.compress = true;
      } else if (one_of(name, {"--no-compress", "-u"})) {
        r.write.compress = false;
      } else if (one_of(name, {"--erase-all", "-e"})) {
        r.write.erase_all = true;
      } else if (name == "--force") {
        r.write.force = true;
      } else if (name == "--verify") {
        // Deprecated in esptool: the flash is always verified.
      } else if (one_of(name, {"--encrypt", "--encrypt-files"})) {
        return Error(ErrorCode::unsupported,
                     fmt::format("{}: flash encryption is not modelled by the virtual device", t));
      } else {
        OTA32_ASSIGN(bool was_global, global_option(a, i, name, r));
        if (!was_global) return unknown_option(cmd, t);
      }
    } else if (cmd == "merge_bin") {
      if (one_of(name, {"--output", "-o"})) {
        OTA32_ASSIGN(r.output, take_value(a, i, "--output"));
      } else if (one_of(name, {"--format", "-f"})) {
        OTA32_ASSIGN(r.format, take_value(a, i, "--format"));
      } else if (one_of(name, {"--target-offset", "-t"})) {
        OTA32_ASSIGN(auto v, take_value(a, i, "--target-offset"));
        OTA32_ASSIGN(r.target_offset, parse_u32(v, "--target-offset"));
      } else if (one_of(name, {"--fill-flash-size", "--pad-to-size"})) {
        OTA32_ASSIGN(r.fill_flash_size, take_value(a, i, "--fill-flash-size"));
      } else {
        OTA32_ASSIGN(bool was_global, global_option(a, i, name, r));
        if (!was_global) return unknown_option(cmd, t);
      }
    } else if (cmd == "read_flash" && one_of(name, {"--no-progress", "-p"})) {
      r.no_progress = true;
    } else if ((cmd == "erase_flash" || cmd == "erase_region") && name == "--force") {
      r.force = true;
    } else if (cmd == "image_info" && one_of(name, {"--version", "-v"})) {
      OTA32_ASSIGN(auto v, take_value(a, i, "--version"));
      if (v != "1" && v != "2") {
        return Error(ErrorCode::invalid_argument, fmt::format("--version: '{}' is not one of 1, 2", v));
      }
      r.image_info_version = v == "1" ? 1 : 2;
    } else {
      OTA32_ASSIGN(bool was_global, global_option(a, i, name, r));
      if (!was_global) return unknown_option(cmd, t);
    }
  }
  r.write.after = r.after;
  r.write.baud = r.baud;
  if (cmd == "write_flash" || cmd == "merge_bin") {
    if (pos.size() % 2 != 0) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("{}: '{}' has no file after it (give ADDR FILE pairs)", cmd, pos.back()));
    }
    for (size_t k = 0; k < pos.size(); k += 2) r.pairs.emplace_back(pos[k], pos[k + 1]);
    if (cmd == "merge_bin" && r.output.empty()) {
      return Error(ErrorCode::invalid_argument,
                   "merge_bin: the following arguments are required: --output/-o");
    }
  } else {
    const size_t want = cmd == "read_flash" ? 3 : cmd == "erase_region" ? 2 : cmd == "image_info" ? 1 : 0;
    if (pos.size() != want) {
      static constexpr std::string_view kUsage[] = {"ADDRESS SIZE FILENAME", "ADDRESS SIZE", "FILENAME", ""};
      std::string_view usage = cmd == "read_flash"     ? kUsage[0]
                               : cmd == "erase_region" ? kUsage[1]
                               : cmd == "image_info"   ? kUsage[2]
                                                       : kUsage[3];
      return Error(ErrorCode::invalid_argument,
                   usage.empty() ? fmt::format("{}: takes no arguments, got '{}'", cmd, pos.front())
                                 : fmt::format("{}: expected {} (got {} argument{})", cmd, usage, pos.size(),
                                               pos.size() == 1 ? "" : "s"));
    }
    r.positionals = std::move(pos);
  }
  return r;
}

Result<BuildFlashArgs> read_flasher_args(const fs::path& build_dir) {
  const fs::path file = build_dir / "flasher_args.json";
  const std::string where = file.string();
  std::error_code ec;
  if (!fs::exists(file, ec)) {
    return Error(ErrorCode::not_found,
                 fmt::format("{}: no such file: {} is not an ESP-IDF build directory (run `idf.py build`)",
                             where, build_dir.string()));
  }
  OTA32_ASSIGN(auto text, read_text_file(file));
  auto j = nlohmann::ordered_json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Error(ErrorCode::invalid_argument, fmt::format("{}: not a JSON object", where));
  }
  auto bad = [&](std::string_view key, std::string_view what) {
    return Error(ErrorCode::invalid_argument, fmt::format("{}: {}: {}", where, key, what));
  };
  auto string_at = [&](const nlohmann::ordered_json& obj, const char* key, std::string_view path,
                       std::string& out) -> Result<void> {
    auto it = obj.find(key);
    if (it == obj.end()) return bad(fmt::format("{}.{}", path, key), "missing");
    if (!it->is_string()) return bad(fmt::format("{}.{}", path, key), "not a string");
    out = it->get<std::string>();
    return {};
  };
  BuildFlashArgs r;
  auto fs_it = j.find("flash_settings");
  if (fs_it == j.end() || !fs_it->is_object()) return bad("flash_settings", "missing or not an object");
  OTA32_TRY(string_at(*fs_it, "flash_mode", "flash_settings", r.flash_mode));
  OTA32_TRY(string_at(*fs_it, "flash_freq", "flash_settings", r.flash_freq));
  OTA32_TRY(string_at(*fs_it, "flash_size", "flash_settings", r.flash_size));
  auto ex = j.find("extra_esptool_args");
  if (ex == j.end() || !ex->is_object()) return bad("extra_esptool_args", "missing or not an object");
  OTA32_TRY(string_at(*ex, "chip", "extra_esptool_args", r.chip));
  OTA32_TRY(string_at(*ex, "before", "extra_esptool_args", r.before));
  OTA32_TRY(string_at(*ex, "after", "extra_esptool_args", r.after));
  if (auto st = ex->find("stub"); st != ex->end() && st->is_boolean() && !st->get<bool>()) {
    return Error(ErrorCode::unsupported,
                 fmt::format("{}: extra_esptool_args.stub: false (CONFIG_ESPTOOLPY_NO_STUB): the ROM "
                             "loader's transfer is not modelled; the virtual device always runs the stub",
                             where));
  }
  // One entry per image: "app" : { "offset" : "0x10000", "file" : "simple_ota.bin", "encrypted" : "false" }.
  for (const auto& [key, v] : j.items()) {
    if (!v.is_object() || !v.contains("offset") || !v.contains("file")) continue;
    auto enc = v.find("encrypted");
    if (enc == v.end()) continue;
    bool encrypted =
        (enc->is_string() && enc->get<std::string>() == "true") || (enc->is_boolean() && enc->get<bool>());
    if (encrypted) {
      return Error(ErrorCode::unsupported,
                   fmt::format("{}: {}: \"encrypted\" : \"true\" (flash encryption, development mode): the "
                               "virtual device does not model flash encryption; flash a build without "
                               "CONFIG_SECURE_FLASH_ENC_ENABLED",
                               where, key));
    }
  }
  auto ff = j.find("flash_files");
  if (ff == j.end() || !ff->is_object()) return bad("flash_files", "missing or not an object");
  for (const auto& [offset, name] : ff->items()) {
    if (!name.is_string()) return bad(fmt::format("flash_files.{}", offset), "not a file name");
    auto addr = parse_u32(offset, "offset");
    if (!addr) return bad(fmt::format("flash_files.{}", offset), "not a flash offset");
    BuildFlashFile f;
    f.addr = *addr;
    f.name = name.get<std::string>();
    f.path = build_dir / f.name;
    r.files.push_back(std::move(f));
  }
  if (r.files.empty()) return bad("flash_files", "empty: nothing to flash");
  return r;
}

}  // namespace ota32
