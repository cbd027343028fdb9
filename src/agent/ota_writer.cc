#include "agent/ota_writer.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>

#include "core/numbers.h"
#include "format/otadata.h"
#include "ota_ops/log_text.h"

namespace ota32::agent {
namespace {

constexpr const char* kTag = "esp_ota_ops";

uint32_t round_up_sector(uint64_t v) {
  return static_cast<uint32_t>((v + kFlashSectorSize - 1) / kFlashSectorSize * kFlashSectorSize);
}

// Reads region bytes [off, off + out.size()) refusing anything at or past `limit` (what was written).
Result<void> read_within(const Region& r, uint32_t limit, uint64_t off, std::span<uint8_t> out,
                         const char* what) {
  if (off + out.size() > limit) {
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: image truncated: the {} at offset {:#x} lies past the {} bytes received",
                             r.name(), what, off, limit));
  }
  return r.read(static_cast<uint32_t>(off), out);
}

}  // namespace

void RecordedLog::log(char level, std::string_view tag, std::string text) {
  entries_.push_back({level, std::string(tag), text, 0});
  out_->log(level, tag, std::move(text));
}

void RecordedLog::spend_bytes(uint64_t bytes) {
  entries_.push_back({0, {}, {}, bytes});
  out_->spend_bytes(bytes);
}

void RecordedLog::replay(EspLog& to) const {
  for (const auto& e : entries_) {
    if (e.level == 0) {
      to.spend_bytes(e.bytes);
    } else {
      to.log(e.level, e.tag, e.text);
    }
  }
}

