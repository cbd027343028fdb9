#include "sim/powercut_sweep.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <memory>

#include "agent/ota_writer.h"
#include "boot/bootloader.h"
#include "core/hash.h"
#include "core/splitmix.h"
#include "device/app_model.h"
#include "device/ota_app_model.h"
#include "device/virtual_device.h"
#include "format/app_image.h"
#include "format/otadata.h"
#include "sim/image_server.h"

namespace ota32::sim {
namespace {

constexpr int kMaxBoots = 8;
constexpr size_t kWriteChunk = 1024;      // esp_https_ota's and native_ota_example's buffer
constexpr uint32_t kProgressSectors = 4;  // the resumed download saves its progress every 16 KiB
constexpr const char* kImageUrl = "http://image-server/new.bin";
constexpr const char* kServerUrl = "http://image-server";
constexpr uint32_t kPartitionTableSize = 0xC00;

constexpr std::array<Scenario, 8> kScenarios = {
    Scenario::ota,         Scenario::ota_rollback, Scenario::rollback,  Scenario::mark_valid,
    Scenario::write_flash, Scenario::resume,       Scenario::lifecycle, Scenario::secure_version};

// The agent's download progress where the chip keeps it (NVS): survives the power cut, written atomically.
// NVS lives on the same flash, so once its power is lost nothing more is stored.
class MemProgressStore final : public agent::ProgressStore {
 public:
  std::optional<agent::DownloadProgress> saved;
  const FaultFlash* flash = nullptr;
  Result<std::optional<agent::DownloadProgress>> load() override { return saved; }
  Result<void> save(const agent::DownloadProgress& p) override {
    if (flash && flash->power_lost()) return lost();
    saved = p;
    return {};
  }
  Result<void> clear() override {
    if (flash && flash->power_lost()) return lost();
    saved.reset();
    return {};
  }

 private:
  static Error lost() { return Error(ErrorCode::power_lost, "NVS: power lost"); }
};

// The update agent's record in NVS: like MemProgressStore, nothing is stored once the power is lost.
class NvsStateStore final : public agent::StateStore {
 public:
  agent::AgentState saved;
  const FaultFlash* flash = nullptr;
  Result<agent::AgentState> load() override { return saved; }
  Result<void> save(const agent::AgentState& s) override {
    if (flash && flash->power_lost()) return Error(ErrorCode::power_lost, "NVS: power lost");
    saved = s;
    return {};
  }
};

// An image is known by its appended SHA-256 (esp_app_desc's app_elf_sha256 is per build, not per image),
// or the SHA-256 of its bytes when it has none.
Sha256Digest id_of(const AppImage& img, ByteView bytes) {
  if (img.stored_sha256) return *img.stored_sha256;
  return sha256(bytes.first(std::min<size_t>(bytes.size(), img.image_size)));
}

Result<Sha256Digest> booted_id(NorFlash& flash, const BootedApp& app) {
  if (app.image.stored_sha256) return *app.image.stored_sha256;
  Bytes b(app.image.image_size);
  OTA32_TRY(flash.read(app.partition.offset, b));
  return sha256(b);
}

std::string describe_app(const PartitionEntry& p, const std::optional<AppDescription>& d) {
  return d ? fmt::format("{} (version {})", p.name, d->version)
           : fmt::format("{} (no app descriptor)", p.name);
}

enum class Install { none, direct, https, agent };

struct FirmwareSpec {
  Install install = Install::none;
  std::shared_ptr<const Bytes> image;  // installed until it runs
  Sha256Digest image_id{};
  std::optional<Sha256Digest> crashes;  // this image resets before it confirms itself
  std::shared_ptr<ImageServer> server;  // Install::https
};

// The sweep's firmware, run after every boot: confirm a PENDING_VERIFY image (DefaultAppModel, whose
// self-test passes), then install the new image unless it is the one running, and reboot into it.
class Firmware final : public AppModel {
 public:
  explicit Firmware(FirmwareSpec spec) : spec_(std::move(spec)) {}

  MemProgressStore progress;
  NvsStateStore record;
  uint32_t resumed_from = 0;  // the last download's resume offset (0 = from the start)

