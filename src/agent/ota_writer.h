// OtaWriter: esp_ota_begin / esp_ota_write / esp_ota_end / esp_ota_set_boot_partition on a Flash, with
// constant memory (the image streams through; only its first 288 bytes are held until they are checked).
// spec/otadata-and-boot.md §2, §5 and spec/https-ota-client.md §1.2.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent_log.h"
#include "core/result.h"
#include "flash/flash.h"
#include "format/app_image.h"
#include "format/chip.h"
#include "format/otadata.h"
#include "format/partition_table.h"
#include "format/secure_boot_v2_crypto.h"
#include "ota_ops/ota_ops.h"

namespace ota32::agent {

// CONFIG_SECURE_SIGNED_ON_UPDATE (a Secure Boot v2 build, or CONFIG_SECURE_SIGNED_APPS_NO_SECURE_BOOT):
// esp_ota_end and esp_ota_set_boot_partition check the Secure Boot v2 signature sector that follows the
// image (format/secure_boot_v2_crypto.h verify_app_on_update), so a badly signed image is never selected.
struct SignedAppsOptions {
  SigScheme scheme = SigScheme::rsa3072;  // the build's scheme (default_sign_scheme of the chip)
  // SECURE_BOOT_EN burnt: trust the eFuse key digests (efuse); otherwise the key of the running app's
  // first signature block.
  bool secure_boot_enabled = false;
  SecureBootEfuse efuse;
};

struct OtaWriterOptions {
  const ChipInfo* chip = nullptr;  // the chip the firmware runs on (required)
  uint32_t chip_revision = 100;    // eFuse revision, major*100 + minor (ESP32 ECO1 = v1.0 = 100)
  // The running app's esp_app_desc_t.version: an image of the same version is refused
  // (ErrorCode::already_exists) unless allow_same_version, as the advanced_https_ota example does.
  std::optional<std::string> running_version;
  bool allow_same_version = false;
  // Versions that were rolled back on this device (native_ota_example compares with
  // esp_ota_get_last_invalid_partition()): refused with ErrorCode::rollback_refused.
  std::vector<std::string> invalid_versions;
  // Anti-rollback: images whose secure_version is below the eFuse value are refused (rollback_refused).
  std::optional<uint32_t> efuse_secure_version;
  // CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE: esp_ota_begin refuses to start while the running app is still
  // PENDING_VERIFY and invalidates the inactive otadata entry; the new otadata entry is NEW (the bootloader
  // makes it PENDING_VERIFY) instead of UNDEFINED.
  bool rollback_enabled = false;
  // esp_ota_begin's erase: sequential (OTA_WITH_SEQUENTIAL_WRITES, esp_https_ota's default) or bulk
  // (image_size rounded up to 4 KiB, or the whole partition when the size is unknown).
  bool bulk_erase = false;
  std::optional<uint32_t> image_size;
  // The old segment-line format "paddr=0x%08x ..." instead of v4.3+ "paddr=%08x ..."
  // (ota_ops/log_text.h old_segment_log_format of the running firmware's ESP-IDF version).
  bool old_log_format = false;
  std::optional<SignedAppsOptions> signed_apps;  // unset: unsigned apps (no signature check)
};

// esp_ota_get_next_update_partition and the otadata calls of esp_ota_ops are ota_ops/ota_ops.h's.
using ota32::next_update_partition;

// A signature check as verify_app_in_region runs it: the scheme and the key digests trusted.
struct SignatureCheck {
  SigScheme scheme = SigScheme::rsa3072;
  SbUpdateTrust trust;
};

// What the streaming verification found.
struct VerifiedImage {
  ImageHeader header;
  std::optional<AppDescription> desc;
  // Bytes of the image: segments, padding, checksum, appended hash; with a signature check also the 0xFF
  // padding and the 4 KiB signature sector (esp_image_verify extends the length by it, and the file served
  // is that long).
  uint32_t size = 0;
  Sha256Digest sha256{};  // of those `size` bytes (the value `ota32 image info` and the server show)
};

// esp_image_verify of the app in `region` without loading it into memory: header, chip id, segment
// headers and lengths, checksum, appended SHA-256. The image must lie within the first `limit` bytes
// (what was written; corrupt "truncated" otherwise). One "segment N: ..." line per segment goes to `log`
// (tag esp_image), as esp_ota_end prints them. Errors: corrupt / unsupported with the reason; flash errors.
// With `sig`, a signed-apps build's esp_image_verify: the appended SHA-256 only decides the last log line,
// the Secure Boot v2 signature decides (bad_signature when it does not verify; the sector must fit in the
// partition and lie within `limit`).
Result<VerifiedImage> verify_app_in_region(const Region& region, const ChipInfo& chip, uint32_t limit,
                                           AgentLog& log, bool old_log_format,
                                           const SignatureCheck* sig = nullptr);

// Forwards to another log and keeps what passed (lines and time spent, in order) to replay it later.
class RecordedLog final : public EspLog {
 public:
  explicit RecordedLog(EspLog& out) : out_(&out) {}
  void log(char level, std::string_view tag, std::string text) override;
  void spend_bytes(uint64_t bytes) override;
  void replay(EspLog& to) const;