Result<VerifiedImage> verify_app_in_region(const Region& region, const ChipInfo& chip, uint32_t limit,
                                           AgentLog& log, bool old_log_format, const SignatureCheck* sig) {
  auto fail = [&](std::string why) {
    log.error(kTag, "New image failed verification");
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: new image failed verification: {}", region.name(), why));
  };
  VerifiedImage out;
  uint8_t hdr[kImageHeaderSize];
  if (auto r = read_within(region, limit, 0, hdr, "image header"); !r) return fail(r.error().message());
  auto header = parse_image_header(ByteView(hdr, sizeof hdr));
  if (!header) return fail(header.error().message());
  out.header = *header;
  if (header->chip_id != chip.chip_id) {
    return fail(fmt::format("image is for chip id {}, this chip ({}) has id {}", header->chip_id, chip.name,
                            chip.chip_id));
  }
  if (header->segment_count == 0 || header->segment_count > kMaxSegments) {
    return fail(fmt::format("{} segments (1..{} allowed)", header->segment_count, kMaxSegments));
  }
  Sha256 sha;    // what the appended hash covers: [0, checksum]
  Sha256 whole;  // the file as served: that plus the appended hash (and the signature padding and sector)
  Sha256 signed_part;  // with `sig`: what the signature covers, everything before the sector
  auto hash = [&](ByteView b) {
    sha.update(b);
    whole.update(b);
    if (sig) signed_part.update(b);
  };
  hash(ByteView(hdr, sizeof hdr));
  uint8_t checksum = kChecksumSeed;
  uint64_t pos = kImageHeaderSize;
  uint8_t buf[1024];
  for (int i = 0; i < header->segment_count; ++i) {
    uint8_t sh[kSegmentHeaderSize];
    if (auto r = read_within(region, limit, pos, sh, "segment header"); !r) return fail(r.error().message());
    hash(ByteView(sh, sizeof sh));
    uint32_t vaddr = load_le32(sh), len = load_le32(sh + 4);
    pos += kSegmentHeaderSize;
    if (len > kMaxSegmentLength || len % 4 != 0) {
      return fail(
          fmt::format("segment {} at offset {:#x}: bad length {:#x}", i, pos - kSegmentHeaderSize, len));
    }
    if (pos + len > limit) {
      return fail(fmt::format("image truncated: segment {} ends at offset {:#x}, past the {} bytes received",
                              i, pos + len, limit));
    }
    if (i == 0) {
      uint8_t desc_bytes[kAppDescSize];
      if (len >= kAppDescSize && region.read(static_cast<uint32_t>(pos), desc_bytes)) {
        if (auto d = parse_app_desc(ByteView(desc_bytes, sizeof desc_bytes))) out.desc = *d;
      }
    }
    // App side (esp_ota_end): nothing is loaded, so RAM segments end with an empty word (spec §6.3).
    log.info("esp_image", segment_log_text(i, region.offset() + static_cast<uint32_t>(pos), vaddr, len,
                                           segment_is_mapped(chip, vaddr) ? "map" : "", old_log_format));
    for (uint32_t done = 0; done < len;) {
      uint32_t n = std::min<uint32_t>(sizeof buf, len - done);
      OTA32_TRY(region.read(static_cast<uint32_t>(pos + done), std::span<uint8_t>(buf, n)));
      for (uint32_t k = 0; k < n; ++k) checksum ^= buf[k];
      hash(ByteView(buf, n));
      done += n;
    }
    log.spend_bytes(len);
    pos += len;
  }
  // Zero padding so that the checksum byte ends a 16-byte block.
  uint64_t checksum_at = pos + (15 - pos % 16);
  uint8_t tail[16];
  auto tail_span = std::span<uint8_t>(tail, static_cast<size_t>(checksum_at - pos + 1));
  if (auto r = read_within(region, limit, pos, tail_span, "checksum"); !r) return fail(r.error().message());
  hash(tail_span);
  if (tail_span.back() != checksum) {
    return fail(fmt::format("checksum {:#04x} stored at offset {:#x}, {:#04x} computed", tail_span.back(),
                            checksum_at, checksum));
  }
  out.size = static_cast<uint32_t>(checksum_at + 1);
  Sha256Digest computed = sha.finish();
  bool hash_ok = true;
  if (header->hash_appended == 1) {
    uint8_t stored[32];
    if (auto r = read_within(region, limit, out.size, stored, "appended SHA-256"); !r) {
      return fail(r.error().message());
    }
    hash_ok = std::memcmp(stored, computed.data(), 32) == 0;
    // A signed-apps build does not check the simple hash: the signature covers it.
    if (!hash_ok && sig == nullptr) {
      return fail(fmt::format("SHA-256 at offset {:#x} does not match the image", out.size));
    }
    out.size += 32;
    whole.update(ByteView(stored, sizeof stored));
    if (sig) signed_part.update(ByteView(stored, sizeof stored));
  }
  if (sig == nullptr) {
    out.sha256 = whole.finish();
    return out;
  }
  // The signature sector at the next 4 KiB boundary; the digest covers everything before it.
  const uint64_t sector_at = round_up_sector(out.size);
  if (sector_at + kSigSectorSize > region.size()) {
    log.error("esp_image", fmt::format("Image length {} doesn't fit in partition length {}",
                                       sector_at + kSigSectorSize, region.size()));
    return fail(
        fmt::format("the image with its signature sector ({} bytes) does not fit in the {}-byte "
                    "partition",
                    sector_at + kSigSectorSize, region.size()));
  }
  for (uint64_t at = out.size; at < sector_at;) {
    uint32_t n = static_cast<uint32_t>(std::min<uint64_t>(sizeof buf, sector_at - at));
    std::span<uint8_t> pad(buf, n);
    if (auto r = read_within(region, limit, at, pad, "padding before the signature sector"); !r)
      return fail(r.error().message());
    whole.update(pad);
    signed_part.update(pad);
    at += n;
  }
  Bytes sector(kSigSectorSize);
  if (auto r = read_within(region, limit, sector_at, sector, "signature sector"); !r)
    return fail(r.error().message());
  const Sha256Digest digest = signed_part.finish();
  whole.update(sector);
  auto check = verify_app_on_update(digest, sector, sig->scheme, sig->trust, hash_ok);
  for (auto& l : check.lines) log.log(l.level, l.tag, std::move(l.text));
  if (!check.verified) {
    log.error(kTag, "New image failed verification");
    return Error(ErrorCode::bad_signature,
                 fmt::format("{}: new image failed verification: Secure Boot v2 signature: {}", region.name(),
                             check.why));
  }
  out.size = static_cast<uint32_t>(sector_at + kSigSectorSize);
  out.sha256 = whole.finish();
  return out;
}

