// Catalog (firmware upload / list / delete), update check, firmware download, device reports and the
// admin API. Every handler reads the store afresh (no cache): several servers may share one database.
#include "server/api.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/file_io.h"
#include "core/hash.h"
#include "core/numbers.h"
#include "format/secure_boot_v2_crypto.h"
#include "server/api_internal.h"
#include "store/version.h"

namespace ota32::server {

using api_detail::check_admin;
using api_detail::store_error;
using json = nlohmann::json;

std::string sha256_hex_of(std::string_view text) { return to_hex(sha256(as_bytes(text))); }

Result<std::string> generate_admin_token() {
  uint8_t buf[32];
  size_t got = 0;
  for (int tries = 0; got < sizeof buf && tries < 100; ++tries) {
    ssize_t n = ::getrandom(buf + got, sizeof buf - got, 0);
    if (n > 0)
      got += static_cast<size_t>(n);
    else if (n < 0 && errno != EINTR)
      return Error(ErrorCode::io_error, fmt::format("getrandom failed: {}", std::strerror(errno)));
  }
  if (got < sizeof buf) return Error(ErrorCode::io_error, "getrandom returned too few bytes");
  return to_hex(ByteView(buf, sizeof buf));
}

Result<ApiSetup> open_api(const ApiConfig& config) {
  std::error_code ec;
  std::filesystem::create_directories(config.data_dir, ec);
  // The blob directory is private like the files in it (0700 whatever the umask, as BlobStore's own).
  if (!ec && ::mkdir((config.data_dir / "blobs").c_str(), 0700) != 0 && errno != EEXIST)
    ec = std::error_code(errno, std::system_category());
  if (ec)
    return Error(ErrorCode::io_error, fmt::format("--data {}: cannot create directory: {}",
                                                  config.data_dir.string(), ec.message()));
  std::string url = config.store_url.empty() ? default_store_url(config.data_dir) : config.store_url;
  OTA32_ASSIGN(auto store, open_store(url));
  ApiSetup setup;
  OTA32_ASSIGN(int64_t tokens, store->admin_token_count());
  if (tokens == 0) {
    OTA32_ASSIGN(std::string token, generate_admin_token());
    // The unique label makes concurrent first starts agree on one token; only the winner prints it.
    OTA32_ASSIGN(bool created, store->add_admin_token(sha256_hex_of(token), "initial"));
    if (created) setup.new_admin_token = token;
  }
  setup.context = std::make_unique<ApiContext>(
      ApiContext{std::move(store), BlobStore(config.data_dir / "blobs"), config});
  setup.context->device_limiter = std::make_unique<RateLimiter>(config.device_rate, config.device_burst);
  return setup;
}

namespace api_detail {

bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xC0) != 0x80) return false;
    i += len;
  }
  return true;
}

bool valid_name(std::string_view s) {
  if (s.empty() || s.size() > 128 || !valid_utf8(s)) return false;
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return false;
  return true;
}

bool valid_device_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '_' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

HttpResponse store_error(const Error& e, const HttpRequest& req) {
  if (e.code() == ErrorCode::unavailable)
    return json_error(http::status::service_unavailable, "store_unavailable", e.message(), req);
  return json_error(http::status::internal_server_error, "store_error", e.message(), req);
}

namespace {
bool is_token68_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_' || c == '~' ||
         c == '+' || c == '/' || c == '=';
}
}  // namespace

std::optional<HttpResponse> check_admin(const ApiContext& api, const HttpRequest& req) {
  auto unauthorized = [&](std::string_view why) {
    auto res = json_error(http::status::unauthorized, "unauthorized", why, req);
    res.set(http::field::www_authenticate, "Bearer realm=\"ota32\"");
    return res;
  };
  std::string_view auth = req[http::field::authorization];
  if (auth.empty()) return unauthorized("this endpoint needs an admin token: Authorization: Bearer <token>");
  constexpr std::string_view kBearer = "bearer ";
  if (auth.size() <= kBearer.size() ||
      !std::equal(kBearer.begin(), kBearer.end(), auth.begin(),
                  [](char a, char b) { return a == std::tolower(static_cast<unsigned char>(b)); }))
    return unauthorized("the Authorization header must be 'Bearer <token>'");
  std::string_view token = auth.substr(kBearer.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  // The credential is exactly a token68 (RFC 9110 11.2, RFC 6750 2.1): no whitespace inside or after it, so
  // "<token> " or "<token>\t" (a copy-paste with its line end) never matches a stored token.
  if (token.empty() || !std::all_of(token.begin(), token.end(), is_token68_char))
    return unauthorized("the admin token is not valid");
  auto ok = api.store->admin_token_exists(sha256_hex_of(token));
  if (!ok) return store_error(ok.error(), req);
  if (!*ok) return unauthorized("the admin token is not valid");
  return std::nullopt;
}

std::string base_url(const ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  std::string_view configured = api.config.public_url;
  while (!configured.empty() && configured.back() == '/') configured.remove_suffix(1);
  if (!configured.empty()) return std::string(configured);
  std::string_view host = req[http::field::host];
  bool host_ok = !host.empty() && host.size() <= 255;
  for (char c : host) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
              c == '-' || c == ':' || c == '[' || c == ']';
    if (!ok) host_ok = false;
  }
  return fmt::format("{}://{}", ctx.tls ? "https" : "http", host_ok ? host : std::string_view("localhost"));
}

