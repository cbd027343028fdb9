#include "agent/https_ota.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <thread>

#include "core/file_io.h"
#include "core/numbers.h"
#include "core/splitmix.h"

namespace ota32::agent {
namespace {

constexpr const char* kTag = "esp_https_ota";
constexpr uint32_t kMinResumeBytes = 1024;  // esp_https_ota resumes only from ota_image_bytes_written >= 1024

bool retryable(const Error& e) {
  return e.code() == ErrorCode::unavailable || e.code() == ErrorCode::timeout;
}

// "bytes 100-199/5000" -> (100, 5000)
std::optional<std::pair<uint64_t, std::optional<uint64_t>>> parse_content_range(const std::string& v) {
  if (!v.starts_with("bytes ")) return std::nullopt;
  auto dash = v.find('-');
  auto slash = v.find('/');
  if (dash == std::string::npos || slash == std::string::npos) return std::nullopt;
  auto start = parse_number(v.substr(6, dash - 6), "Content-Range");
  if (!start) return std::nullopt;
  std::optional<uint64_t> total;
  if (v.substr(slash + 1) != "*") {
    auto t = parse_number(v.substr(slash + 1), "Content-Range");
    if (!t) return std::nullopt;
    total = *t;
  }
  return std::make_pair(*start, total);
}

std::string printable_prefix(ByteView b) {
  std::string s;
  for (uint8_t c : b.first(std::min<size_t>(b.size(), 80))) {
    if (c == '\r' || c == '\n') break;
    s += std::isprint(c) ? static_cast<char>(c) : '.';
  }
  return s;
}

bool looks_like_text(ByteView b) {
  size_t n = std::min<size_t>(b.size(), 64);
  if (n == 0) return false;
  for (size_t i = 0; i < n; ++i) {
    if (!std::isprint(b[i]) && b[i] != '\r' && b[i] != '\n' && b[i] != '\t') return false;
  }
  return true;
}

// The ESP_ERR name esp_https_ota prints for an esp_ota_begin failure ("esp_ota_begin failed (%s)"). The
// target is always the next update partition, never the running one, so these are the codes left.
std::string_view begin_error_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::rollback_refused:
      return "ESP_ERR_OTA_ROLLBACK_INVALID_STATE";
    case ErrorCode::out_of_range:
      return "ESP_ERR_INVALID_SIZE";
    case ErrorCode::invalid_argument:
      return "ESP_ERR_INVALID_ARG";
    default:
      return "ESP_ERR_FLASH_OP_FAIL";
  }
}

}  // namespace

std::chrono::milliseconds reconnect_delay(const ReconnectBackoff& b, int failures_in_a_row) {
  std::chrono::milliseconds d = b.initial;
  for (int i = 1; i < failures_in_a_row && d < b.max; ++i) d *= 2;
  d = std::min(d, b.max);
  if (!b.jitter_seed || d.count() < 2) return d;
  // The (failures_in_a_row + 1)-th value of the device's own sequence: uniform enough, the same every run.
  SplitMix64 rng(*b.jitter_seed);
  for (int i = 0; i < failures_in_a_row; ++i) rng.next();
  uint64_t z = rng.next();
  auto half = d.count() / 2;
  return std::chrono::milliseconds(half + static_cast<long>(z % static_cast<uint64_t>(d.count() - half + 1)));
}

Result<std::optional<DownloadProgress>> FileProgressStore::load() {
  if (!std::filesystem::exists(path_)) return std::optional<DownloadProgress>();
  OTA32_ASSIGN(std::string text, read_text_file(path_));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("url") || !j["url"].is_string() ||
      !j.contains("slot_offset") || !j["slot_offset"].is_number_unsigned() || !j.contains("written") ||
      !j["written"].is_number_unsigned()) {
    return Error(ErrorCode::corrupt, fmt::format("{}: not a download-progress record", path_.string()));
  }
  DownloadProgress p;
  p.url = j["url"].get<std::string>();
  p.slot_offset = j["slot_offset"].get<uint32_t>();
  p.written = j["written"].get<uint32_t>();
  if (j.contains("total") && j["total"].is_number_unsigned()) p.total = j["total"].get<uint64_t>();
  return std::optional<DownloadProgress>(p);
}