OtaWriter::OtaWriter(Flash& flash, const PartitionTable& table, const PartitionEntry& target,
                     OtaWriterOptions options, AgentLog* log)
    : flash_(flash),
      table_(table),
      target_(target),
      region_(flash, target.offset, target.size, target.name),
      opt_(std::move(options)),
      log_(log != nullptr ? log : &null_log_) {}

Result<std::unique_ptr<OtaWriter>> OtaWriter::open(Flash& flash, const PartitionTable& table,
                                                   const PartitionEntry& target,
                                                   const PartitionEntry* running, OtaWriterOptions options,
                                                   AgentLog* log) {
  if (options.chip == nullptr) return Error(ErrorCode::invalid_argument, "OtaWriter: no chip given");
  if (!is_ota_slot(target)) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: not an OTA app partition (type {:#04x} subtype {:#04x})", target.name,
                             target.type, target.subtype));
  }
  if (running != nullptr && running->offset == target.offset) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: is the running partition (ESP_ERR_OTA_PARTITION_CONFLICT)", target.name));
  }
  if (uint64_t{target.offset} + target.size > flash.size()) {
    return Error(ErrorCode::out_of_range,
                 fmt::format("{}: partition at {:#x} ({:#x} bytes) is past the end of "
                             "the {:#x}-byte flash",
                             target.name, target.offset, target.size, flash.size()));
  }
  std::unique_ptr<OtaWriter> w(new OtaWriter(flash, table, target, std::move(options), log));
  if (running != nullptr) w->running_ = *running;
  return w;
}

Result<std::unique_ptr<OtaWriter>> OtaWriter::begin(Flash& flash, const PartitionTable& table,
                                                    const PartitionEntry& target,
                                                    const PartitionEntry* running, OtaWriterOptions options,
                                                    AgentLog* log) {
  OTA32_ASSIGN(auto w, open(flash, table, target, running, std::move(options), log));
  if (w->opt_.rollback_enabled && running != nullptr) {
    // An update must not replace the only image known to work while the running one is unconfirmed.
    auto state = get_state_partition(flash, table, *running);
    if (!state && !is_esp_ota_answer(state.error())) return state.error();
    if (state && *state == kOtaStatePendingVerify) {
      w->log_->error(kTag, "Running app has not confirmed state (ESP_OTA_IMG_PENDING_VERIFY)");
      return Error(ErrorCode::rollback_refused,
                   fmt::format("{}: the running app has not confirmed its state (still PENDING_VERIFY): "
                               "call esp_ota_mark_app_valid_cancel_rollback() before an update "
                               "(ESP_ERR_OTA_ROLLBACK_INVALID_STATE)",
                               running->name));
    }
  }
  if (w->opt_.bulk_erase) {
    uint32_t len = target.size;
    if (w->opt_.image_size && *w->opt_.image_size != 0 && *w->opt_.image_size != 0xFFFFFFFF) {
      uint64_t want = round_up_sector(*w->opt_.image_size);
      if (want > target.size) {
        return Error(ErrorCode::out_of_range,
                     fmt::format("image of {} bytes does not fit in {} ({} bytes at {:#x})",
                                 *w->opt_.image_size, target.name, target.size, target.offset));
      }
      len = static_cast<uint32_t>(want);
    }
    OTA32_TRY(w->region_.erase(0, len));
    w->log_->spend_bytes(len / 16);
    w->erased_end_ = len;
  }
  if (w->opt_.rollback_enabled) {
    // ESP-IDF ignores the result (ESP_FAIL just means "nothing to invalidate"); a power cut still stops us.
    auto r = invalidate_inactive_ota_data_slot(flash, table, running);
    if (!r && r.error().code() == ErrorCode::power_lost) return r.error();
  }
  return w;
}