std::string firmware_url(const ApiContext& api, const HttpRequest& req, const RequestContext& ctx,
                         const FirmwareRecord& fw) {
  return fmt::format("{}/fw/{}.bin", base_url(api, req, ctx), fw.sha256);
}

json firmware_json(const FirmwareRecord& fw) {
  return json{{"sha256", fw.sha256},
              {"project", fw.project},
              {"version", fw.version},
              {"chip", fw.chip},
              {"channel", fw.channel},
              {"secure_version", fw.secure_version},
              {"size", fw.size},
              {"md5", fw.md5},
              {"image_hash", fw.image_hash},
              {"idf_version", fw.idf_version},
              {"compile_date", fw.compile_date},
              {"compile_time", fw.compile_time},
              {"elf_sha256", fw.elf_sha256},
              {"file_name", fw.file_name},
              {"uploaded_at", fw.uploaded_at}};
}

json device_json(const DeviceRecord& d) {
  return json{{"id", d.id},
              {"project", d.project},
              {"chip", d.chip},
              {"channel", d.channel},
              {"running_version", d.running_version},
              {"state", d.state},
              {"last_error", d.last_error},
              {"last_report_at", d.last_report_at},
              {"address", d.address},
              {"created_at", d.created_at},
              {"status", d.auth_status},
              {"attributes", d.attributes},
              {"tags", d.tags}};
}

Result<std::optional<FirmwareRecord>> latest_release(Store& store, std::string_view project,
                                                     std::string_view chip, std::string_view channel) {
  OTA32_ASSIGN(auto all,
               store.list_firmware({std::string(project), std::string(chip), std::string(channel)}));
  OTA32_ASSIGN(auto rollouts, store.list_rollouts());
  auto held = [&](const FirmwareRecord& fw) {
    return std::any_of(rollouts.begin(), rollouts.end(), [&](const RolloutRecord& r) {
      return r.firmware_sha256 == fw.sha256 && r.state != "completed";
    });
  };
  std::optional<FirmwareRecord> best;
  // list_firmware is newest first, so on equal versions the first (newest upload) is kept.
  for (auto& fw : all)
    if ((!best || compare_versions(fw.version, best->version) > 0) && !held(fw)) best = std::move(fw);
  return best;
}

std::optional<HttpResponse> check_device_cap(ApiContext& api, std::string_view device_id,
                                             const HttpRequest& req) {
  if (api.config.max_devices <= 0) return std::nullopt;
  auto d = api.store->get_device(device_id);
  if (!d) return store_error(d.error(), req);
  if (d->has_value()) return std::nullopt;
  auto n = api.store->device_count();
  if (!n) return store_error(n.error(), req);
  if (*n < api.config.max_devices) return std::nullopt;
  auto res = json_error(http::status::too_many_requests, "too_many_devices",
                        fmt::format("this server holds its limit of {} devices (--max-devices); device '{}' "
                                    "is new: register it (POST /api/v1/devices) or raise the limit",
                                    api.config.max_devices, device_id),
                        req);
  res.set(http::field::retry_after, "3600");
  return res;
}

std::optional<HttpResponse> check_rate(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (!api.device_limiter) return std::nullopt;
  std::chrono::seconds wait{1};
  if (api.device_limiter->allow(ctx.remote_address, RateLimiter::Clock::now(), &wait)) return std::nullopt;
  auto res = json_error(
      http::status::too_many_requests, "rate_limited",
      fmt::format("too many requests from {}: at most {:g} per second (burst {:g}); retry "
                  "in {} s",
                  ctx.remote_address, api.config.device_rate, api.config.device_burst, wait.count()),
      req);
  res.set(http::field::retry_after, std::to_string(std::max<long>(1, wait.count())));
  return res;
}