  Result<AppExit> run(VirtualDevice& dev, const BootResult& boot, BootLog& log) override {
    if (!boot.app) return AppExit::halt;
    if (spec_.install == Install::agent) return run_agent(dev, boot);
    OTA32_ASSIGN(Sha256Digest id, booted_id(dev.raw_flash(), *boot.app));
    if (spec_.crashes && id == *spec_.crashes) return AppExit::reboot;  // e.g. a watchdog reset
    DefaultAppModel confirm;
    OTA32_ASSIGN(AppExit e, confirm.run(dev, boot, log));
    if (e == AppExit::reboot) return e;
    if (spec_.install == Install::none || id == spec_.image_id) return AppExit::halt;
    OTA32_ASSIGN(PartitionTable table, dev.partition_table());
    agent::OtaWriterOptions o = ota_writer_options(dev);
    const ByteView image = *spec_.image;
    if (spec_.install == Install::direct) {
      const PartitionEntry* slot = agent::next_update_partition(table, &boot.app->partition);
      if (slot == nullptr) return Error(ErrorCode::not_found, "the partition table has no OTA slot");
      OTA32_ASSIGN(auto w, agent::OtaWriter::begin(dev.flash(), table, *slot, &boot.app->partition, o));
      for (size_t off = 0; off < image.size(); off += kWriteChunk) {
        OTA32_TRY(w->write(image.subspan(off, std::min(kWriteChunk, image.size() - off))));
      }
      OTA32_TRY(w->end());
      OTA32_TRY(w->set_boot_partition());
    } else {
      agent::HttpsOtaConfig c;
      c.url = kImageUrl;
      c.http.connect = spec_.server->connector();
      c.writer = o;
      c.progress = &progress;
      c.cadence.sectors = kProgressSectors;
      c.sleep = [](std::chrono::milliseconds) {};
      agent::NullLog quiet;
      OTA32_ASSIGN(auto r, agent::https_ota(dev.flash(), table, &boot.app->partition, c, quiet));
      resumed_from = r.resumed_from;
    }
    return AppExit::reboot;
  }

 private:
  // The update agent as the firmware: it confirms, checks with the server, installs, reports.
  Result<AppExit> run_agent(VirtualDevice& dev, const BootResult& boot) {
    OTA32_ASSIGN(PartitionTable table, dev.partition_table());
    AppOtaContext ctx = app_ota_context(dev, boot, table);
    agent::UpdateAgentConfig cfg;
    cfg.update_server = kServerUrl;
    cfg.device_id = dev.efuse().mac;
    cfg.ota.http.connect = spec_.server->connector();
    cfg.ota.writer = ota_writer_options(dev);
    if (boot.app->desc) cfg.ota.writer.running_version = boot.app->desc->version;
    cfg.ota.progress = &progress;
    cfg.ota.cadence.sectors = kProgressSectors;
    cfg.ota.sleep = [](std::chrono::milliseconds) {};
    agent::NullLog quiet;
    agent::UpdateAgent a(std::move(cfg), ctx, record, quiet);
    OTA32_ASSIGN(agent::AgentExit e, a.run(running_app(dev, boot)));
    if (a.last_download()) resumed_from = a.last_download()->resumed_from;
    return e == agent::AgentExit::reboot ? AppExit::reboot : AppExit::halt;
  }