Result<std::unique_ptr<OtaWriter>> OtaWriter::resume(Flash& flash, const PartitionTable& table,
                                                     const PartitionEntry& target,
                                                     const PartitionEntry* running, OtaWriterOptions options,
                                                     uint32_t written, AgentLog* log) {
  options.bulk_erase = false;
  OTA32_ASSIGN(auto w, open(flash, table, target, running, std::move(options), log));
  uint32_t from = written / kFlashSectorSize * kFlashSectorSize;
  if (from < kCheckBytes || from > target.size) {
    return Error(
        ErrorCode::invalid_argument,
        fmt::format("{}: cannot resume at byte {}: the header must be in flash and the offset inside "
                    "the partition",
                    target.name, written));
  }
  // The image header and descriptor were checked before they were programmed; read them back.
  OTA32_TRY(w->region_.read(0, std::span<uint8_t>(w->head_, kCheckBytes)));
  w->head_len_ = kCheckBytes;
  OTA32_TRY(w->check_header(ByteView(w->head_, kCheckBytes)));
  w->header_checked_ = true;
  w->written_ = from;
  w->erased_end_ = from;  // the sector at `from` may be torn: it is erased again before it is written
  return w;
}

Result<void> OtaWriter::check_header(ByteView first) {
  OTA32_ASSIGN(ImageHeader h, parse_image_header(first.first(kImageHeaderSize)));
  const ChipInfo& chip = *opt_.chip;
  if (h.chip_id != chip.chip_id) {
    const ChipInfo* other = find_chip_by_id(h.chip_id);
    return Error(
        ErrorCode::unsupported,
        fmt::format("image is for {} (chip id {}), this device is {} (chip id {}): Mismatch chip id, "
                    "expected {}, found {}",
                    other ? std::string(other->name) : std::string("an unknown chip"), h.chip_id, chip.name,
                    chip.chip_id, chip.chip_id, h.chip_id));
  }
  if (h.min_chip_rev_full > opt_.chip_revision) {
    return Error(ErrorCode::unsupported,
                 fmt::format("chip revision check failed. Required >= {}, found {}.",
                             rev_text(h.min_chip_rev_full), rev_text(opt_.chip_revision)));
  }
  if (h.max_chip_rev_full != 0 && h.max_chip_rev_full != 0xFFFF && opt_.chip_revision > h.max_chip_rev_full) {
    return Error(ErrorCode::unsupported,
                 fmt::format("chip revision check failed. Required <= {}, found {}.",
                             rev_text(h.max_chip_rev_full), rev_text(opt_.chip_revision)));
  }
  auto desc = parse_app_desc(first.subspan(kAppDescImageOffset, kAppDescSize));
  if (!desc) {
    return Error(ErrorCode::corrupt,
                 fmt::format("no app descriptor at image offset {:#x} (Incorrect app descriptor magic)",
                             kAppDescImageOffset));
  }
  if (opt_.running_version && !opt_.allow_same_version && desc->version == *opt_.running_version) {
    return Error(
        ErrorCode::already_exists,
        fmt::format("the image is version {}, the version already running: Current running version is "
                    "the same as a new. We will not continue the update.",
                    desc->version));
  }
  if (std::find(opt_.invalid_versions.begin(), opt_.invalid_versions.end(), desc->version) !=
      opt_.invalid_versions.end()) {
    std::string text = fmt::format(
        "New version is the same as invalid version. Previously, there was an attempt to "
        "launch the firmware with {} version, but it failed. The firmware has been rolled back "
        "to the previous version.",
        desc->version);
    log_->warn("native_ota_example", text);
    return Error(ErrorCode::rollback_refused, text);
  }
  if (opt_.efuse_secure_version && desc->secure_version < *opt_.efuse_secure_version) {
    // advanced_https_ota_example's validate_image_header, on the first bytes: nothing written yet.
    std::string text = fmt::format("New firmware security version is less than eFuse programmed, {} < {}",
                                   desc->secure_version, *opt_.efuse_secure_version);
    log_->warn("advanced_https_ota_example", text);
    log_->error("advanced_https_ota_example", "image header verification failed");
    return Error(ErrorCode::rollback_refused, text);
  }
  header_ = h;
  desc_ = *desc;
  return {};
}

Result<void> OtaWriter::program(ByteView data) {
  uint64_t end = uint64_t{written_} + data.size();
  if (end > target_.size) {
    return Error(
        ErrorCode::out_of_range,
        fmt::format("image larger than the {} partition ({} = {:#x} bytes at {:#x}): {} bytes received",
                    target_.name, format_size(target_.size), target_.size, target_.offset, end));
  }
  if (end > erased_end_) {  // OTA_WITH_SEQUENTIAL_WRITES: erase the sectors this write reaches
    uint32_t to = std::min<uint32_t>(round_up_sector(end), target_.size);
    OTA32_TRY(region_.erase(erased_end_, to - erased_end_));
    erased_end_ = to;
  }
  verified_.reset();  // the slot changed: a later set_boot_partition must verify again
  OTA32_TRY(region_.program(written_, data));
  written_ = static_cast<uint32_t>(end);
  log_->spend_bytes(data.size());
  return {};
}

