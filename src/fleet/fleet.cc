#include "fleet/fleet.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <mutex>
#include <numeric>
#include <thread>

#include "agent/https_ota.h"
#include "agent/transport.h"
#include "agent/update_agent.h"
#include "boot/bootloader.h"
#include "core/splitmix.h"
#include "device/ota_app_model.h"
#include "device/virtual_device.h"
#include "flash/cow_flash.h"
#include "format/chip.h"
#include "ota_ops/ota_ops.h"

namespace ota32::fleet {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

std::string device_id(std::string_view prefix, uint32_t index) {
  return fmt::format("{}-{:05}", prefix, index);
}

std::vector<uint32_t> failing_devices(uint32_t n, double rate, uint64_t seed) {
  rate = std::clamp(rate, 0.0, 1.0);
  auto k = static_cast<uint32_t>(std::llround(rate * n));
  std::vector<uint32_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0u);
  SplitMix64 r(seed ^ 0x5E1F7E57ull);
  for (uint32_t i = 0; i < k; ++i) {  // partial Fisher-Yates: the first k of a seeded shuffle
    uint32_t j = i + static_cast<uint32_t>(r.below(n - i));
    std::swap(idx[i], idx[j]);
  }
  idx.resize(k);
  std::sort(idx.begin(), idx.end());
  return idx;
}

uint64_t resident_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  for (int guard = 0; guard < 200 && std::getline(in, line); ++guard) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

Result<FleetTemplate> load_template(const std::filesystem::path& dir) {
  OTA32_ASSIGN(auto dev, VirtualDevice::open(dir));
  OTA32_ASSIGN(auto boot, dev->power_on());
  if (!boot.app) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: the template device boots no app ({}); flash one with `ota32 device flash`",
                             dir.string(), boot.failure));
  }
  return FleetTemplate{dev->config(), dev->efuse(), dev->snapshot()};
}

namespace {

// Requests and bytes through every connection the simulated devices open (one request per connection: the
// agent's HTTP client does not keep connections alive, as esp_http_client in esp_https_ota does not).
struct Counters {
  std::atomic<uint64_t> requests{0}, bytes_in{0}, bytes_out{0}, polls{0}, downloading{0}, updated{0},
      rolled_back{0}, failed{0};
};

class CountingConnection final : public agent::Connection {
 public:
  CountingConnection(std::unique_ptr<agent::Connection> inner, Counters& c)
      : inner_(std::move(inner)), c_(c) {}
  Result<size_t> read(std::span<uint8_t> out) override {
    auto n = inner_->read(out);
    if (n) c_.bytes_in.fetch_add(*n, std::memory_order_relaxed);
    return n;
  }
  Result<void> write_all(ByteView data) override {
    c_.bytes_out.fetch_add(data.size(), std::memory_order_relaxed);
    return inner_->write_all(data);
  }

 private:
  std::unique_ptr<agent::Connection> inner_;
  Counters& c_;
};

// All downloads together at most `rate` bytes per second (a token bucket with 100 ms of burst). Waits end
// once `stopping` is set: the run is over, downloads finish at full speed.
class Pacer {
 public:
  Pacer(uint64_t rate, const std::atomic<bool>& stopping) : rate_(rate), stopping_(stopping) {}
  void take(uint64_t bytes) {
    if (rate_ == 0) return;
    Clock::time_point until;
    {
      std::lock_guard lock(mu_);
      auto now = Clock::now();
      const double burst = std::max(4096.0, rate_ / 10.0);
      double avail = std::min(burst, tokens_ + std::chrono::duration<double>(now - last_).count() * rate_);
      last_ = now;
      tokens_ = avail - static_cast<double>(bytes);
      if (tokens_ >= 0) return;
      until =
          now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(-tokens_ / rate_));
    }
    for (int i = 0; i < 10000 && Clock::now() < until && !stopping_.load(); ++i)
      std::this_thread::sleep_for(std::min<Clock::duration>(until - Clock::now(), milliseconds(50)));
  }

 private:
  const double rate_;
  const std::atomic<bool>& stopping_;
  std::mutex mu_;
  double tokens_ = 0;
  Clock::time_point last_ = Clock::now();
};

// The download progress of an interrupted download, kept in memory (NVS on the chip).
class MemoryProgressStore final : public agent::ProgressStore {
 public:
  Result<std::optional<agent::DownloadProgress>> load() override { return saved_; }
  Result<void> save(const agent::DownloadProgress& p) override {
    saved_ = p;
    return {};
  }
  Result<void> clear() override {
    saved_.reset();
    return {};
  }