  FirmwareSpec spec_;
};

struct Plan {
  Scenario scenario;
  DeviceState start;  // what the clean run and every cut start from
  FirmwareSpec fw;
  Sha256Digest old_id{}, new_id{}, target_id{};
  bool has_old = false;
  std::string old_desc, new_desc;
  std::vector<FlashFile> files;  // write_flash
  Bytes clean_written;           // write_flash: the flash right after the clean run's write_flash
  uint64_t seed = 0;
  TornMode torn = TornMode::random;
  uint32_t counter_before = 0, new_secure_version = 0;  // secure-version
  std::string new_version;                              // lifecycle: the version the server offers
};

struct Rig {
  std::unique_ptr<VirtualDevice> dev;
  std::shared_ptr<Firmware> fw;
};

Result<Rig> make_rig(const DeviceState& s, const Plan& plan) {
  OTA32_ASSIGN(auto dev, VirtualDevice::in_memory(s.config, s.efuse, s.flash));
  auto fw = std::make_shared<Firmware>(plan.fw);
  fw->progress.saved = s.progress;
  fw->progress.flash = &dev->flash();
  fw->record.saved = s.record;
  fw->record.flash = &dev->flash();
  dev->set_app_model(fw);
  dev->flash().set_seed(plan.seed);
  dev->flash().set_torn_mode(plan.torn);
  return Rig{std::move(dev), std::move(fw)};
}

DeviceState state_of(const Rig& r) {
  return DeviceState{r.dev->config(), r.dev->efuse(), r.dev->snapshot(), r.fw->progress.saved,
                     r.fw->record.saved};
}

BootEfuse boot_efuse(const VirtualDevice& dev) {
  return BootEfuse{dev.efuse().chip_revision, dev.efuse().secure_version, dev.efuse().secure_version_bits};
}

// What the bootloader would decide on the flash as it is (read past the FaultFlash: checks are not
// operations). nullopt when the partition table or otadata does not parse (write_flash half done).
struct Decision {
  PartitionTable table;
  BootSelection sel;
};
Result<std::optional<Decision>> decide(VirtualDevice& dev) {
  NorFlash& f = dev.raw_flash();
  Bytes bin(kPartitionTableSize);
  OTA32_TRY(f.read(kPartitionTableOffset, bin));
  BinaryOptions bo;
  auto table = parse_partition_binary(bin, bo, "partition table at 0x8000");
  if (!table) return std::optional<Decision>();
  Otadata d;
  const PartitionEntry* od = table->otadata();
  if (od != nullptr) {
    Bytes raw(kOtadataSize);
    OTA32_TRY(f.read(od->offset, raw));
    auto parsed = parse_otadata(raw);
    if (!parsed) return std::optional<Decision>();
    d = *parsed;
  }
  BootSelectOptions o;
  o.has_otadata = od != nullptr;
  o.rollback = dev.config().bootloader.rollback || dev.config().bootloader.anti_rollback;
  o.has_factory = table->factory() != nullptr;
  const size_t slots = table->ota_apps().size();
  if (dev.config().bootloader.anti_rollback) {  // as the bootloader chooses: by the apps' secure_version too
    o.anti_rollback = true;
    o.efuse_secure_version = dev.efuse().secure_version;
    for (size_t i = 0; i < slots && i < o.slot_secure_version.size(); ++i) {
      OTA32_ASSIGN(auto d, get_partition_description(f, *table->ota_apps()[i]));
      if (d) o.slot_secure_version[i] = d->secure_version;
    }
  }
  BootSelection sel = select_boot_slot(d, std::max<size_t>(slots, 1), o);
  return std::optional<Decision>(Decision{std::move(*table), std::move(sel)});
}

// The image in `p` if it verifies as the bootloader verifies it (silently).
Result<std::optional<Sha256Digest>> verified_id(VirtualDevice& dev, const PartitionEntry& p) {
  OTA32_ASSIGN(auto loaded, load_app_image(dev.raw_flash(), dev.chip(), p, boot_efuse(dev), false, nullptr));
  if (!loaded) return std::optional<Sha256Digest>();
  if (loaded->image.stored_sha256) return std::optional<Sha256Digest>(*loaded->image.stored_sha256);
  Bytes b(loaded->image.image_size);
  OTA32_TRY(dev.raw_flash().read(p.offset, b));
  return std::optional<Sha256Digest>(sha256(b));
}

// Committed to `target`: the next boot starts it without rewriting otadata (no NEW / PENDING_VERIFY left).
Result<bool> committed(VirtualDevice& dev, const Sha256Digest& target) {
  OTA32_ASSIGN(auto d, decide(dev));
  if (!d || !d->sel.writes.empty()) return false;
  const PartitionEntry* p = boot_partition_for(d->table, d->sel);
  if (p == nullptr) return false;
  OTA32_ASSIGN(auto id, verified_id(dev, *p));
  return id && *id == target;
}

// "otadata never selects an invalid slot": when an otadata entry picks an OTA slot, its image verifies.
Result<std::string> selection_problem(VirtualDevice& dev) {
  OTA32_ASSIGN(auto d, decide(dev));
  if (!d || d->sel.entry_index < 0 || !d->sel.ota_slot) return std::string();
  const auto slots = d->table.ota_apps();
  if (*d->sel.ota_slot >= slots.size()) return std::string();
  const PartitionEntry& p = *slots[*d->sel.ota_slot];
  OTA32_ASSIGN(auto id, verified_id(dev, p));
  if (id) return std::string();
  return fmt::format("otadata entry {} selects {}, whose image does not verify", d->sel.entry_index, p.name);
}

// The anti-rollback counter after a cut (secure-version): within [before, new], and above `before` only
// when otadata already commits to the new image, the one app it may still boot.
Result<std::string> counter_problem(VirtualDevice& dev, const Plan& plan) {
  if (plan.scenario != Scenario::secure_version) return std::string();
  const uint32_t c = dev.efuse().secure_version;
  if (c < plan.counter_before || c > plan.new_secure_version) {
    return fmt::format(
        "the eFuse counter is {}, outside [{}, {}] (where it started, the new image's "
        "secure_version)",
        c, plan.counter_before, plan.new_secure_version);
  }
  if (c == plan.counter_before) return std::string();
  OTA32_ASSIGN(bool c_ok, committed(dev, plan.new_id));
  if (c_ok) return std::string();
  return fmt::format(
      "the eFuse counter was burnt to {} before otadata committed to the new image: the old "
      "image is below it",
      c);
}

struct BootRecord {
  std::optional<Sha256Digest> id;
  std::string desc;
};

struct Trace {
  std::vector<BootRecord> boots;
  bool settled = false;               // the firmware halted (no reboot pending)
  std::optional<uint64_t> commit_at;  // mutations when it committed to the target (track_commit)
  Bytes after_write_flash;            // write_flash scenario, when asked
};

// The scenario's procedure: write_flash first (write-flash scenario), then power on and run the firmware
// until it halts. A cut surfaces as a power_lost error; the trace keeps what happened until then.
Result<void> run_procedure(Rig& rig, const Plan& plan, Trace& t, bool track_commit, bool keep_written) {
  VirtualDevice& dev = *rig.dev;
  auto note_commit = [&]() -> Result<void> {
    if (!track_commit) return {};
    OTA32_ASSIGN(bool c, committed(dev, plan.target_id));
    if (!c) {
      t.commit_at.reset();
    } else if (!t.commit_at) {
      t.commit_at = dev.flash().mutations();
    }
    return {};
  };
  if (plan.scenario == Scenario::write_flash) {
    OTA32_TRY(dev.write_flash(plan.files, WriteFlashOptions{}, [](const std::string&) {}));
    if (keep_written) t.after_write_flash = dev.snapshot();
    OTA32_TRY(note_commit());
  }
  for (int i = 0; i < kMaxBoots; ++i) {
    OTA32_ASSIGN(BootResult boot, dev.power_on());
    BootRecord rec;
    if (boot.app) {
      OTA32_ASSIGN(rec.id, booted_id(dev.raw_flash(), *boot.app));
      rec.desc = describe_app(boot.app->partition, boot.app->desc);
    } else {
      rec.desc = fmt::format("no app ({})", boot.failure.empty() ? "no bootable image" : boot.failure);
    }
    t.boots.push_back(rec);
    if (!boot.app) return {};
    OTA32_TRY(note_commit());
    BootLog log(boot.log.empty() ? 0 : boot.log.back().ms);
    OTA32_ASSIGN(AppExit e, rig.fw->run(dev, boot, log));
    OTA32_TRY(note_commit());
    if (e == AppExit::halt) {
      t.settled = true;
      return {};
    }
  }
  return {};
}

std::string id_desc(const Plan& plan, const BootRecord& b) {
  if (!b.id) return b.desc;
  if (*b.id == plan.new_id) return b.desc + ", the new image";
  if (plan.has_old && *b.id == plan.old_id) return b.desc + ", the old image";
  return b.desc;
}

// Whether an otadata entry for the slot holding the new image says ABORTED (the bootloader's rollback).
Result<bool> new_slot_aborted(VirtualDevice& dev, const Plan& plan) {
  OTA32_ASSIGN(PartitionTable table, dev.partition_table());
  for (const PartitionEntry* p : table.ota_apps()) {
    OTA32_ASSIGN(auto id, verified_id(dev, *p));
    if (!id || *id != plan.new_id) continue;
    auto st = get_state_partition(dev.raw_flash(), table, *p);
    if (st && *st == kOtaStateAborted) return true;
  }
  return false;
}

// After a retry that ran without a cut: it ends on the target, committed, and a further power-on boots the
// target and writes nothing.
Result<std::string> final_problem(Rig& rig, const Plan& plan, const Trace& t, std::string_view who) {
  if (t.boots.empty()) return fmt::format("{} never booted", who);
  const BootRecord& last = t.boots.back();
  if (!last.id) return fmt::format("{} ended with {}", who, last.desc);
  if (!t.settled) return fmt::format("{} kept rebooting ({} boots)", who, t.boots.size());
  Sha256Digest target = plan.target_id;
  if (plan.scenario == Scenario::lifecycle && plan.has_old && *last.id == plan.old_id) {
    // ESP-IDF's rollback: a cut after the switch and before the new image confirmed itself looks to the
    // bootloader like a crash of its trial boot (PENDING_VERIFY -> ABORTED), and the agent then refuses
    // the version as native_ota_example does. Accepted only with that evidence; a cut after the
    // confirmation that goes back is caught by boots_problem.
    OTA32_ASSIGN(bool aborted, new_slot_aborted(*rig.dev, plan));
    if (aborted) target = plan.old_id;
  }
  const char* target_name = target == plan.new_id ? "the new image" : "the old image";
  if (*last.id != target) {
    return fmt::format("{} ended on {}, not on {}", who, id_desc(plan, last), target_name);
  }
  OTA32_ASSIGN(bool c, committed(*rig.dev, target));
  if (!c) return fmt::format("{} ended on {} but the next boot would not keep it", who, target_name);
  const uint64_t before = rig.dev->flash().mutations();
  OTA32_ASSIGN(BootResult again, rig.dev->power_on());
  if (!again.app) return fmt::format("the power-on after {} started no app", who);
  OTA32_ASSIGN(Sha256Digest id, booted_id(rig.dev->raw_flash(), *again.app));
  if (id != target) return fmt::format("the power-on after {} started another image", who);
  if (rig.dev->flash().mutations() != before) return fmt::format("the power-on after {} wrote flash", who);
  if (plan.scenario == Scenario::lifecycle) {
    const agent::AgentState& rec = rig.fw->record.saved;
    if (rec.phase != agent::Phase::idle) {
      return fmt::format("{} left the agent's record {} {}, not idle", who, agent::to_string(rec.phase),
                         rec.version);
    }
    if (target == plan.new_id && rec.is_rolled_back(plan.new_version)) {
      return fmt::format("{} left the new version {} marked as rolled back", who, plan.new_version);
    }
    if (target != plan.new_id && !rec.is_rolled_back(plan.new_version)) {
      return fmt::format("{} went back to the old image without marking {} as rolled back", who,
                         plan.new_version);
    }
  }
  if (plan.scenario == Scenario::secure_version &&
      rig.dev->efuse().secure_version != plan.new_secure_version) {
    return fmt::format("{} left the eFuse counter at {}, not at the new image's secure_version {}", who,
                       rig.dev->efuse().secure_version, plan.new_secure_version);
  }
  return std::string();
}

// Checks the boots of a recovery that followed a cut (the first of them is the boot right after it).
std::string boots_problem(const Plan& plan, const Trace& t, bool committed_before) {
  if (plan.scenario == Scenario::write_flash) return std::string();  // judged by the retry alone
  for (size_t i = 0; i < t.boots.size(); ++i) {
    const BootRecord& b = t.boots[i];
    const std::string which = i == 0 ? "the boot after the cut" : fmt::format("boot {} after the cut", i + 1);
    if (!b.id) return fmt::format("{} started {}", which, b.desc);
    if (*b.id != plan.new_id && !(plan.has_old && *b.id == plan.old_id)) {
      return fmt::format("{} started {}: neither the old ({}) nor the new image ({})", which, b.desc,
                         plan.old_desc, plan.new_desc);
    }
    if (i == 0 && committed_before && *b.id != plan.target_id) {
      return fmt::format("{} went back to {} although the run had already committed to {}", which,
                         id_desc(plan, b), plan.target_id == plan.new_id ? plan.new_desc : plan.old_desc);
    }
  }
  return std::string();
}

struct CutResult {
  std::string problem;  // empty = survived
  std::string op;
  std::optional<uint64_t> second;
  bool unbootable = false;
};

// Arms a cut `at` operations after the device's current count and runs the procedure; the device must
// lose power. Returns the problem ("" = it did) and the torn operation.
Result<std::string> cut_run(Rig& rig, const Plan& plan, uint64_t at, Trace& t, std::string& op) {
  rig.dev->flash().cut_power_at(rig.dev->flash().mutations() + at);
  auto r = run_procedure(rig, plan, t, false, false);
  if (r) return fmt::format("the run ended before operation {} (it is not deterministic)", at);
  if (r.error().code() != ErrorCode::power_lost)
    return fmt::format("the run failed: {}", r.error().message());
  const auto& log = rig.dev->flash().log();
  op = log.empty() ? std::string("?") : to_string(log.back());
  rig.dev->flash().restore_power();
  return std::string();
}

// Right after a cut (power restored): the otadata check, and for write_flash whether the device boots at all.
Result<std::string> after_cut(Rig& rig, const Plan& plan, bool& unbootable) {
  OTA32_ASSIGN(std::string sel, selection_problem(*rig.dev));
  if (!sel.empty()) return sel;
  OTA32_ASSIGN(std::string counter, counter_problem(*rig.dev, plan));
  if (!counter.empty()) return counter;
  if (plan.scenario == Scenario::write_flash) {  // someone powers it on before flashing again
    OTA32_ASSIGN(BootResult b, rig.dev->power_on());
    unbootable = !b.app.has_value();
  }
  return std::string();
}

// The retry after a cut: the same procedure again, without a cut, then the final checks.
Result<std::string> retry(Rig& rig, const Plan& plan, bool committed_before, Trace* out = nullptr) {
  Trace t;
  auto r = run_procedure(rig, plan, t, out != nullptr, plan.scenario == Scenario::write_flash);
  if (!r) return fmt::format("the retry failed: {}", r.error().message());
  std::string p = boots_problem(plan, t, committed_before);
  if (!p.empty()) return p;
  if (plan.scenario == Scenario::write_flash && t.after_write_flash != plan.clean_written) {
    auto diff = std::mismatch(t.after_write_flash.begin(), t.after_write_flash.end(),
                              plan.clean_written.begin(), plan.clean_written.end());
    return fmt::format("the retried write_flash left different flash than a clean one (first at {:#x})",
                       static_cast<size_t>(diff.first - t.after_write_flash.begin()));
  }
  OTA32_ASSIGN(p, final_problem(rig, plan, t, "the retry"));
  if (out) *out = std::move(t);
  return p;
}

// The first cut of a run from the start state and the checks right after it (power restored).
Result<Rig> first_cut(const Plan& plan, uint64_t cut, CutResult& res) {
  OTA32_ASSIGN(Rig rig, make_rig(plan.start, plan));
  Trace t;
  OTA32_ASSIGN(res.problem, cut_run(rig, plan, cut, t, res.op));
  if (res.problem.empty()) {
    OTA32_ASSIGN(res.problem, after_cut(rig, plan, res.unbootable));
  }
  return rig;
}

Result<CutResult> single_cut(const Plan& plan, uint64_t cut, uint64_t commit_op) {
  CutResult res;
  OTA32_ASSIGN(Rig rig, first_cut(plan, cut, res));
  if (!res.problem.empty()) return res;
  OTA32_ASSIGN(res.problem, retry(rig, plan, cut >= commit_op));
  return res;
}

Result<CutResult> pair_cut(const Plan& plan, uint64_t cut, uint64_t commit_op, SplitMix64& rng) {
  CutResult res;
  OTA32_ASSIGN(Rig rig, first_cut(plan, cut, res));
  if (!res.problem.empty()) return res;
  const DeviceState torn = state_of(rig);
  // The recovery without a second cut (the single cut's check): how many operations it makes, and where
  // it commits. The power-on after it writes nothing when it passed.
  Trace probe;
  const uint64_t m0 = rig.dev->flash().mutations();
  OTA32_ASSIGN(res.problem, retry(rig, plan, cut >= commit_op, &probe));
  if (!res.problem.empty()) return res;
  const uint64_t recovery_ops = rig.dev->flash().mutations() - m0;
  if (recovery_ops == 0) return res;  // nothing to cut: the recovery writes nothing
  const uint64_t second = rng.below(recovery_ops);
  res.second = second;
  OTA32_ASSIGN(Rig again, make_rig(torn, plan));
  again.dev->flash().set_seed(plan.seed ^ (cut + 1) * 0x9E3779B97F4A7C15ull);
  Trace t2;
  std::string op2;
  OTA32_ASSIGN(res.problem, cut_run(again, plan, second, t2, op2));
  if (!res.problem.empty()) return res;
  res.op += ", then " + op2;
  if (std::string p = boots_problem(plan, t2, cut >= commit_op); !p.empty()) {
    res.problem = "during the recovery: " + p;
    return res;
  }
  bool ignored = false;
  OTA32_ASSIGN(res.problem, after_cut(again, plan, ignored));
  if (!res.problem.empty()) return res;
  const bool committed_before = probe.commit_at && m0 + second >= *probe.commit_at;
  OTA32_ASSIGN(res.problem, retry(again, plan, committed_before));
  return res;
}

// The files of `idf.py flash` for the write-flash scenario, taken from the device as it is.
Result<std::vector<FlashFile>> whole_device_files(VirtualDevice& dev, ByteView new_image) {
  NorFlash& f = dev.raw_flash();
  const uint32_t bl_at = dev.chip().bootloader_offset;
  Bytes region(kPartitionTableOffset - bl_at);
  OTA32_TRY(f.read(bl_at, region));
  auto bl = parse_image(region, "bootloader");
  if (!bl) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("write-flash: no bootloader image at {:#x} to flash back ({}); flash the "
                             "device first (`ota32 device flash`)",
                             bl_at, bl.error().message()));
  }
  Bytes table_bin(kPartitionTableSize);
  OTA32_TRY(f.read(kPartitionTableOffset, table_bin));
  BinaryOptions bo;
  auto table = parse_partition_binary(table_bin, bo, "partition table at 0x8000");
  if (!table)
    return Error(ErrorCode::invalid_argument, fmt::format("write-flash: {}", table.error().message()));
  std::vector<FlashFile> files;
  files.push_back({bl_at, "bootloader.bin", Bytes(region.begin(), region.begin() + bl->image_size)});
  files.push_back({kPartitionTableOffset, "partition-table.bin", table_bin});
  if (const PartitionEntry* od = table->otadata()) {
    files.push_back({od->offset, "ota_data_initial.bin", empty_otadata_image()});
  }
  const PartitionEntry* app = table->factory();
  if (app == nullptr && !table->ota_apps().empty()) app = table->ota_apps()[0];
  if (app == nullptr)
    return Error(ErrorCode::invalid_argument, "write-flash: the partition table has no app slot");
  files.push_back({app->offset, "new.bin", Bytes(new_image.begin(), new_image.end())});
  return files;
}