Reply firmware_file(const ApiContext& api, const FirmwareRecord& fw, const HttpRequest& req) {
  if (!api.blobs.exists(fw.sha256))
    return json_error(http::status::not_found, "blob_missing",
                      fmt::format("firmware {} is in the catalog but its file is missing", fw.sha256), req);
  FileReply file;
  file.path = api.blobs.path_for(fw.sha256);
  file.etag = "\"" + fw.sha256 + "\"";
  if (!fw.md5.empty()) file.extra_headers.emplace_back("x-MD5", fw.md5);
  if (api.metrics != nullptr)
    file.on_complete = [metrics = api.metrics, version = fw.version] {
      metrics->download_completed(version);
    };
  return file;
}

namespace {

HttpResponse bad_request(std::string_view message, const HttpRequest& req) {
  return json_error(http::status::bad_request, "bad_request", message, req);
}

// Reads an optional string member of a JSON object: absent or null = "", another type = error message.
std::optional<std::string> string_member(const json& obj, const char* key, std::string& out,
                                         size_t max_len = 1024) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return fmt::format("'{}' must be a string", key);
  out = it->get<std::string>();
  if (out.size() > max_len) return fmt::format("'{}' is longer than {} bytes", key, max_len);
  return std::nullopt;
}

std::optional<std::string> check_channel(std::string_view channel) {
  if (channel.empty() || valid_name(channel)) return std::nullopt;
  return "channel: not a valid name";
}

// A read-only view of an uploaded body file: its pages come from the page cache, so checking a large
// image costs no heap (the upload was never in memory either).
class MappedFile {
 public:
  explicit MappedFile(const BodyFile& f) : size_(static_cast<std::size_t>(f.size)) {
    if (size_ == 0) return;
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, f.fd, 0);
    if (p != MAP_FAILED) data_ = static_cast<const uint8_t*>(p);
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  bool ok() const { return size_ == 0 || data_ != nullptr; }
  ByteView bytes() const { return data_ ? ByteView(data_, size_) : ByteView(); }

 private:
  const uint8_t* data_ = nullptr;
  std::size_t size_ = 0;
};

Reply upload_firmware(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string chip(ctx.query_param("chip"));
  std::string channel(ctx.query_param("channel"));
  std::string name(ctx.query_param("name"));
  if (!chip.empty() && canonical_chip(chip).empty())
    return bad_request(fmt::format("chip: '{}' is not a chip ota32 knows", valid_name(chip) ? chip : "?"),
                       req);
  if (auto e = check_channel(channel)) return bad_request(*e, req);
  if (!name.empty() && !valid_name(name)) return bad_request("name: not a valid file name", req);
  if (name.empty()) name = "firmware.bin";
  // The server streams the body of this route to a file (register_api_routes); tests and other callers may
  // hand it in memory.
  std::optional<MappedFile> mapped;
  ByteView data = as_bytes(req.body());
  if (ctx.body_file) {
    mapped.emplace(*ctx.body_file);
    if (!mapped->ok())
      return json_error(http::status::internal_server_error, "io_error",
                        fmt::format("cannot map the uploaded file: {}", std::strerror(errno)), req);
    data = mapped->bytes();
  }
  if (data.empty()) return bad_request("the request body must be the firmware image (.bin)", req);
  auto described = describe_image(data, chip, name);
  if (!described)
    return json_error(http::status::unprocessable_entity, "invalid_image", described.error().message(), req);
  if (auto refused = check_upload_signature(api, data, name, req)) return *refused;
  FirmwareRecord fw = std::move(*described);
  fw.channel = channel.empty() ? std::string(kDefaultChannel) : channel;
  fw.uploaded_at = unix_now();
  // File first, record second, under the blob's lock (Store::add_firmware_with_blob): a record never points
  // at a file that is not there yet, and a concurrent delete cannot remove the file in between. The slow
  // write (up to --max-upload, fsync) happens before the lock, which other servers' uploads and deletes of
  // the image wait for; under the lock the file is only checked, and written again if a delete removed it.
  auto write_blob = [&]() -> Result<void> {
    if (ctx.body_file) return api.blobs.put_file(ctx.body_file->path, fw.sha256);
    auto put = api.blobs.put(data);
    if (!put) return put.error();
    return {};
  };
  std::optional<Error> io_failure;
  if (auto put = write_blob(); !put)
    return json_error(http::status::internal_server_error, "io_error", put.error().message(), req);
  auto added = api.store->add_firmware_with_blob(fw, [&]() -> Result<void> {
    if (api.blobs.exists(fw.sha256)) return {};
    auto again = write_blob();
    if (!again) io_failure = again.error();
    return again;
  });
  if (io_failure)
    return json_error(http::status::internal_server_error, "io_error", io_failure->message(), req);
  if (!added) return store_error(added.error(), req);
  auto stored = api.store->get_firmware(fw.sha256);
  if (!stored) return store_error(stored.error(), req);
  if (!stored->has_value())
    return json_error(http::status::conflict, "conflict", "the firmware was deleted while uploading", req);
  json body = firmware_json(**stored);
  body["created"] = *added;
  body["url"] = firmware_url(api, req, ctx, **stored);
  return json_reply(*added ? http::status::created : http::status::ok, body, req);
}