 private:
  std::optional<agent::DownloadProgress> saved_;
};

struct SimDevice {
  std::string id;
  uint64_t jitter_seed = 0;
  agent::DeviceCredential credential;
  std::unique_ptr<CowFlash> flash;
  uint32_t secure_version = 0;  // the eFuse counter
  agent::MemoryStateStore state;
  MemoryProgressStore progress;
  std::optional<agent::RunningApp> running;  // nullopt: powered off (boots at the next wake)
  bool self_test_fails = false;
  bool dead = false;
  bool retry_pending = false;  // the last attempt failed: the next one is a retry
  std::string start_version;
  DeviceSummary s;
};

// The device's log: nothing is printed; the last warning or error is kept for the summary.
class DeviceLog final : public EspLog {
 public:
  explicit DeviceLog(std::string& last_error) : last_(last_error) {}
  void log(char level, std::string_view tag, std::string text) override {
    if (level == 'E' || level == 'W') last_ = fmt::format("{}: {}", tag, text);
  }

 private:
  std::string& last_;
};

// The agent's actions, forwarded, with the events they led to (what the simulator counts).
// The download action counts as "downloading" on the progress line while it runs.
class RecordingActions final : public agent::AgentActions {
 public:
  RecordingActions(agent::UpdateAgent& agent, std::atomic<uint64_t>& downloading)
      : agent_(agent), downloading_(downloading) {}
  Result<agent::Event> perform(agent::Action a, agent::Cycle& c, const agent::AgentState& s) override {
    const bool download = a == agent::Action::download;
    if (download) downloading_.fetch_add(1, std::memory_order_relaxed);
    auto e = agent_.perform(a, c, s);
    if (download) downloading_.fetch_sub(1, std::memory_order_relaxed);
    if (e) events.emplace_back(a, *e);
    return e;
  }
  std::vector<std::pair<agent::Action, agent::Event>> events;

 private:
  agent::UpdateAgent& agent_;
  std::atomic<uint64_t>& downloading_;
};

class Fleet {
 public:
  Fleet(const FleetTemplate& tpl, const FleetOptions& o, const ChipInfo& chip, PartitionTable table,
        agent::OtaWriterOptions writer)
      : tpl_(tpl),
        o_(o),
        chip_(chip),
        table_(std::move(table)),
        writer_options_(std::move(writer)),
        pacer_(o.bandwidth, stopping_) {}

  Result<void> make_devices() {
    auto base = CowFlash::intern_snapshot(store_, tpl_.flash);
    std::vector<uint32_t> failing = failing_devices(o_.devices, o_.fail_self_test, o_.seed);
    devices_.resize(o_.devices);
    for (uint32_t i = 0; i < o_.devices; ++i) {
      SimDevice& d = devices_[i];
      d.id = device_id(o_.id_prefix, i);
      d.s.id = d.id;
      SplitMix64 r(o_.seed * 0x100000001B3ull + i);
      d.jitter_seed = r.next();
      d.flash = std::make_unique<CowFlash>(store_, base, d.id);
      d.secure_version = tpl_.efuse.secure_version;
      d.self_test_fails = std::binary_search(failing.begin(), failing.end(), i);
      d.s.self_test_fails = d.self_test_fails;
      if (!o_.gateway_token.empty()) d.credential = {o_.gateway_token, true};
    }
    store_.release(base);
    return {};
  }

  // Per-device tokens from the registry (accept issues one for a device without; token rotates it).
  Result<void> provision() {
    std::mutex mu;
    std::optional<Error> first_error;
    PoolOptions po;
    po.workers = o_.pool.workers;
    po.poll_interval = milliseconds(0);
    po.duration = o_.pool.duration;
    po.until_idle = true;
    run_pool(o_.devices, po, [&](uint32_t i) {
      auto t = issue_token(devices_[i].id);
      if (t) {
        devices_[i].credential = {*t, false};
      } else {
        std::lock_guard lock(mu);
        if (!first_error) first_error = t.error();
      }
      return WakeOutcome::finished;
    });
    if (first_error) return *first_error;
    for (auto& d : devices_)
      if (d.credential.token.empty())
        return Error(ErrorCode::timeout, fmt::format("{}: no token issued within --duration", d.id));
    return {};
  }

