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

// openssl s_server -WWW answers a missing file with a text page where the image should be; any other text
// is not an image either. Only for the first bytes of a body whose write was refused as corrupt.
std::optional<Error> text_reply_error(ByteView chunk, const std::string& url) {
  if (!looks_like_text(chunk)) return std::nullopt;
  std::string text = printable_prefix(chunk);
  if (text.starts_with("Error opening")) {
    return Error(ErrorCode::not_found,
                 fmt::format("firmware not found at {} (the server answered: {})", url, text));
  }
  return Error(ErrorCode::corrupt,
               fmt::format("{} is not a firmware image (the server sent text: '{}')", url, text));
}

// clang-format off
constexpr StatusRule kStatusRules[] = {
    {403, 404, false, StatusAction::abort,   ErrorCode::not_found},
    {416, 416, true,  StatusAction::restart, std::nullopt},
    {400, 499, false, StatusAction::abort,   ErrorCode::invalid_argument},
    {500, 999, false, StatusAction::retry,   ErrorCode::unavailable},
    {200, 299, false, StatusAction::stream,  std::nullopt},
    {0,   999, false, StatusAction::abort,   ErrorCode::corrupt},  // 1xx, 3xx left by the redirects
};
// clang-format on

// The line esp_https_ota logs and the error, for a retry / abort row.
Error status_error(const StatusRule& rule, int status, const HttpResponse& resp, const std::string& url,
                   AgentLog& log) {
  switch (*rule.code) {
    case ErrorCode::not_found:
      log.error(kTag, fmt::format("File not found({})", status));
      return Error(*rule.code, fmt::format("firmware not found at {} (HTTP {})", url, status));
    case ErrorCode::invalid_argument:
      log.error(kTag, fmt::format("Client error ({})", status));
      return Error(*rule.code, fmt::format("{}: HTTP {} {}", url, status, resp.reason()));
    case ErrorCode::unavailable:
      log.error(kTag, fmt::format("Server error ({})", status));
      return Error(*rule.code, fmt::format("{}: server error HTTP {} {}", url, status, resp.reason()));
    default:
      return Error(*rule.code, fmt::format("{}: unexpected HTTP status {}", url, status));
  }
}

// One esp_https_ota() under way: the slot, the writer once the first response arrived (or the resumed
// one), what is known of the total, and when progress was last saved.
class Download {
 public:
  Download(Flash& flash, const PartitionTable& table, const PartitionEntry& slot,
           const PartitionEntry* running, const HttpsOtaConfig& cfg, AgentLog& log)
      : flash_(flash),
        table_(table),
        slot_(slot),
        running_(running),
        cfg_(cfg),
        log_(log),
        total_(cfg.expected_size) {}

  // A download interrupted by a reboot continues where the saved progress says the flash got to.
  Result<uint32_t> resume_saved() {
    if (cfg_.progress == nullptr) return 0u;
    OTA32_ASSIGN(auto saved, cfg_.progress->load());
    if (saved && saved->url == cfg_.url && saved->slot_offset == slot_.offset &&
        saved->written >= kMinResumeBytes) {
      auto w = OtaWriter::resume(flash_, table_, slot_, running_, cfg_.writer, saved->written, &log_);
      if (w) {
        writer_ = std::move(*w);
        if (!total_) total_ = saved->total;
        mark_saved();
        return writer_->written();
      }
    }
    if (saved) OTA32_TRY(cfg_.progress->clear());
    return 0u;
  }

  uint64_t written() const { return writer_ ? writer_->written() : 0; }

  // A bad image or a refused update will not get better: forget the partial download. Not after a power
  // loss: on the chip nothing runs after it, so the progress saved before it is what the next boot resumes.
  Error give_up(const Error& e) {
    if (!retryable(e) && e.code() != ErrorCode::power_lost && cfg_.progress != nullptr) {
      (void)cfg_.progress->clear();
    }
    return e;
  }

  enum class End { complete, retry, restart };
  struct Attempt {
    End end;
    std::optional<Error> error;  // retry: why
  };
  // One connection: request from what is in flash, judge the status, stream the body into flash.
  // Errors: the download is over (give_up applied).
  Result<Attempt> attempt(HttpClient& client, uint32_t resumed_from);

  // esp_https_ota_finish: verify, compare with the expected SHA-256, set the boot partition.
  Result<VerifiedImage> finish() {
    log_.info(kTag, "Connection closed");
    auto verified = writer_->end();
    if (!verified) return give_up(verified.error());
    if (cfg_.expected_sha256 && verified->sha256 != *cfg_.expected_sha256) {
      return give_up(
          Error(ErrorCode::corrupt, fmt::format("{}: SHA-256 {} does not match the expected {}", cfg_.url,
                                                to_hex(verified->sha256), to_hex(*cfg_.expected_sha256))));
    }
    if (auto r = writer_->set_boot_partition(); !r) {
      log_.error(kTag, fmt::format("esp_ota_set_boot_partition failed! {}", r.error().message()));
      return give_up(r.error());
    }
    if (cfg_.progress != nullptr) OTA32_TRY(cfg_.progress->clear());
    return *verified;
  }

