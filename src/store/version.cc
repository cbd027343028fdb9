#include "store/version.h"

#include <charconv>
#include <cstdint>
#include <vector>

namespace ota32 {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (;;) {
    size_t pos = s.find(sep, start);
    out.push_back(s.substr(start, pos == std::string_view::npos ? std::string_view::npos : pos - start));
    if (pos == std::string_view::npos) return out;
    start = pos + 1;
  }
}

std::optional<uint64_t> as_number(std::string_view s) {
  if (s.empty() || s.size() > 18) return std::nullopt;
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Numbers sort before text; an empty part ("" or "1..2") counts as 0.
int compare_part(std::string_view a, std::string_view b) {
  if (a.empty()) a = "0";
  if (b.empty()) b = "0";
  auto na = as_number(a), nb = as_number(b);
  if (na && nb) return *na < *nb ? -1 : (*na > *nb ? 1 : 0);
  if (na) return -1;
  if (nb) return 1;
  int c = a.compare(b);
  return c < 0 ? -1 : (c > 0 ? 1 : 0);
}

struct Parsed {
  std::vector<std::string_view> core;
  std::vector<std::string_view> pre;  // empty: a release
};

Parsed parse(std::string_view v) {
  while (!v.empty() && v.front() == ' ') v.remove_prefix(1);
  if (!v.empty() && (v.front() == 'v' || v.front() == 'V')) v.remove_prefix(1);
  if (auto plus = v.find('+'); plus != std::string_view::npos) v = v.substr(0, plus);
  Parsed p;
  if (auto dash = v.find('-'); dash != std::string_view::npos) {
    p.pre = split(v.substr(dash + 1), '.');
    v = v.substr(0, dash);
  }
  p.core = split(v, '.');
  return p;
}

}  // namespace

int compare_versions(std::string_view a, std::string_view b) {
  Parsed pa = parse(a), pb = parse(b);
  size_t n = std::max(pa.core.size(), pb.core.size());
  for (size_t i = 0; i < n; ++i) {
    std::string_view x = i < pa.core.size() ? pa.core[i] : "0";
    std::string_view y = i < pb.core.size() ? pb.core[i] : "0";
    if (int c = compare_part(x, y)) return c;
  }
  if (pa.pre.empty() || pb.pre.empty()) {
    if (pa.pre.empty() && pb.pre.empty()) return 0;
    return pa.pre.empty() ? 1 : -1;
  }
  for (size_t i = 0; i < std::min(pa.pre.size(), pb.pre.size()); ++i)
    if (int c = compare_part(pa.pre[i], pb.pre[i])) return c;
  if (pa.pre.size() == pb.pre.size()) return 0;
  return pa.pre.size() < pb.pre.size() ? -1 : 1;
}

std::optional<std::string> esp32fota_version(std::string_view version) {
  // esp32FOTA's semver_parse: leading spaces allowed, up to three numeric parts, a fourth part ignored,
  // anything else (prefix, pre-release, build) invalid. The JSON integer form (0..65535) is not used here.
  while (!version.empty() && version.front() == ' ') version.remove_prefix(1);
  if (version.empty()) return std::nullopt;
  auto parts = split(version, '.');
  uint64_t nums[3] = {0, 0, 0};
  for (size_t i = 0; i < parts.size() && i < 4; ++i) {
    auto n = as_number(parts[i]);
    if (!n) return std::nullopt;
    if (i < 3) nums[i] = *n;
  }
  if (parts.size() > 4) return std::nullopt;
  return std::to_string(nums[0]) + "." + std::to_string(nums[1]) + "." + std::to_string(nums[2]);
}

}  // namespace ota32