Reply list_firmware(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  FirmwareFilter f{std::string(ctx.query_param("project")), std::string(ctx.query_param("chip")),
                   std::string(ctx.query_param("channel"))};
  auto all = api.store->list_firmware(f);
  if (!all) return store_error(all.error(), req);
  json items = json::array();
  for (const auto& fw : *all) {
    json j = firmware_json(fw);
    j["url"] = firmware_url(api, req, ctx, fw);
    items.push_back(std::move(j));
  }
  return json_reply(http::status::ok, json{{"firmware", std::move(items)}}, req);
}

// The {sha256} path parameter, or the 400 reply.
std::variant<std::string, HttpResponse> sha_param(const HttpRequest& req, const RequestContext& ctx) {
  std::string sha(ctx.param("sha256"));
  for (auto& c : sha) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!is_sha256_hex(sha)) return bad_request("the firmware id must be its SHA-256 (64 hex digits)", req);
  return sha;
}

Reply get_firmware(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  auto sha = sha_param(req, ctx);
  if (auto* r = std::get_if<HttpResponse>(&sha)) return *r;
  auto fw = api.store->get_firmware(std::get<std::string>(sha));
  if (!fw) return store_error(fw.error(), req);
  if (!fw->has_value())
    return json_error(http::status::not_found, "unknown_firmware",
                      fmt::format("no firmware {} in the catalog", std::get<std::string>(sha)), req);
  json body = firmware_json(**fw);
  body["url"] = firmware_url(api, req, ctx, **fw);
  return json_reply(http::status::ok, body, req);
}

Reply delete_firmware(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  auto sha_v = sha_param(req, ctx);
  if (auto* r = std::get_if<HttpResponse>(&sha_v)) return *r;
  const auto& sha = std::get<std::string>(sha_v);
  // Record first, file second, and the file only if no upload of the same image re-added the record
  // meanwhile (Store::delete_firmware_with_blob): a download racing the delete sees both or a clean 404.
  std::optional<Error> io_failure;
  auto deleted = api.store->delete_firmware_with_blob(sha, [&]() -> Result<void> {
    auto rm = api.blobs.remove(sha);
    if (!rm) io_failure = rm.error();
    return rm;
  });
  if (io_failure)
    return json_error(http::status::internal_server_error, "io_error",
                      fmt::format("the record is deleted but its file is not: {}", io_failure->message()),
                      req);
  if (!deleted) return store_error(deleted.error(), req);
  if (!*deleted)
    return json_error(http::status::not_found, "unknown_firmware",
                      fmt::format("no firmware {} in the catalog", sha), req);
  return json_reply(http::status::ok, json{{"deleted", sha}}, req);
}

Reply download_firmware(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  std::string_view file = ctx.param("file");
  std::string sha(file.ends_with(".bin") ? file.substr(0, file.size() - 4) : file);
  if (!is_sha256_hex(sha))
    return json_error(http::status::not_found, "unknown_firmware", "firmware files are /fw/<sha256>.bin",
                      req);
  auto fw = api.store->get_firmware(sha);
  if (!fw) return store_error(fw.error(), req);
  if (!fw->has_value())
    return json_error(http::status::not_found, "unknown_firmware",
                      fmt::format("no firmware {} in the catalog", sha), req);
  Reply reply = firmware_file(api, **fw, req);
  if (std::holds_alternative<HttpResponse>(reply)) {
    // No file: either a delete removed record and file since the lookup above (then the record is gone
    // too: answer as if the lookup had come later), or the file really is missing (blob_missing).
    auto again = api.store->get_firmware(sha);
    if (again && !again->has_value())
      return json_error(http::status::not_found, "unknown_firmware",
                        fmt::format("no firmware {} in the catalog", sha), req);
  }
  return reply;
}

// The body of a 200 update-check answer.
json update_json(const ApiContext& api, const HttpRequest& req, const RequestContext& ctx,
                 const FirmwareRecord& fw) {
  return json{{"project", fw.project},
              {"version", fw.version},
              {"chip", fw.chip},
              {"channel", fw.channel},
              {"size", fw.size},
              {"sha256", fw.sha256},
              {"md5", fw.md5},
              {"secure_version", fw.secure_version},
              {"url", firmware_url(api, req, ctx, fw)}};
}