Result<void> FileProgressStore::save(const DownloadProgress& p) {
  nlohmann::json j = {{"url", p.url}, {"slot_offset", p.slot_offset}, {"written", p.written}};
  if (p.total) j["total"] = *p.total;
  return write_file_atomic(path_, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n",
                           Durability::synced);
}

Result<void> FileProgressStore::clear() {
  std::error_code ec;
  std::filesystem::remove(path_, ec);
  if (ec) return Error(ErrorCode::io_error, fmt::format("{}: {}", path_.string(), ec.message()));
  return {};
}

Result<HttpsOtaResult> https_ota(Flash& flash, const PartitionTable& table, const PartitionEntry* running,
                                 const HttpsOtaConfig& cfg, AgentLog& log) {
  HttpsOtaResult result;
  const PartitionEntry* slot = next_update_partition(table, running);
  if (slot == nullptr) {
    log.error(kTag, "Given staging partition or another suitable Passive OTA partition could not be found");
    return Error(ErrorCode::not_found, "the partition table has no OTA app slot (ota_0) to write to");
  }
  result.slot = *slot;
  if (cfg.expected_size && *cfg.expected_size > slot->size) {
    return Error(ErrorCode::out_of_range,
                 fmt::format("firmware is {} bytes, larger than the {} partition ({} = {:#x} bytes)",
                             *cfg.expected_size, slot->name, format_size(slot->size), slot->size));
  }
  HttpClient client(cfg.http);

  // A download interrupted by a reboot continues where the flash says it got to.
  std::unique_ptr<OtaWriter> writer;
  std::optional<uint64_t> total = cfg.expected_size;
  if (cfg.progress != nullptr) {
    OTA32_ASSIGN(auto saved, cfg.progress->load());
    if (saved && saved->url == cfg.url && saved->slot_offset == slot->offset &&
        saved->written >= kMinResumeBytes) {
      auto w = OtaWriter::resume(flash, table, *slot, running, cfg.writer, saved->written, &log);
      if (w) {
        writer = std::move(*w);
        result.resumed_from = writer->written();
        if (!total) total = saved->total;
      }
    }
    if (!writer && saved) OTA32_TRY(cfg.progress->clear());
  }

  uint64_t next_save = 0;
  auto save_progress = [&]() -> Result<void> {
    if (cfg.progress == nullptr || writer == nullptr || writer->written() < next_save) return {};
    next_save = writer->written() + cfg.progress_every;
    return cfg.progress->save({cfg.url, slot->offset, writer->written(), total});
  };
  auto give_up = [&](const Error& e) -> Error {
    // A bad image or a refused update will not get better: forget the partial download. Not after a power
    // loss: on the chip nothing runs after it, so the progress saved before it is what the next boot resumes.
    if (!retryable(e) && e.code() != ErrorCode::power_lost && cfg.progress != nullptr) {
      (void)cfg.progress->clear();
    }
    return e;
  };

  // Reconnects after unavailable / timeout wait (config.backoff); the decision is by ErrorCode only.
  int failures_in_a_row = 0;
  bool wait_before_next = false;
  auto connection_failed = [&](uint64_t offset_at_start) {
    if (writer && writer->written() > offset_at_start) failures_in_a_row = 0;  // it made progress
    ++failures_in_a_row;
    wait_before_next = true;
  };

  bool announced = false;
  std::vector<uint8_t> buf(1024);  // esp_https_ota's buffer: max(buffer_size, 1024)
  std::optional<Error> last_error;
  for (int attempt = 0; attempt < cfg.max_connections; ++attempt) {
    if (wait_before_next) {
      auto delay = reconnect_delay(cfg.backoff, failures_in_a_row);
      log.info(kTag, fmt::format("Reconnecting in {} ms (connection {} of {})", delay.count(), attempt + 1,
                                 cfg.max_connections));
      if (cfg.sleep) {
        cfg.sleep(delay);
      } else {
        std::this_thread::sleep_for(delay);
      }
      wait_before_next = false;
    }
    uint64_t offset = writer ? writer->written() : 0;
    HttpRequest req;
    req.url = cfg.url;
    if (offset > 0) req.headers.push_back({"Range", fmt::format("bytes={}-", offset)});
    ++result.connections;
    auto sent = client.send(req);
    if (!sent) {
      if (!retryable(sent.error())) return give_up(sent.error());
      log.error(kTag, fmt::format("Failed to open HTTP connection: {}", sent.error().message()));
      last_error = sent.error();
      connection_failed(offset);
      continue;
    }
    HttpResponse& resp = **sent;
    int status = resp.status();
    if (status == 403 || status == 404) {
      log.error(kTag, fmt::format("File not found({})", status));
      return give_up(
          Error(ErrorCode::not_found, fmt::format("firmware not found at {} (HTTP {})", cfg.url, status)));
    }
    if (status == 416 && offset > 0) {  // the saved range no longer fits: start over
      log.warn(kTag,
               "Requested range is incorrect (status code: 416); restarting download from the beginning");
      writer.reset();
      continue;
    }
    if (status >= 400 && status < 500) {
      log.error(kTag, fmt::format("Client error ({})", status));
      return give_up(
          Error(ErrorCode::invalid_argument, fmt::format("{}: HTTP {} {}", cfg.url, status, resp.reason())));
    }
    if (status >= 500) {
      log.error(kTag, fmt::format("Server error ({})", status));
      last_error = Error(ErrorCode::unavailable,
                         fmt::format("{}: server error HTTP {} {}", cfg.url, status, resp.reason()));
      connection_failed(offset);
      continue;
    }
    if (status < 200 || status >= 300) {
      return give_up(
          Error(ErrorCode::corrupt, fmt::format("{}: unexpected HTTP status {}", cfg.url, status)));
    }
    uint64_t skip = 0;  // bytes of the body that are already in flash
    if (offset > 0) {
      if (status == 206) {
        auto cr = resp.header("Content-Range");
        auto range = cr ? parse_content_range(*cr) : std::nullopt;
        if (!range || range->first != offset) {
          return give_up(
              Error(ErrorCode::corrupt, fmt::format("{}: asked for bytes from {}, the server sent '{}'",
                                                    cfg.url, offset, cr.value_or("no Content-Range"))));
        }
        if (range->second) total = range->second;
      } else {
        log.warn(kTag, "Server ignored the requested Range header");
        skip = offset;
        if (resp.content_length()) total = resp.content_length();
      }
    } else if (resp.content_length()) {
      total = resp.content_length();
    }
    if (total && *total > slot->size) {
      return give_up(
          Error(ErrorCode::out_of_range,
                fmt::format("firmware at {} is {} bytes, larger than the {} partition ({} = {:#x} bytes)",
                            cfg.url, *total, slot->name, format_size(slot->size), slot->size)));
    }
    if (!announced) {
      log.info(kTag, "Starting OTA...");
      log.info(kTag,
               fmt::format("Writing to partition subtype {} at offset {:#x}", slot->subtype, slot->offset));
      if (result.resumed_from > 0) {
        log.info(kTag, fmt::format("Resuming the interrupted download at byte {}", result.resumed_from));
      }
      announced = true;
    }
    if (!writer) {
      auto w = OtaWriter::begin(flash, table, *slot, running, cfg.writer, &log);
      if (!w) {
        log.error(kTag, fmt::format("esp_ota_begin failed ({})", begin_error_name(w.error().code())));
        return give_up(w.error());
      }
      writer = std::move(*w);
    }
    // Perform: stream the body into flash.
    std::optional<Error> read_error;
    for (uint64_t guard = 0; guard < (uint64_t{1} << 32); ++guard) {
      auto n = resp.read(buf);
      if (!n) {
        read_error = n.error();
        break;
      }
      if (*n == 0) break;
      ByteView chunk(buf.data(), *n);
      if (skip > 0) {
        size_t drop = static_cast<size_t>(std::min<uint64_t>(skip, chunk.size()));
        skip -= drop;
        chunk = chunk.subspan(drop);
        if (chunk.empty()) continue;
      }
      if (cfg.stop_after != 0 && writer->written() + chunk.size() > cfg.stop_after) {
        chunk = chunk.first(
            static_cast<size_t>(cfg.stop_after - std::min<uint64_t>(cfg.stop_after, writer->written())));
      }
      bool first = writer->written() == 0;
      if (auto r = writer->write(chunk); !r) {
        if (first && r.error().code() == ErrorCode::corrupt && looks_like_text(chunk)) {
          std::string text = printable_prefix(chunk);
          if (text.starts_with("Error opening")) {  // openssl s_server -WWW's answer for a missing file
            return give_up(
                Error(ErrorCode::not_found,
                      fmt::format("firmware not found at {} (the server answered: {})", cfg.url, text)));
          }
          return give_up(
              Error(ErrorCode::corrupt,
                    fmt::format("{} is not a firmware image (the server sent text: '{}')", cfg.url, text)));
        }
        // A refusal of the image header check is logged there, not as a failed write.
        if (r.error().code() != ErrorCode::rollback_refused) {
          log.error(kTag, fmt::format("Error: esp_ota_write failed! {}", r.error().message()));
        }
        return give_up(r.error());
      }
      OTA32_TRY(save_progress());
      if (cfg.on_progress) cfg.on_progress(writer->written(), total);
      if (cfg.stop_after != 0 && writer->written() >= cfg.stop_after) {
        if (cfg.progress != nullptr) {
          OTA32_TRY(cfg.progress->save({cfg.url, slot->offset, writer->written(), total}));
        }
        return Error(ErrorCode::power_lost,
                     fmt::format("stopped after {} bytes of {} (as asked)", writer->written(), cfg.url));
      }
    }
    if (read_error) {
      log.error(kTag,
                fmt::format("data read failed after {} bytes: {}", writer->written(), read_error->message()));
      if (!retryable(*read_error)) return give_up(*read_error);
      if (cfg.progress != nullptr && writer->written() > 0) {
        OTA32_TRY(cfg.progress->save({cfg.url, slot->offset, writer->written(), total}));
      }
      last_error = read_error;
      connection_failed(offset);
      continue;  // reconnect with Range: bytes=<written>-
    }
    if (total && writer->written() < *total) {  // close-delimited body cut short of a known size
      last_error = Error(ErrorCode::unavailable, fmt::format("{}: connection closed after {} of {} bytes",
                                                             cfg.url, writer->written(), *total));
      connection_failed(offset);
      continue;
    }
    // Complete data received.
    log.info(kTag, "Connection closed");
    auto verified = writer->end();
    if (!verified) return give_up(verified.error());
    if (cfg.expected_sha256 && verified->sha256 != *cfg.expected_sha256) {
      return give_up(
          Error(ErrorCode::corrupt, fmt::format("{}: SHA-256 {} does not match the expected {}", cfg.url,
                                                to_hex(verified->sha256), to_hex(*cfg.expected_sha256))));
    }
    if (auto r = writer->set_boot_partition(); !r) {
      log.error(kTag, fmt::format("esp_ota_set_boot_partition failed! {}", r.error().message()));
      return give_up(r.error());
    }
    if (cfg.progress != nullptr) OTA32_TRY(cfg.progress->clear());
    result.image = *verified;
    return result;
  }
  Error e = last_error.value_or(Error(ErrorCode::unavailable, "no connection attempt was made"));
  return Error(e.code(),
               fmt::format("download failed after {} connections: {}", result.connections, e.message()));
}

}  // namespace ota32::agent