  WakeOutcome wake(uint32_t i) {
    SimDevice& d = devices_[i];
    bool idle = false, busy = false;
    for (int boot = 0; boot < 4; ++boot) {  // the wake's boots: the update's, the rollback's
      if (!d.running && !power_on(d)) {
        d.dead = true;
        return WakeOutcome::finished;
      }
      agent::AgentExit exit = agent::AgentExit::halt;
      run_agent(d, idle, busy, exit);
      d.flash->flush();
      if (exit != agent::AgentExit::reboot) break;
      d.running.reset();  // esp_restart(): the bootloader runs at the top of the loop
    }
    if (!d.running && !d.dead && !power_on(d)) d.dead = true;  // out of boots: power on for the summary
    return d.dead ? WakeOutcome::finished : (idle && !busy) ? WakeOutcome::idle : WakeOutcome::busy;
  }

  FleetProgress progress(milliseconds elapsed) const {
    FleetProgress p;
    p.elapsed = elapsed;
    p.devices = o_.devices;
    p.polls = c_.polls;
    p.downloading = c_.downloading;
    p.updated = c_.updated;
    p.rolled_back = c_.rolled_back;
    p.failed = c_.failed;
    p.requests = c_.requests;
    p.bytes_in = c_.bytes_in;
    return p;
  }

  void stop() { stopping_ = true; }

  void summarise(FleetReport& r) {
    for (auto& d : devices_) {
      DeviceSummary s = d.s;
      s.start_version = d.start_version;
      s.version = d.running && d.running->desc ? d.running->desc->version : "";
      if (d.dead) {
        s.outcome = "dead";
        ++r.dead;
      } else if (s.version != d.start_version) {
        s.outcome = "updated";
        ++r.updated;
      } else if (d.retry_pending) {
        s.outcome = "failed";
        ++r.failed;
      } else if (s.rollbacks > 0) {
        s.outcome = "rolled_back";
        ++r.rolled_back;
      } else {
        s.outcome = "unchanged";
        ++r.unchanged;
      }
      r.retried += s.retries;
      r.polls += s.polls;
      r.installs += s.installs;
      if (!d.dead) ++r.versions[s.version];
      r.per_device.push_back(std::move(s));
    }
    r.requests = c_.requests;
    r.bytes_in = c_.bytes_in;
    r.bytes_out = c_.bytes_out;
    auto st = store_.stats();
    r.store_sectors = st.unique;
    r.store_bytes = st.unique * kFlashSectorSize;
  }

 private:
  agent::HttpOptions http_options() {
    agent::HttpOptions h;
    h.tls.ca_pem = o_.ca_pem;
    h.tls.ca_name = o_.ca_name;
    h.timeout = o_.timeout;
    const agent::TlsOptions tls = h.tls;
    const milliseconds timeout = o_.timeout;
    h.connect = [this, tls, timeout](const agent::Url& url) -> Result<std::unique_ptr<agent::Connection>> {
      c_.requests.fetch_add(1, std::memory_order_relaxed);
      OTA32_ASSIGN(auto conn, agent::open_connection(url, tls, timeout));
      return std::unique_ptr<agent::Connection>(new CountingConnection(std::move(conn), c_));
    };
    return h;
  }

  Result<std::string> issue_token(const std::string& id) {
    agent::HttpClient client(http_options());
    std::string base = o_.server;
    while (!base.empty() && base.back() == '/') base.pop_back();
    for (const char* verb : {"accept", "token"}) {
      agent::HttpRequest req{
          "POST",
          fmt::format("{}/api/v1/registry/{}/{}", base, agent::url_encode(id), verb),
          {{"Authorization", "Bearer " + o_.admin_token}, {"Content-Type", "application/json"}},
          "{}"};
      OTA32_ASSIGN(auto resp, client.send(req));
      OTA32_ASSIGN(std::string body, resp->read_all(64 * 1024));
      if (resp->status() < 200 || resp->status() >= 300) {
        return Error(
            resp->status() == 401 ? ErrorCode::permission_denied : ErrorCode::invalid_argument,
            fmt::format("registry {} {}: HTTP {} {}", verb, id, resp->status(), body.substr(0, 200)));
      }
      auto j = nlohmann::json::parse(body, nullptr, false);
      if (j.is_object() && j.contains("token") && j["token"].is_string())
        return j["token"].get<std::string>();
    }
    return Error(ErrorCode::corrupt, fmt::format("registry token {}: the reply has no \"token\"", id));
  }