// GET /api/v1/update?project=&version=&chip=[&device=][&channel=]: 204 when the device is current (or the
// catalog has nothing for it), else 200 with the release's URL, size, SHA-256 and version.
Reply update_check(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  std::string project(ctx.query_param("project")), version(ctx.query_param("version")),
      chip(ctx.query_param("chip")), device(ctx.query_param("device")), channel(ctx.query_param("channel"));
  if (!valid_name(project)) return bad_request("project: required (the app's project_name)", req);
  if (!valid_name(version)) return bad_request("version: required (the running app's version)", req);
  if (!valid_name(chip)) return bad_request("chip: required (esp32, esp32s3, esp32c3, ...)", req);
  chip = canonical_chip(chip);
  if (chip.empty())
    return bad_request(fmt::format("chip: '{}' is not a chip ota32 knows", ctx.query_param("chip")), req);
  if (!device.empty() && !valid_device_id(device))
    return bad_request("device: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
  if (auto e = check_channel(channel)) return bad_request(*e, req);
  // The running app's esp_app_desc_t.secure_version, which the agent sends with each check (optional).
  std::optional<uint32_t> device_secure_version;
  if (auto sv = ctx.query_param("secure_version"); !sv.empty()) {
    uint32_t n = 0;
    auto [p, ec] = std::from_chars(sv.data(), sv.data() + sv.size(), n);
    if (ec != std::errc() || p != sv.data() + sv.size())
      return bad_request("secure_version: the running app's anti-rollback version, 0 to 4294967295", req);
    device_secure_version = n;
  }
  if (auto denied = check_device_known(api, device, req, ctx.remote_address)) return *denied;
  if (!device.empty()) {
    // A registered device's channel wins over the query.
    auto d = api.store->get_device(device);
    if (!d) return store_error(d.error(), req);
    if (d->has_value() && !(*d)->channel.empty()) channel = (*d)->channel;
  }
  if (channel.empty()) channel = kDefaultChannel;
  if (!device.empty()) {
    // A device that a running or paused rollout targets is answered by that rollout alone.
    auto stored = api.store->get_device(device);
    if (!stored) return store_error(stored.error(), req);
    DeviceRecord view = stored->value_or(DeviceRecord{});
    view.id = device;
    view.project = project;
    view.chip = chip;
    auto answer = answer_update_check(*api.store, view, version, api.now());
    if (!answer) return store_error(answer.error(), req);
    if (answer->targeted) {
      if (api.metrics != nullptr)
        api.metrics->update_check(answer->offer ? "update_available" : "rollout_hold");
      if (answer->offer) {
        json body = update_json(api, req, ctx, *answer->offer);
        body["rollout"] = answer->rollout_id;
        return json_reply(http::status::ok, body, req);
      }
      HttpResponse res{http::status::no_content, req.version()};
      res.keep_alive(req.keep_alive());
      res.set(http::field::cache_control, "no-store");
      // Why nothing is offered (not_in_stage, at_capacity, not_running, ...), for people and simulators.
      res.set("x-ota32-rollout", fmt::format("{} {}", answer->rollout_id.empty() ? "-" : answer->rollout_id,
                                             rollout::to_string(answer->kind)));
      return res;
    }
  }
  auto latest = latest_release(*api.store, project, chip, channel);
  if (!latest) return store_error(latest.error(), req);
  bool current = !latest->has_value() || compare_versions((*latest)->version, version) <= 0;
  // Anti-rollback: an image whose secure_version is below the running app's would be refused by the device
  // (esp_ota_set_boot_partition erases it, the bootloader skips it once the eFuse counter is burnt), so it
  // is not offered; the device is told "no update" and the log says why.
  const bool withheld =
      !current && device_secure_version && (*latest)->secure_version < *device_secure_version;
  if (withheld && api.log) {
    api.log(
        fmt::format("update check{}: not offering {} {} ({}, channel {}): its secure_version {} is below "
                    "the device's {} (anti-rollback); answered no update",
                    device.empty() ? "" : " from " + device, (*latest)->project, (*latest)->version,
                    (*latest)->chip, (*latest)->channel, (*latest)->secure_version, *device_secure_version));
  }
  if (api.metrics != nullptr)
    api.metrics->update_check(withheld  ? "secure_version_below"
                              : current ? "up_to_date"
                                        : "update_available");
  if (current || withheld) {
    HttpResponse res{http::status::no_content, req.version()};
    res.keep_alive(req.keep_alive());
    res.set(http::field::cache_control, "no-store");
    return res;
  }
  return json_reply(http::status::ok, update_json(api, req, ctx, **latest), req);
}

Reply device_report(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad_request("device id: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
  json body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded())
    return json_error(http::status::bad_request, "bad_json", "the request body is not valid JSON", req);
  if (!body.is_object())
    return json_error(http::status::bad_request, "bad_json", "the request body must be a JSON object", req);
  DeviceReport r;
  r.device_id = id;
  std::string project, chip;
  for (auto [key, out] :
       {std::pair{"state", &r.state}, std::pair{"version", &r.running_version}, std::pair{"error", &r.error},
        std::pair{"project", &project}, std::pair{"chip", &chip}})
    if (auto e = string_member(body, key, *out))
      return json_error(http::status::bad_request, "bad_json", *e, req);
  if (r.state.empty()) return json_error(http::status::bad_request, "bad_json", "'state' is required", req);
  // What the report means for the device's rollout attempt (other states only update the record).
  auto kind = rollout::report_kind_from_string(r.state);
  rollout::FailureReason reason = rollout::FailureReason::none;
  std::string reason_text;
  if (auto e = string_member(body, "reason", reason_text, 64))
    return json_error(http::status::bad_request, "bad_json", *e, req);
  if (!reason_text.empty()) {
    auto parsed = rollout::failure_reason_from_string(reason_text);
    if (!parsed) return json_error(http::status::bad_request, "bad_json", parsed.error().message(), req);
    reason = *parsed;
  }
  if (r.running_version.empty())
    return json_error(http::status::bad_request, "bad_json", "'version' (the running version) is required",
                      req);
  if (!chip.empty() && canonical_chip(chip).empty())
    return bad_request(fmt::format("chip: '{}' is not a chip ota32 knows", chip), req);
  if (!chip.empty()) chip = canonical_chip(chip);
  if (auto denied = check_device_known(api, id, req, ctx.remote_address)) return *denied;
  if (auto full = check_device_cap(api, id, req)) return *full;
  r.reported_at = unix_now();
  r.address = ctx.remote_address;
  if (auto ok = api.store->record_report(r, project, chip); !ok) return store_error(ok.error(), req);
  if (auto pruned = api.store->prune_reports(id, api.config.report_retention, r.reported_at); !pruned)
    return store_error(pruned.error(), req);
  if (kind) {
    if (auto applied = apply_device_report(*api.store, id, *kind, r.running_version, reason, api.now());
        !applied)
      return store_error(applied.error(), req);
  }
  auto d = api.store->get_device(id);
  if (!d) return store_error(d.error(), req);
  if (!d->has_value())
    return json_error(http::status::conflict, "conflict", "the device was deleted while reporting", req);
  return json_reply(http::status::ok, device_json(**d), req);
}

Reply list_devices(ApiContext& api, const HttpRequest& req, const RequestContext&) {
  if (auto denied = check_admin(api, req)) return *denied;
  auto all = api.store->list_devices();
  if (!all) return store_error(all.error(), req);
  json items = json::array();
  for (const auto& d : *all) items.push_back(device_json(d));
  return json_reply(http::status::ok, json{{"devices", std::move(items)}}, req);
}

Reply get_device(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad_request("device id: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
  int limit = 20;
  if (auto q = ctx.query_param("reports"); !q.empty()) {
    auto [p, ec] = std::from_chars(q.data(), q.data() + q.size(), limit);
    if (ec != std::errc() || p != q.data() + q.size() || limit < 0 || limit > 1000)
      return bad_request("reports: a number from 0 to 1000", req);
  }
  auto d = api.store->get_device(id);
  if (!d) return store_error(d.error(), req);
  if (!d->has_value())
    return json_error(http::status::not_found, "unknown_device", fmt::format("no device '{}'", id), req);
  auto reports = api.store->device_reports(id, limit);
  if (!reports) return store_error(reports.error(), req);
  json body = device_json(**d);
  json hist = json::array();
  for (const auto& r : *reports)
    hist.push_back(json{{"reported_at", r.reported_at},
                        {"state", r.state},
                        {"version", r.running_version},
                        {"error", r.error},
                        {"address", r.address}});
  body["reports"] = std::move(hist);
  return json_reply(http::status::ok, body, req);
}

Reply register_device(ApiContext& api, const HttpRequest& req, const RequestContext&) {
  if (auto denied = check_admin(api, req)) return *denied;
  json body = json::parse(req.body(), nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return json_error(http::status::bad_request, "bad_json", "the request body must be a JSON object", req);
  DeviceRecord d;
  d.channel.clear();
  for (auto [key, out] : {std::pair{"id", &d.id}, std::pair{"project", &d.project},
                          std::pair{"chip", &d.chip}, std::pair{"channel", &d.channel}})
    if (auto e = string_member(body, key, *out, 128))
      return json_error(http::status::bad_request, "bad_json", *e, req);
  if (!valid_device_id(d.id)) return bad_request("id: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
  if (!d.chip.empty() && canonical_chip(d.chip).empty())
    return bad_request(fmt::format("chip: '{}' is not a chip ota32 knows", d.chip), req);
  if (!d.chip.empty()) d.chip = canonical_chip(d.chip);
  if (auto e = check_channel(d.channel)) return bad_request(*e, req);
  auto before = api.store->get_device(d.id);
  if (!before) return store_error(before.error(), req);
  if (auto ok = api.store->register_device(d); !ok) return store_error(ok.error(), req);
  auto after = api.store->get_device(d.id);
  if (!after) return store_error(after.error(), req);
  if (!after->has_value())
    return json_error(http::status::conflict, "conflict", "the device was deleted while registering", req);
  return json_reply(before->has_value() ? http::status::ok : http::status::created, device_json(**after),
                    req);
}

Reply delete_device(ApiContext& api, const HttpRequest& req, const RequestContext& ctx) {
  if (auto denied = check_admin(api, req)) return *denied;
  std::string id(ctx.param("id"));
  if (!valid_device_id(id)) return bad_request("device id: 1-64 characters of A-Z a-z 0-9 . _ : -", req);
  auto deleted = api.store->delete_device(id);
  if (!deleted) return store_error(deleted.error(), req);
  if (!*deleted)
    return json_error(http::status::not_found, "unknown_device", fmt::format("no device '{}'", id), req);
  return json_reply(http::status::ok, json{{"deleted", id}}, req);
}

}  // namespace
}  // namespace api_detail

namespace {

// The serve command's API options and the context they open: one per process (see api.h).
struct ApiRuntime {
  ApiConfig options;
  std::string max_upload = "16M";
  double report_max_age_days = 90;
  double rollout_interval_s = 5;
  std::vector<std::string> require_signed;
  std::unique_ptr<ApiContext> context;
};
ApiRuntime& runtime() {
  static ApiRuntime r;
  return r;
}

}  // namespace

void add_api_options(CLI::App* cmd) {
  auto& r = runtime();
  cmd->add_option("--public-url", r.options.public_url,
                  "Base of the firmware URLs handed to devices, e.g. https://ota.example.com:8070 "
                  "(default: from the request's Host header)");
  cmd->add_flag("--refuse-unknown-devices", r.options.refuse_unknown_devices,
                "Answer 403 to devices that were not registered (POST /api/v1/devices)");
  cmd->add_option("--device-auth", r.options.device_auth,
                  "open: devices without a token may check and report; token: every device request needs "
                  "its token (TargetToken) or a gateway token, unknown devices wait as pending")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, DeviceAuth>{{"open", DeviceAuth::open}, {"token", DeviceAuth::token}}))
      ->default_str("open");
  cmd->add_option("--max-upload", r.max_upload, "Largest firmware upload (bytes, K/M suffixes)")
      ->capture_default_str()
      ->check([](const std::string& v) {
        auto n = parse_number(v, "--max-upload");
        if (!n) return n.error().message();
        if (*n == 0 || *n > (uint64_t{1} << 30)) return std::string("--max-upload: must be 1 byte .. 1G");
        return std::string();
      });
  cmd->add_option("--device-rate", r.options.device_rate,
                  "Requests per second one source address (IPv6: one /64) may make to the device endpoints "
                  "(update checks, reports); more get 429 + Retry-After. 0 = no limit")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--device-burst", r.options.device_burst,
                  "Requests one source may make at once before --device-rate applies")
      ->check(CLI::Range(1.0, 1e6))
      ->capture_default_str();
  cmd->add_option("--max-devices", r.options.max_devices,
                  "Reports from new device ids get 429 once the store holds this many devices (0 = no cap)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--report-history", r.options.report_retention.max_per_device,
                  "Reports kept per device, newest first (0 = all)")
      ->check(CLI::Range(int64_t{0}, int64_t{1} << 40))
      ->capture_default_str();
  cmd->add_option("--report-max-age", r.report_max_age_days, "Days a report is kept (0 = forever)")
      ->check(CLI::Range(0.0, 1e5))
      ->capture_default_str();
  cmd->add_option("--rollout-interval", r.rollout_interval_s,
                  "Seconds between the rollout timer's passes: attempts past their timeouts fail, and "
                  "running rollouts are evaluated (soak time, promotion, completion) even when no device "
                  "reports")
      ->check(CLI::Range(0.05, 3600.0))
      ->capture_default_str();
  cmd->add_option("--require-signed", r.require_signed,
                  "Take only uploads signed (Secure Boot v2) by this public key, PEM; repeat for more keys. "
                  "Others get 422 naming why (unsigned, untrusted_signature, damaged_signature_block, "
                  "bad_signature)")
      ->allow_extra_args(false);
}