Result<Plan> prepare(const DeviceState& before, ByteView new_image, const SweepOptions& opt) {
  Plan plan;
  plan.scenario = opt.scenario;
  plan.seed = opt.seed;
  plan.torn = opt.torn;
  plan.start = before;
  plan.start.progress.reset();
  plan.start.record = {};
  plan.start.config.app.self_test_fails.clear();  // the new image's self-test passes
  auto img = parse_image(new_image, "new image");
  if (!img) return img.error();
  plan.new_id = id_of(*img, new_image);
  plan.new_desc = img->app_desc ? fmt::format("version {}", img->app_desc->version) : "the new image";
  auto image = std::make_shared<const Bytes>(new_image.begin(), new_image.end());

  auto& bl = plan.start.config.bootloader;
  switch (opt.scenario) {
    case Scenario::ota:
      bl.rollback = bl.anti_rollback = false;
      break;
    case Scenario::ota_rollback:
    case Scenario::rollback:
    case Scenario::mark_valid:
      bl.rollback = true;
      break;
    case Scenario::lifecycle:
      bl.rollback = true;  // the confirmation rows run too
      if (!img->app_desc) {
        return Error(ErrorCode::invalid_argument,
                     "lifecycle: the new image has no app descriptor, so the server cannot offer a version");
      }
      plan.new_version = img->app_desc->version;
      break;
    case Scenario::write_flash:
    case Scenario::resume:
      break;
    case Scenario::secure_version: {
      bl.rollback = bl.anti_rollback = true;
      plan.counter_before = plan.start.efuse.secure_version;
      plan.new_secure_version = img->app_desc ? img->app_desc->secure_version : 0;
      if (plan.new_secure_version <= plan.counter_before) {
        return Error(ErrorCode::invalid_argument,
                     fmt::format("secure-version: the new image's secure_version {} is not above the eFuse "
                                 "counter {}, so nothing would be burnt (make it with --secure-version)",
                                 plan.new_secure_version, plan.counter_before));
      }
      if (plan.new_secure_version > plan.start.efuse.secure_version_bits) {
        return Error(ErrorCode::invalid_argument,
                     fmt::format("secure-version: the new image's secure_version {} does not fit the {}-bit "
                                 "eFuse field",
                                 plan.new_secure_version, plan.start.efuse.secure_version_bits));
      }
      break;
    }
  }
  // The old image: what the device boots now.
  {
    OTA32_ASSIGN(Rig probe, make_rig(plan.start, plan));
    OTA32_ASSIGN(BootResult b, probe.dev->power_on());
    if (b.app) {
      plan.has_old = true;
      OTA32_ASSIGN(plan.old_id, booted_id(probe.dev->raw_flash(), *b.app));
      plan.old_desc = describe_app(b.app->partition, b.app->desc);
    } else if (opt.scenario != Scenario::write_flash) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("the device does not boot ({}): flash an app first",
                               b.failure.empty() ? "no bootable image" : b.failure));
    } else {
      plan.old_desc = "nothing (the device does not boot)";
    }
    if (plan.has_old && plan.old_id == plan.new_id) {
      return Error(ErrorCode::invalid_argument,
                   fmt::format("the new image is the one the device already runs ({}): give another one",
                               plan.old_desc));
    }
    if (opt.scenario == Scenario::write_flash) {
      OTA32_ASSIGN(plan.files, whole_device_files(*probe.dev, *image));
    }
  }
  plan.target_id = plan.new_id;
  plan.fw.image = image;
  plan.fw.image_id = plan.new_id;
  plan.fw.install = Install::direct;
  if (opt.scenario == Scenario::write_flash) plan.fw.install = Install::none;
  if (opt.scenario == Scenario::resume) {
    plan.fw.install = Install::https;
    plan.fw.server = std::make_shared<ImageServer>(Bytes(new_image.begin(), new_image.end()));
  }
  if (opt.scenario == Scenario::lifecycle) {
    plan.fw.install = Install::agent;
    plan.fw.server =
        std::make_shared<ImageServer>(Bytes(new_image.begin(), new_image.end()), plan.new_version, kImageUrl);
  }

  if (opt.scenario == Scenario::rollback || opt.scenario == Scenario::mark_valid ||
      opt.scenario == Scenario::secure_version) {
    // Install the new image (otadata entry NEW), stopping before the reboot.
    OTA32_ASSIGN(Rig r, make_rig(plan.start, plan));
    OTA32_ASSIGN(BootResult b, r.dev->power_on());
    BootLog log;
    auto e = r.fw->run(*r.dev, b, log);
    if (!e) return Error(e.error().code(), fmt::format("installing the new image: {}", e.error().message()));
    plan.start = state_of(r);
    if (opt.scenario == Scenario::rollback) {
      plan.fw.install = Install::none;
      plan.fw.crashes = plan.new_id;
      plan.target_id = plan.old_id;
    }
  }
  if (opt.scenario == Scenario::resume) {
    // A download cut by a power loss half-way: the state the resumed download starts from.
    OTA32_ASSIGN(Rig whole, make_rig(plan.start, plan));
    Trace t;
    auto r = run_procedure(whole, plan, t, false, false);
    if (!r) return Error(r.error().code(), fmt::format("downloading the new image: {}", r.error().message()));
    OTA32_ASSIGN(Rig half, make_rig(plan.start, plan));
    Trace t2;
    std::string op;
    OTA32_ASSIGN(std::string p, cut_run(half, plan, whole.dev->flash().mutations() / 2, t2, op));
    if (!p.empty()) return Error(ErrorCode::internal, "interrupting the download: " + p);
    plan.start = state_of(half);
    if (!plan.start.progress) {
      return Error(
          ErrorCode::invalid_argument,
          fmt::format("resume: the new image ({} bytes) is too small to be resumed", new_image.size()));
    }
  }
  return plan;
}

}  // namespace

