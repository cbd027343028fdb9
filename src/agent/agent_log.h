// Where the agent's ESP-IDF-style log lines go ("I (8168) esp_https_ota: Starting OTA..."): the virtual
// device forwards them to its boot log (same virtual clock); a library user may print or collect them.
// The interface is ota_ops' EspLog, so that the esp_ota_ops calls the agent makes log to the same place.
#pragma once

#include "ota_ops/esp_log.h"

namespace ota32::agent {

using AgentLog = EspLog;
using NullLog = NullEspLog;  // discards everything (the default when the caller passes no log)

}  // namespace ota32::agent