namespace {

Result<std::vector<ApiConfig::TrustedKey>> load_trusted_keys(const std::vector<std::string>& files) {
  std::vector<ApiConfig::TrustedKey> keys;
  for (const auto& f : files) {
    auto pem = read_file(f, 64 * 1024, "public key");
    if (!pem) return pem.error().with_context("--require-signed");
    auto key = sb_public_key_from_pem(*pem);
    if (!key) return key.error().with_context("--require-signed " + f);
    keys.push_back({f, std::move(*key)});
  }
  return keys;
}

}  // namespace

Result<void> register_api_routes(Router& router, const ServeContext& serve) {
  auto& r = runtime();
  ApiConfig cfg = r.options;
  cfg.data_dir = serve.data_dir;
  cfg.store_url = serve.store_url;
  OTA32_ASSIGN(uint64_t max_upload, parse_number(r.max_upload, "--max-upload"));
  cfg.max_upload = static_cast<std::size_t>(max_upload);
  cfg.report_retention.max_age_seconds = static_cast<int64_t>(r.report_max_age_days * 24 * 3600);
  cfg.rollout_interval = std::chrono::milliseconds(static_cast<int64_t>(r.rollout_interval_s * 1000));
  OTA32_ASSIGN(cfg.require_signed, load_trusted_keys(r.require_signed));
  OTA32_ASSIGN(ApiSetup setup, open_api(cfg));
  setup.context->metrics = serve.metrics;
  setup.context->log = [](const std::string& line) { fmt::print(stderr, "ota32-serve: {}\n", line); };
  std::fflush(stdout);
  fmt::print(stderr, "ota32-serve: catalog: {} store{}, firmware files in {}\n", setup.context->store->kind(),
             cfg.store_url.empty() ? " " + default_store_url(cfg.data_dir) : "",
             setup.context->blobs.root().string());
  // Servers sharing the blob directory may be uploading right now: only files untouched for an hour go.
  if (auto n = BodyFile::remove_stale(setup.context->blobs.root(), std::chrono::hours(1)))
    fmt::print(stderr, "ota32-serve: removed {} unfinished upload file(s) left by an earlier run\n", n);
  for (const auto& k : cfg.require_signed) {
    fmt::print(stderr, "ota32-serve: uploads must be signed: trusting {} ({}, key digest {})\n", k.file,
               scheme_name(k.key.scheme), to_hex(key_digest(k.key)));
  }
  if (setup.new_admin_token) {
    // The notice and the token on one stream (stdout), so whoever keeps one keeps the other.
    fmt::print(stdout, "ota32-serve: created the admin token; it is shown only this once (stored hashed):\n");
    fmt::print(stdout, "admin token: {}\n", *setup.new_admin_token);
    std::fflush(stdout);
  }
  register_api_routes(router, *setup.context);
  setup.context->rollout_timer = std::make_unique<RolloutTimer>(*setup.context->store, cfg.rollout_interval,
                                                                nullptr, setup.context->log);
  r.context = std::move(setup.context);
  return {};
}

