#include "server/group_filter.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>

#include "store/version.h"

namespace ota32::server {
namespace {

bool valid_value(std::string_view v) {
  if (v.empty() || v.size() > 128) return false;
  for (char c : v)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) return false;
  return true;
}

// Exact, or a prefix match when the pattern ends in '*'.
bool glob(std::string_view pattern, std::string_view s) {
  if (!pattern.empty() && pattern.back() == '*') return s.starts_with(pattern.substr(0, pattern.size() - 1));
  return pattern == s;
}

}  // namespace

Result<GroupFilter> parse_group_filter(std::string_view text) {
  GroupFilter f;
  size_t i = 0, n = 0;
  if (text.size() > 4096) return Error(ErrorCode::invalid_argument, "filter: longer than 4096 bytes");
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    if (i >= text.size()) break;
    size_t end = text.find(' ', i);
    if (end == std::string_view::npos) end = text.size();
    std::string_view term = text.substr(i, end - i);
    i = end;
    ++n;
    auto bad = [&](std::string_view why) {
      return Error(ErrorCode::invalid_argument, fmt::format("filter term {} '{}': {}", n, term, why));
    };
    // The operator: the first of != <= >= = < > after the key.
    size_t at = term.find_first_of("!<>=");
    if (at == std::string_view::npos || at == 0)
      return bad("expected KEY=VALUE (keys: chip, project, channel, id, status, version, tag, attr.NAME)");
    FilterTerm t;
    t.key = std::string(term.substr(0, at));
    std::string_view rest = term.substr(at);
    static constexpr std::array<std::pair<std::string_view, FilterTerm::Op>, 6> kOps{{
        {"!=", FilterTerm::Op::ne},
        {"<=", FilterTerm::Op::le},
        {">=", FilterTerm::Op::ge},
        {"=", FilterTerm::Op::eq},
        {"<", FilterTerm::Op::lt},
        {">", FilterTerm::Op::gt},
    }};
    bool found = false;
    for (const auto& [sym, op] : kOps)
      if (rest.starts_with(sym)) {
        t.op = op;
        t.value = std::string(rest.substr(sym.size()));
        found = true;
        break;
      }
    if (!found) return bad("'!' must be followed by '='");
    static constexpr std::array<std::string_view, 7> kKeys{"chip",   "project", "channel", "id",
                                                           "status", "version", "tag"};
    const bool is_attr = t.key.starts_with("attr.") && t.key.size() > 5 && t.key.size() <= 133;
    if (!is_attr && std::find(kKeys.begin(), kKeys.end(), t.key) == kKeys.end())
      return bad(
          fmt::format("unknown key '{}' (keys: chip, project, channel, id, status, version, tag, "
                      "attr.NAME)",
                      t.key));
    if (!valid_value(t.value)) return bad("the value must be 1-128 characters without spaces");
    const bool ordered = t.op != FilterTerm::Op::eq && t.op != FilterTerm::Op::ne;
    if (ordered && t.key != "version") return bad(fmt::format("{} takes only = or !=", t.key));
    if (ordered && t.value.back() == '*') return bad("a '*' prefix works only with = and !=");
    f.terms.push_back(std::move(t));
  }
  return f;
}

bool matches(const GroupFilter& filter, const DeviceRecord& d, std::string_view running_version) {
  const std::string_view version =
      running_version.empty() ? std::string_view(d.running_version) : running_version;
  for (const FilterTerm& t : filter.terms) {
    bool hit = false;
    if (t.key == "tag") {
      hit = std::any_of(d.tags.begin(), d.tags.end(),
                        [&](const std::string& tag) { return glob(t.value, tag); });
    } else if (t.key == "version" && t.op != FilterTerm::Op::eq && t.op != FilterTerm::Op::ne) {
      if (version.empty()) return false;  // an unknown version is neither below nor above anything
      const int c = compare_versions(version, t.value);
      hit = t.op == FilterTerm::Op::lt   ? c < 0
            : t.op == FilterTerm::Op::le ? c <= 0
            : t.op == FilterTerm::Op::gt ? c > 0
                                         : c >= 0;
      if (!hit) return false;
      continue;
    } else {
      std::string_view field;
      bool present = true;
      if (t.key == "chip")
        field = d.chip;
      else if (t.key == "project")
        field = d.project;
      else if (t.key == "channel")
        field = d.channel;
      else if (t.key == "id")
        field = d.id;
      else if (t.key == "status")
        field = d.auth_status;
      else if (t.key == "version")
        field = version;
      else {
        auto it = d.attributes.find(t.key.substr(5));
        present = it != d.attributes.end();
        if (present) field = it->second;
      }
      hit = present && glob(t.value, field);
    }
    if (t.op == FilterTerm::Op::ne) hit = !hit;
    if (!hit) return false;
  }
  return true;
}

}  // namespace ota32::server