 private:
  Result<uint64_t> body_start(const HttpResponse& resp, int status, uint64_t offset);
  // Not an aggregate: Result<StreamEnd> must not be constructible from a lone Error as a value.
  struct StreamEnd {
    StreamEnd() = default;
    std::optional<Error> read_error;  // what ended the body early (nullopt: it ended)
  };
  Result<StreamEnd> stream(HttpResponse& resp, uint64_t skip);
  Result<void> save_progress() {
    if (cfg_.progress == nullptr || writer_ == nullptr) return {};
    OTA32_TRY(cfg_.progress->save({cfg_.url, slot_.offset, writer_->written(), total_}));
    mark_saved();
    return {};
  }
  void mark_saved() {
    saved_at_ = writer_ ? writer_->written() : 0;
    if (cfg_.cadence.now) saved_time_ = cfg_.cadence.now();
  }
  // After a write that took the flash from `before` bytes: saves happen only where a write crosses a sector
  // boundary, so a resume (which restarts at the sector holding the saved byte) starts at that boundary
  // whatever the sizes of the network reads were.
  bool save_due(uint64_t before) const {
    const uint64_t w = writer_->written();
    if (w / kFlashSectorSize == before / kFlashSectorSize) return false;
    const uint64_t step = uint64_t{std::max<uint32_t>(cfg_.cadence.sectors, 1)} * kFlashSectorSize;
    if (w / step > saved_at_ / step) return true;
    return cfg_.cadence.now && cfg_.cadence.interval.count() > 0 &&
           cfg_.cadence.now() - saved_time_ >= cfg_.cadence.interval;
  }

  Flash& flash_;
  const PartitionTable& table_;
  const PartitionEntry& slot_;
  const PartitionEntry* running_;
  const HttpsOtaConfig& cfg_;
  AgentLog& log_;
  std::unique_ptr<OtaWriter> writer_;
  std::optional<uint64_t> total_;
  bool announced_ = false;
  std::vector<uint8_t> buf_ = std::vector<uint8_t>(1024);  // esp_https_ota's: max(buffer_size, 1024)
  uint64_t saved_at_ = 0;
  std::chrono::milliseconds saved_time_{0};
};

// The body's first byte is image byte `offset` (206 with a matching Content-Range), or the server ignored
// the Range and sends the whole image: returns how many body bytes are already in flash.
Result<uint64_t> Download::body_start(const HttpResponse& resp, int status, uint64_t offset) {
  if (offset == 0) {
    if (resp.content_length()) total_ = resp.content_length();
    return 0u;
  }
  if (status != 206) {
    log_.warn(kTag, "Server ignored the requested Range header");
    if (resp.content_length()) total_ = resp.content_length();
    return offset;
  }
  auto cr = resp.header("Content-Range");
  auto range = cr ? parse_content_range(*cr) : std::nullopt;
  if (!range || range->first != offset) {
    return give_up(Error(ErrorCode::corrupt, fmt::format("{}: asked for bytes from {}, the server sent '{}'",
                                                         cfg_.url, offset, cr.value_or("no Content-Range"))));
  }
  if (range->second) total_ = range->second;
  return 0u;
}

// Streams the body into flash; returns the read error that ended it early (nullopt: the body ended).
Result<Download::StreamEnd> Download::stream(HttpResponse& resp, uint64_t skip) {
  for (uint64_t guard = 0; guard < (uint64_t{1} << 32); ++guard) {
    auto n = resp.read(buf_);
    if (!n) {
      StreamEnd e;
      e.read_error = n.error();
      return e;
    }
    if (*n == 0) break;
    ByteView chunk(buf_.data(), *n);
    if (skip > 0) {
      size_t drop = static_cast<size_t>(std::min<uint64_t>(skip, chunk.size()));
      skip -= drop;
      chunk = chunk.subspan(drop);
      if (chunk.empty()) continue;
    }
    const uint64_t before = writer_->written();
    const bool first = before == 0;
    if (auto r = writer_->write(chunk); !r) {
      if (first && r.error().code() == ErrorCode::corrupt) {
        if (auto text = text_reply_error(chunk, cfg_.url)) return give_up(*text);
      }
      // A refusal of the image header check is logged there, not as a failed write.
      if (r.error().code() != ErrorCode::rollback_refused && r.error().code() != ErrorCode::power_lost) {
        log_.error(kTag, fmt::format("Error: esp_ota_write failed! {}", r.error().message()));
      }
      return give_up(r.error());
    }
    if (save_due(before)) OTA32_TRY(save_progress());
    if (cfg_.on_progress) cfg_.on_progress(writer_->written(), total_);
  }
  return StreamEnd();
}