void register_api_routes(Router& router, ApiContext& api) {
  using namespace api_detail;
  auto bind = [&api](ApiHandler fn) { return bind_api(api, fn); };
  // Uploads: the admin token is checked on the header, before any of the body is read, and the body goes
  // to a file in the blob directory (then linked into place), never into memory.
  Router::RouteOptions upload;
  upload.body_limit = api.config.max_upload;
  upload.before_body = [&api](const HttpRequest& header) { return check_admin(api, header); };
  upload.body_dir = api.blobs.root();
  router.add(http::verb::post, "/api/v1/firmware", bind(upload_firmware), std::move(upload));
  router.add(http::verb::get, "/api/v1/firmware", bind(list_firmware));
  router.add(http::verb::get, "/api/v1/firmware/{sha256}", bind(get_firmware));
  router.add(http::verb::delete_, "/api/v1/firmware/{sha256}", bind(delete_firmware));
  router.add(http::verb::get, "/fw/{file}", bind(download_firmware));
  // Device-facing and anonymous: rate-limited per source address.
  auto device_facing = [&api](Reply (*fn)(ApiContext&, const HttpRequest&, const RequestContext&)) {
    return [&api, fn](const HttpRequest& req, const RequestContext& ctx) -> Reply {
      if (auto limited = check_rate(api, req, ctx)) return *limited;
      return fn(api, req, ctx);
    };
  };
  router.add(http::verb::get, "/api/v1/update", device_facing(update_check));
  router.add(http::verb::post, "/api/v1/devices/{id}/report", device_facing(device_report));
  router.add(http::verb::get, "/api/v1/devices", bind(list_devices));
  router.add(http::verb::post, "/api/v1/devices", bind(register_device));
  router.add(http::verb::get, "/api/v1/devices/{id}", bind(get_device));
  router.add(http::verb::delete_, "/api/v1/devices/{id}", bind(delete_device));
  register_compat_routes(router, api);
  register_registry_routes(router, api);
  register_rollout_routes(router, api);
}

}  // namespace ota32::server
