// The report of `esptool.py image_info` v4.8.1 (spec/esp-app-image.md §9), reproduced line for line
// (without esptool's banner line) so that scripts reading esptool's output can read ours.
#pragma once

#include <optional>
#include <string>

#include "core/bytes.h"
#include "core/result.h"
#include "format/chip.h"

namespace ota32 {

struct ImageInfoOptions {
  const ChipInfo* chip = nullptr;  // nullptr: detected from the header ("Detected image type: ...")
  std::string chip_arg;            // the --chip text as given (titles use it upper-cased)
  int version = 2;                 // 1: the legacy report, 2: the extended one with the app descriptor
  std::string file_name = "image";
};

struct ImageInfoReport {
  std::string text;                // stdout, exactly as esptool prints it (NUL bytes included)
  const ChipInfo* chip = nullptr;  // whose reader was used (detected or given); esp8266_chip() for ESP8266
  std::optional<Error> error;      // where esptool stops with a fatal error or a traceback; text holds what
                                   // was printed before it
};

ImageInfoReport image_info_report(ByteView data, const ImageInfoOptions& opt);

}  // namespace ota32