Result<Download::Attempt> Download::attempt(HttpClient& client, uint32_t resumed_from) {
  const uint64_t offset = written();
  HttpRequest req;
  req.url = cfg_.url;
  if (offset > 0) req.headers.push_back({"Range", fmt::format("bytes={}-", offset)});
  auto sent = client.send(req);
  if (!sent) {
    if (!retryable(sent.error())) return give_up(sent.error());
    log_.error(kTag, fmt::format("Failed to open HTTP connection: {}", sent.error().message()));
    return Attempt{End::retry, sent.error()};
  }
  HttpResponse& resp = **sent;
  const int status = resp.status();
  const StatusRule& rule = status_rule(status, offset > 0);
  switch (rule.action) {
    case StatusAction::abort:
      return give_up(status_error(rule, status, resp, cfg_.url, log_));
    case StatusAction::retry:
      return Attempt{End::retry, status_error(rule, status, resp, cfg_.url, log_)};
    case StatusAction::restart:
      log_.warn(kTag,
                "Requested range is incorrect (status code: 416); restarting download from the beginning");
      writer_.reset();
      return Attempt{End::restart, std::nullopt};
    case StatusAction::stream:
      break;
  }
  OTA32_ASSIGN(uint64_t skip, body_start(resp, status, offset));
  if (total_ && *total_ > slot_.size) {
    return give_up(
        Error(ErrorCode::out_of_range,
              fmt::format("firmware at {} is {} bytes, larger than the {} partition ({} = {:#x} bytes)",
                          cfg_.url, *total_, slot_.name, format_size(slot_.size), slot_.size)));
  }
  if (!announced_) {
    log_.info(kTag, "Starting OTA...");
    log_.info(kTag,
              fmt::format("Writing to partition subtype {} at offset {:#x}", slot_.subtype, slot_.offset));
    if (resumed_from > 0) {
      log_.info(kTag, fmt::format("Resuming the interrupted download at byte {}", resumed_from));
    }
    announced_ = true;
  }
  if (!writer_) {
    auto w = OtaWriter::begin(flash_, table_, slot_, running_, cfg_.writer, &log_);
    if (!w) {
      log_.error(kTag, fmt::format("esp_ota_begin failed ({})", begin_error_name(w.error().code())));
      return give_up(w.error());
    }
    writer_ = std::move(*w);
  }
  OTA32_ASSIGN(StreamEnd ended, stream(resp, skip));
  const std::optional<Error>& read_error = ended.read_error;
  if (read_error) {
    log_.error(kTag,
               fmt::format("data read failed after {} bytes: {}", writer_->written(), read_error->message()));
    if (!retryable(*read_error)) return give_up(*read_error);
    if (writer_->written() > 0) OTA32_TRY(save_progress());
    return Attempt{End::retry, read_error};  // reconnect with Range: bytes=<written>-
  }
  if (total_ && writer_->written() < *total_) {  // close-delimited body cut short of a known size
    return Attempt{End::retry,
                   Error(ErrorCode::unavailable, fmt::format("{}: connection closed after {} of {} bytes",
                                                             cfg_.url, writer_->written(), *total_))};
  }
  return Attempt{End::complete, std::nullopt};
}

}  // namespace

std::span<const StatusRule> status_rules() { return kStatusRules; }

const StatusRule& status_rule(int status, bool ranged) {
  for (const auto& r : kStatusRules) {
    if (status >= r.first && status <= r.last && (!r.ranged || ranged)) return r;
  }
  return kStatusRules[std::size(kStatusRules) - 1];
}

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
  Download d(flash, table, *slot, running, cfg, log);
  OTA32_ASSIGN(result.resumed_from, d.resume_saved());

  // The attempt loop: reconnects after unavailable / timeout wait (config.backoff), a connection that
  // brought bytes into flash starts the count of failures again; the decision is by ErrorCode only.
  int failures_in_a_row = 0;
  bool wait = false;
  std::optional<Error> last_error;
  for (int attempt = 0; attempt < cfg.max_connections; ++attempt) {
    if (wait) {
      auto delay = reconnect_delay(cfg.backoff, failures_in_a_row);
      log.info(kTag, fmt::format("Reconnecting in {} ms (connection {} of {})", delay.count(), attempt + 1,
                                 cfg.max_connections));
      if (cfg.sleep) {
        cfg.sleep(delay);
      } else {
        std::this_thread::sleep_for(delay);
      }
      wait = false;
    }
    const uint64_t offset = d.written();
    ++result.connections;
    OTA32_ASSIGN(auto a, d.attempt(client, result.resumed_from));
    switch (a.end) {
      case Download::End::complete: {
        OTA32_ASSIGN(result.image, d.finish());
        return result;
      }
      case Download::End::restart:
        continue;
      case Download::End::retry:
        if (d.written() > offset) failures_in_a_row = 0;  // it made progress
        ++failures_in_a_row;
        last_error = a.error;
        wait = true;
        continue;
    }
  }
  Error e = last_error.value_or(Error(ErrorCode::unavailable, "no connection attempt was made"));
  return Error(e.code(),
               fmt::format("download failed after {} connections: {}", result.connections, e.message()));
}

}  // namespace ota32::agent