Result<void> OtaWriter::write(ByteView data) {
  if (data.empty()) return {};
  if (!header_checked_) {
    if (head_len_ == 0 && data[0] != kImageMagic) {
      log_->error(kTag,
                  fmt::format("OTA image has invalid magic byte (expected 0xE9, saw 0x{:02x})", data[0]));
      return Error(
          ErrorCode::corrupt,
          fmt::format("not a firmware image: invalid magic byte (expected 0xE9, saw 0x{:02x})", data[0]));
    }
    size_t take = std::min(kCheckBytes - head_len_, data.size());
    std::memcpy(head_ + head_len_, data.data(), take);
    head_len_ += take;
    data = data.subspan(take);
    if (head_len_ < kCheckBytes) return {};
    if (auto r = check_header(ByteView(head_, kCheckBytes)); !r) {
      head_len_ -= take;  // the failing call leaves the writer as it was
      return r.error();
    }
    header_checked_ = true;
    OTA32_TRY(program(ByteView(head_, kCheckBytes)));
  }
  if (data.empty()) return {};
  return program(data);
}

Result<VerifiedImage> OtaWriter::end() {
  if (written_ == 0 && head_len_ == 0) {
    return Error(ErrorCode::invalid_argument, fmt::format("{}: nothing was written", target_.name));
  }
  if (!header_checked_) {
    log_->error(kTag, "New image failed verification");
    return Error(ErrorCode::corrupt,
                 fmt::format("{}: image truncated: only {} bytes received", target_.name, head_len_));
  }
  OTA32_ASSIGN(const SignatureCheck* sig, signature_check());
  RecordedLog rec(*log_);
  OTA32_ASSIGN(VerifiedImage v,
               verify_app_in_region(region_, *opt_.chip, written_, rec, opt_.old_log_format, sig));
  verified_ = v;
  verify_log_ = std::move(rec);
  return v;
}

Result<const SignatureCheck*> OtaWriter::signature_check() {
  if (!opt_.signed_apps) return nullptr;
  if (!sig_) {
    SignatureCheck c{opt_.signed_apps->scheme, {}};
    c.trust.secure_boot_enabled = opt_.signed_apps->secure_boot_enabled;
    c.trust.efuse = opt_.signed_apps->efuse;
    if (!c.trust.secure_boot_enabled && running_) {
      // esp_secure_boot_get_signature_blocks_for_running_app: the sector after the running image (its
      // metadata read silently); none readable = no trusted key.
      Region running(flash_, running_->offset, running_->size, running_->name);
      NullLog quiet;
      auto img = verify_app_in_region(running, *opt_.chip, running_->size, quiet, false);
      if (!img && img.error().code() == ErrorCode::power_lost) return img.error();
      if (img && round_up_sector(img->size) + kSigSectorSize <= running_->size) {
        c.trust.running_sector.resize(kSigSectorSize);
        OTA32_TRY(running.read(round_up_sector(img->size), c.trust.running_sector));
      }
    }
    sig_ = std::move(c);
  }
  return &*sig_;
}

Result<void> OtaWriter::set_boot_partition() {
  if (!verified_) {
    return Error(ErrorCode::invalid_argument,
                 fmt::format("{}: esp_ota_end has not verified an image", target_.name));
  }
  // esp_ota_set_boot_partition verifies the image again (the seed shows the segment lines twice). Nothing
  // was programmed through this writer since end() verified these bytes (program() drops verified_), and
  // the slot is this writer's until the switch (esp_ota_begin's handle), so the second pass would read the
  // same bytes and reach the same verdict: its lines and its time are replayed instead of hashed again.
  verify_log_->replay(*log_);
  return ota32::set_boot_partition(flash_, table_, target_, opt_.rollback_enabled);
}

}  // namespace ota32::agent