std::string_view to_string(Scenario s) {
  switch (s) {
    case Scenario::ota:
      return "ota";
    case Scenario::ota_rollback:
      return "ota-rollback";
    case Scenario::rollback:
      return "rollback";
    case Scenario::mark_valid:
      return "mark-valid";
    case Scenario::write_flash:
      return "write-flash";
    case Scenario::resume:
      return "resume";
    case Scenario::lifecycle:
      return "lifecycle";
    case Scenario::secure_version:
      return "secure-version";
  }
  return "?";
}

std::string_view describe(Scenario s) {
  switch (s) {
    case Scenario::ota:
      return "OTA install of the new image (esp_ota_begin/write/end/set_boot_partition), rollback disabled";
    case Scenario::ota_rollback:
      return "OTA install on a rollback build, first boot of the new image and its confirmation";
    case Scenario::rollback:
      return "the bootloader's rollback rewrites: the installed new image resets before confirming itself";
    case Scenario::mark_valid:
      return "first boot of the installed new image and esp_ota_mark_app_valid_cancel_rollback";
    case Scenario::write_flash:
      return "esptool write_flash of the whole device (bootloader, table, blank otadata, new image)";
    case Scenario::resume:
      return "a download interrupted by a power cut, resumed with Range after the reboot";
    case Scenario::lifecycle:
      return "the update agent's lifecycle: update check, download, install, reboot, confirm, reports";
    case Scenario::secure_version:
      return "anti-rollback: the installed new image confirms itself and burns the eFuse counter";
  }
  return "?";
}