  BootConfig boot_config() const {
    BootConfig c;
    c.rollback = tpl_.config.bootloader.rollback;
    c.anti_rollback = tpl_.config.bootloader.anti_rollback;
    c.idf_version = tpl_.config.bootloader.idf_version;
    return c;
  }
  BootEfuse boot_efuse(const SimDevice& d) const {
    return BootEfuse{tpl_.efuse.chip_revision, d.secure_version, tpl_.efuse.secure_version_bits,
                     tpl_.efuse.secure_boot};
  }
  SecureVersionBurner burner(SimDevice& d) {
    return [&d](uint32_t v) -> Result<void> {
      d.secure_version = std::max(d.secure_version, v);
      return {};
    };
  }

  // The real bootloader on the device's flash; false when no app starts.
  bool power_on(SimDevice& d) {
    auto boot = run_bootloader(*d.flash, chip_, boot_config(), boot_efuse(d), burner(d));
    d.flash->flush();
    if (!boot) {
      d.s.last_error = boot.error().message();
      return false;
    }
    if (!boot->app) {
      d.s.last_error = "boot: " + boot->failure;
      return false;
    }
    d.running = agent::RunningApp{boot->app->partition, boot->app->desc, std::string(chip_.name)};
    if (d.start_version.empty()) d.start_version = boot->app->desc ? boot->app->desc->version : "";
    return true;
  }

  void run_agent(SimDevice& d, bool& idle, bool& busy, agent::AgentExit& exit) {
    const BootEfuse efuse = boot_efuse(d);
    AppOtaContext ctx{*d.flash, table_, silent_app_verifier(*d.flash, chip_, efuse), d.secure_version,
                      tpl_.config.bootloader.anti_rollback};
    ctx.running = &d.running->partition;
    ctx.secure_version_bits = tpl_.efuse.secure_version_bits;
    ctx.burn_secure_version = burner(d);

    agent::UpdateAgentConfig cfg;
    cfg.update_server = o_.server;
    cfg.device_id = d.id;
    cfg.credential = d.credential;
    cfg.ota.http = http_options();
    cfg.ota.writer = writer_options(d);
    if (d.running->desc) cfg.ota.writer.running_version = d.running->desc->version;
    cfg.ota.backoff.jitter_seed = d.jitter_seed;
    cfg.ota.progress = &d.progress;
    cfg.ota.sleep = [this](milliseconds ms) {
      for (int i = 0; i < 1000 && ms.count() > 0 && !stopping_; ++i) {
        auto step = std::min(ms, milliseconds(50));
        std::this_thread::sleep_for(step);
        ms -= step;
      }
    };
    uint64_t paced = 0;
    cfg.ota.on_progress = [this, &paced](uint64_t written, std::optional<uint64_t>) {
      if (written > paced) pacer_.take(written - paced);
      paced = written;
    };
    const std::string start = d.start_version;
    const bool fails = d.self_test_fails;
    const auto& only = o_.fail_versions;
    cfg.self_test = [fails, start, &only](std::string_view v) {
      if (!fails) return true;
      if (only.empty()) return v == start;
      return std::find(only.begin(), only.end(), v) == only.end();
    };

    DeviceLog log(d.s.last_error);
    agent::UpdateAgent agent(std::move(cfg), ctx, d.state, log);
    RecordingActions rec(agent, c_.downloading);
    agent::Cycle cycle;
    const auto& app = *d.running;
    cycle.running = app.desc ? app.desc->version : "";
    cycle.project = app.desc ? app.desc->project_name : "";
    if (app.desc) cycle.secure_version = app.desc->secure_version;
    cycle.chip = app.chip;
    auto r = agent::run_transitions(d.state, rec, cycle);
    exit = r ? *r : agent::AgentExit::halt;
    if (!r) {
      d.s.last_error = r.error().message();
      busy = true;
    }
    using agent::Action;
    using agent::Event;
    for (auto [a, e] : rec.events) {
      if (a == Action::check) {
        ++d.s.polls;
        c_.polls.fetch_add(1, std::memory_order_relaxed);
        if (d.retry_pending) {  // a new attempt: the device is no longer counted as failed
          ++d.s.retries;
          d.retry_pending = false;
          c_.failed.fetch_sub(1, std::memory_order_relaxed);
        }
        if (e == Event::no_update || e == Event::offer_rolled_back)
          idle = true;
        else
          busy = true;
        if (e == Event::check_failed) fail(d);
      } else if (a == Action::download) {
        busy = true;
        if (e == Event::installed) {
          ++d.s.installs;
          if (agent.last_download())
            d.s.retries += static_cast<uint32_t>(agent.last_download()->connections - 1);
        } else if (e == Event::same_version) {
          busy = false;
          idle = true;
        } else {
          fail(d);
        }
      } else if (a == Action::self_test && e == Event::self_test_failed) {
        ++d.s.rollbacks;
        if (d.s.rollbacks == 1) c_.rolled_back.fetch_add(1, std::memory_order_relaxed);
        busy = true;
      } else if (a == Action::compare_installed && e == Event::installed_booted) {
        busy = true;
        if (cycle.running != d.start_version) c_.updated.fetch_add(1, std::memory_order_relaxed);
      }
    }
  }

