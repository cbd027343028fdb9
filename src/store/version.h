// Ordering of firmware version strings (esp_app_desc_t.version), used to pick the newest release and to
// decide whether a device is current. SemVer 2.0 precedence, tolerant of what ESP-IDF projects use:
// an optional leading 'v', fewer or more than three numeric parts (missing parts count as 0: "1.2" ==
// "1.2.0"), non-numeric parts compared as text after numbers; "-pre" lowers precedence, "+build" is
// ignored. A `git describe` suffix ("1.0-3-gabc") therefore counts as a pre-release of 1.0.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ota32 {

// <0, 0, >0 like strcmp.
int compare_versions(std::string_view a, std::string_view b);

// The version as esp32FOTA v0.3.0 reads it (numeric "major[.minor[.patch]]", no prefix or suffix),
// normalised to "major.minor.patch"; nullopt when esp32FOTA would reject it (it would read 0.0.0).
std::optional<std::string> esp32fota_version(std::string_view version);

}  // namespace ota32