Result<Scenario> parse_scenario(std::string_view text) {
  for (Scenario s : kScenarios) {
    if (text == to_string(s)) return s;
  }
  return Error(
      ErrorCode::invalid_argument,
      fmt::format(
          "unknown scenario '{}' (ota, ota-rollback, rollback, mark-valid, write-flash, resume, lifecycle, "
          "secure-version)",
          text));
}

std::span<const Scenario> all_scenarios() { return kScenarios; }

Result<SweepReport> run_powercut_sweep(const DeviceState& before, ByteView new_image,
                                       const SweepOptions& opt) {
  OTA32_ASSIGN(Plan plan, prepare(before, new_image, opt));
  SweepReport rep;
  rep.scenario = opt.scenario;
  rep.torn = opt.torn;
  rep.seed = opt.seed;
  rep.old_image = plan.old_desc;
  rep.new_image = plan.new_desc;
  rep.counter_before = plan.counter_before;
  rep.counter_after = plan.new_secure_version;

  // The clean run: its operations are the cut points.
  {
    OTA32_ASSIGN(Rig rig, make_rig(plan.start, plan));
    Trace t;
    auto r = run_procedure(rig, plan, t, true, plan.scenario == Scenario::write_flash);
    if (!r) return Error(r.error().code(), fmt::format("the clean run failed: {}", r.error().message()));
    if (plan.scenario == Scenario::write_flash) plan.clean_written = t.after_write_flash;
    rep.clean_ops = rig.dev->flash().mutations();
    rep.commit_op = t.commit_at.value_or(rep.clean_ops);
    OTA32_ASSIGN(std::string p, final_problem(rig, plan, t, "the clean run"));
    if (!p.empty()) return Error(ErrorCode::invalid_argument, p);
    if (plan.scenario == Scenario::resume && rig.fw->resumed_from == 0) {
      return Error(ErrorCode::internal, "the clean run did not resume the interrupted download");
    }
  }

  std::vector<uint64_t> points;
  if (opt.sample == 0 || opt.sample >= rep.clean_ops) {
    for (uint64_t c = 0; c < rep.clean_ops; ++c) points.push_back(c);
  } else if (opt.sample == 1) {
    points.push_back(rep.clean_ops - 1);
  } else {
    for (uint64_t i = 0; i < opt.sample; ++i) points.push_back(i * (rep.clean_ops - 1) / (opt.sample - 1));
  }
  SweepProgress progress{0, points.size() + opt.pairs, 0};
  auto record = [&](uint64_t cut, const CutResult& c, uint64_t& survived) {
    if (c.problem.empty()) {
      ++survived;
    } else {
      rep.failures.push_back({cut, c.second, c.op, c.problem});
      ++progress.failed;
    }
    ++progress.done;
    if (opt.on_progress) opt.on_progress(progress);
  };
  for (uint64_t c : points) {
    OTA32_ASSIGN(CutResult res, single_cut(plan, c, rep.commit_op));
    ++rep.cuts;
    if (res.unbootable) ++rep.unbootable_until_retry;
    record(c, res, rep.cuts_survived);
  }
  SplitMix64 rng(opt.seed ^ 0x5eed5eed5eedull);
  for (uint64_t k = 0; k < opt.pairs && rep.clean_ops > 0; ++k) {
    const uint64_t c = rng.below(rep.clean_ops);
    OTA32_ASSIGN(CutResult res, pair_cut(plan, c, rep.commit_op, rng));
    ++rep.pairs;
    record(c, res, rep.pairs_survived);
  }
  return rep;
}

std::string summary_line(const SweepReport& r) {
  std::string s = fmt::format("survived {} of {} cuts", r.cuts_survived, r.cuts);
  if (r.pairs > 0) s += fmt::format(" and {} of {} pairs of cuts", r.pairs_survived, r.pairs);
  return s;
}

}  // namespace ota32::sim