  void fail(SimDevice& d) {
    ++d.s.failures;
    if (!d.retry_pending) c_.failed.fetch_add(1, std::memory_order_relaxed);
    d.retry_pending = true;
  }

  // What the template device's firmware build gives its OtaWriter (device/ota_app_model.h
  // ota_writer_options), with this device's eFuse counter.
  agent::OtaWriterOptions writer_options(const SimDevice& d) const {
    agent::OtaWriterOptions w = writer_options_;
    if (tpl_.config.bootloader.anti_rollback) w.efuse_secure_version = d.secure_version;
    return w;
  }

  const FleetTemplate& tpl_;
  const FleetOptions& o_;
  const ChipInfo& chip_;
  const PartitionTable table_;
  const agent::OtaWriterOptions writer_options_;  // the template's firmware build
  SectorStore store_;
  std::vector<SimDevice> devices_;
  Counters c_;
  std::atomic<bool> stopping_{false};
  Pacer pacer_;
};

}  // namespace

Result<FleetReport> run_fleet(const FleetTemplate& tpl, const FleetOptions& o,
                              const std::function<void(const FleetProgress&)>& progress) {
  if (o.server.empty()) return Error(ErrorCode::invalid_argument, "--server: required");
  if (o.devices == 0) return Error(ErrorCode::invalid_argument, "--devices: at least 1");
  if (!(o.fail_self_test >= 0 && o.fail_self_test <= 1))
    return Error(ErrorCode::invalid_argument, "--fail-self-test: a fraction from 0 to 1");
  if (o.provision && o.admin_token.empty())
    return Error(ErrorCode::invalid_argument, "--provision needs the admin token (--admin-token-file)");
  if (tpl.flash.size() % kFlashSectorSize != 0 || tpl.flash.size() < 0x10000)
    return Error(ErrorCode::invalid_argument, "template flash: not a whole number of 4 KiB sectors");
  const ChipInfo* chip = find_chip(tpl.config.chip);
  if (chip == nullptr)
    return Error(ErrorCode::invalid_argument, fmt::format("template: unknown chip '{}'", tpl.config.chip));
  BinaryOptions bo;
  OTA32_ASSIGN(auto table, parse_partition_binary(ByteView(tpl.flash).subspan(kPartitionTableOffset, 0xC00),
                                                  bo, "template partition table at 0x8000"));

  FleetReport report;
  report.devices = o.devices;
  report.seed = o.seed;
  // The template's firmware build (every device runs the same bootloader and app build): read once from a
  // device made of the template, released before the fleet's memory is measured.
  agent::OtaWriterOptions writer;
  {
    OTA32_ASSIGN(auto dev, VirtualDevice::in_memory(tpl.config, tpl.efuse, Bytes(tpl.flash)));
    writer = ota_writer_options(*dev);
  }
  report.rss_before = resident_bytes();
  Fleet fleet(tpl, o, *chip, std::move(table), std::move(writer));
  OTA32_TRY(fleet.make_devices());
  report.rss_devices = resident_bytes();
  if (o.provision) OTA32_TRY(fleet.provision());

  const auto start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration_cast<milliseconds>(Clock::now() - start); };
  PoolResult pr = run_pool(
      o.devices, o.pool, [&](uint32_t i) { return fleet.wake(i); },
      [&] {
        if (progress) progress(fleet.progress(elapsed()));
      });
  fleet.stop();
  if (progress) {
    auto p = fleet.progress(elapsed());
    p.final = true;
    progress(p);
  }
  report.stop = pr.reason;
  report.seconds = std::chrono::duration<double>(pr.elapsed).count();
  report.rss_after = resident_bytes();
  fleet.summarise(report);
  report.requests_per_second = report.seconds > 0 ? report.requests / report.seconds : 0;
  auto per_device = [&](uint64_t rss) {
    return rss > report.rss_before ? double(rss - report.rss_before) / o.devices : 0.0;
  };
  report.rss_per_device_made = per_device(report.rss_devices);
  report.rss_per_device = per_device(report.rss_after);
  return report;
}