 private:
  struct Entry {
    char level;  // 0: time spent
    std::string tag, text;
    uint64_t bytes;
  };
  EspLog* out_;
  std::vector<Entry> entries_;
};

class OtaWriter {
 public:
  // esp_ota_begin. `target` must be an OTA app slot other than `running`. With rollback_enabled, a running
  // OTA app still in PENDING_VERIFY refuses the update (rollback_refused, "Running app has not confirmed
  // state (ESP_OTA_IMG_PENDING_VERIFY)" = ESP_ERR_OTA_ROLLBACK_INVALID_STATE): the app must confirm itself
  // first; after the erase the inactive otadata entry is invalidated (invalidate_inactive_ota_data_slot) so
  // that it can no longer point at the slot being overwritten. Errors: invalid_argument (not an OTA slot,
  // the running partition, no chip), rollback_refused, out_of_range (bulk erase larger than the slot), flash
  // errors.
  static Result<std::unique_ptr<OtaWriter>> begin(Flash& flash, const PartitionTable& table,
                                                  const PartitionEntry& target, const PartitionEntry* running,
                                                  OtaWriterOptions options, AgentLog* log = nullptr);
  // Continues an update interrupted by a reboot: the first `written` bytes of `target` hold the start of
  // the image (written by an earlier OtaWriter). The sector holding byte `written` may be torn, so writing
  // restarts at the start of that sector: call resume_offset() to know where the data must continue.
  // Like esp_ota_resume, it neither checks the running app's state nor touches otadata (begin did).
  static Result<std::unique_ptr<OtaWriter>> resume(Flash& flash, const PartitionTable& table,
                                                   const PartitionEntry& target,
                                                   const PartitionEntry* running, OtaWriterOptions options,
                                                   uint32_t written, AgentLog* log = nullptr);

  // esp_ota_write: appends data. The first byte must be 0xE9 (corrupt "OTA image has invalid magic
  // byte"); once 288 bytes arrived the chip id, chip revision and app descriptor are checked (unsupported
  // for another chip or revision, corrupt without app descriptor, already_exists for the running version,
  // rollback_refused for a lower secure_version) before anything is programmed. Writing past the slot is
  // out_of_range. Nothing is programmed by a call that fails.
  Result<void> write(ByteView data);

  // esp_ota_end: verifies the whole image in the slot (segment lines logged). corrupt when the image is
  // incomplete ("truncated") or fails a check.
  Result<VerifiedImage> end();

  // esp_ota_set_boot_partition: verifies again (segment lines logged a second time, as in the seed), then
  // writes the new otadata entry in the sector that does not hold the active one. The second verification
  // is end()'s verdict with its log replayed, not a second hash of the slot: nothing was written since.
  Result<void> set_boot_partition();

  uint32_t written() const { return written_; }
  uint32_t resume_offset() const { return written_; }
  const PartitionEntry& target() const { return target_; }
  // Known once the first 288 bytes were accepted.
  const std::optional<ImageHeader>& header() const { return header_; }
  const std::optional<AppDescription>& app_desc() const { return desc_; }

 private:
  OtaWriter(Flash& flash, const PartitionTable& table, const PartitionEntry& target, OtaWriterOptions options,
            AgentLog* log);
  static Result<std::unique_ptr<OtaWriter>> open(Flash& flash, const PartitionTable& table,
                                                 const PartitionEntry& target, const PartitionEntry* running,
                                                 OtaWriterOptions options, AgentLog* log);
  Result<void> check_header(ByteView first);
  // The signature check of opt_.signed_apps (the running app's key read once), nullptr without one.
  Result<const SignatureCheck*> signature_check();
  Result<void> program(ByteView data);

  Flash& flash_;
  const PartitionTable& table_;
  PartitionEntry target_;
  Region region_;
  OtaWriterOptions opt_;
  NullLog null_log_;
  AgentLog* log_;
  uint32_t written_ = 0;
  uint32_t erased_end_ = 0;  // sequential erase: [0, erased_end_) has been erased
  static constexpr size_t kCheckBytes = kAppDescImageOffset + kAppDescSize;  // 288
  uint8_t head_[kCheckBytes];
  size_t head_len_ = 0;
  bool header_checked_ = false;
  std::optional<ImageHeader> header_;
  std::optional<AppDescription> desc_;
  std::optional<VerifiedImage> verified_;
  std::optional<RecordedLog> verify_log_;  // end()'s verification lines, replayed by set_boot_partition
  std::optional<PartitionEntry> running_;
  std::optional<SignatureCheck> sig_;
};

}  // namespace ota32::agent