namespace {
std::string mib(uint64_t b) { return fmt::format("{:.1f} MiB", b / 1048576.0); }
}  // namespace

std::string format_progress(const FleetProgress& p) {
  return fmt::format(
      "{:6.1f} s  polls {}  downloading {}  updated {}/{}  rolled back {}  failed {}  {} requests  {}",
      p.elapsed.count() / 1000.0, p.polls, p.downloading, p.updated, p.devices, p.rolled_back, p.failed,
      p.requests, mib(p.bytes_in));
}

std::string format_report(const FleetReport& r) {
  std::string versions;
  for (const auto& [v, n] : r.versions)
    versions += fmt::format("{}{} x{}", versions.empty() ? "" : ", ", v, n);
  std::string s;
  auto row = [&](std::string_view k, std::string v) { s += fmt::format("{:<22}{}\n", k, v); };
  row("devices", fmt::format("{} (seed {})", r.devices, r.seed));
  row("updated", std::to_string(r.updated));
  row("rolled back", std::to_string(r.rolled_back));
  row("failed", std::to_string(r.failed));
  row("unchanged", std::to_string(r.unchanged));
  if (r.dead) row("dead (no app boots)", std::to_string(r.dead));
  row("retried", std::to_string(r.retried));
  row("running versions", versions.empty() ? "-" : versions);
  row("time", fmt::format("{:.1f} s (stopped: {})", r.seconds, to_string(r.stop)));
  row("polls", std::to_string(r.polls));
  row("server requests", fmt::format("{} ({:.1f}/s)", r.requests, r.requests_per_second));
  row("bytes", fmt::format("{} received, {} sent", mib(r.bytes_in), mib(r.bytes_out)));
  row("memory", fmt::format("{} resident at the end: {:.1f} KiB per device ({:.1f} KiB once made), {} in {} "
                            "shared sectors",
                            mib(r.rss_after), r.rss_per_device / 1024.0, r.rss_per_device_made / 1024.0,
                            mib(r.store_bytes), r.store_sectors));
  return s;
}

nlohmann::json report_json(const FleetReport& r, bool per_device) {
  nlohmann::json j = {{"devices", r.devices},
                      {"seed", r.seed},
                      {"updated", r.updated},
                      {"rolled_back", r.rolled_back},
                      {"failed", r.failed},
                      {"unchanged", r.unchanged},
                      {"dead", r.dead},
                      {"retried", r.retried},
                      {"polls", r.polls},
                      {"installs", r.installs},
                      {"requests", r.requests},
                      {"requests_per_second", r.requests_per_second},
                      {"bytes_received", r.bytes_in},
                      {"bytes_sent", r.bytes_out},
                      {"seconds", r.seconds},
                      {"stopped", std::string(to_string(r.stop))},
                      {"versions", r.versions},
                      {"rss_bytes", r.rss_after},
                      {"rss_before_devices_bytes", r.rss_before},
                      {"rss_per_device_bytes", r.rss_per_device},
                      {"rss_devices_made_bytes", r.rss_devices},
                      {"rss_per_device_made_bytes", r.rss_per_device_made},
                      {"store_sectors", r.store_sectors},
                      {"store_bytes", r.store_bytes}};
  if (per_device) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& d : r.per_device) {
      list.push_back({{"id", d.id},
                      {"outcome", d.outcome},
                      {"start_version", d.start_version},
                      {"version", d.version},
                      {"self_test_fails", d.self_test_fails},
                      {"polls", d.polls},
                      {"installs", d.installs},
                      {"rollbacks", d.rollbacks},
                      {"failures", d.failures},
                      {"retries", d.retries},
                      {"last_error", d.last_error}});
    }
    j["per_device"] = std::move(list);
  }
  return j;
}

}  // namespace ota32::fleet
