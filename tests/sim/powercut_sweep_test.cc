// The power-cut sweep as tests: every layout x torn mode x scenario. The fast suite cuts at every
// operation of a 64 KiB image and at a sample of a 1 MiB one; the `slow` build of this file
// (OTA32_SWEEP_FULL) cuts at every operation of the 1 MiB image, with more pairs.
#include <gtest/gtest.h>

#include <tuple>

#include "sim/image_server.h"
#include "sim/powercut_sweep.h"
#include "sim/sweep_layouts.h"

namespace ota32::sim {
namespace {

using ota32::testing::sweep_app;
using ota32::testing::sweep_layout;
using ota32::testing::sweep_layouts;

#ifdef OTA32_SWEEP_FULL
constexpr uint32_t kImageSize = 1024 * 1024 - 4096;  // fills most of a 1M slot
constexpr uint64_t kSample = 0;                      // every cut point
constexpr uint64_t kPairs = 64;
#else
constexpr uint32_t kImageSize = 80 * 1024;  // the smallest synthetic ESP32 app is ~65 KiB
constexpr uint64_t kSample = 0;
constexpr uint64_t kPairs = 8;
#endif

// The secure-version scenario's new image carries secure_version 2 (the layouts' counter is 0).
const Bytes& new_image(uint32_t size, Scenario s = Scenario::ota) {
  static const Bytes small = sweep_app("9", 80 * 1024, 99);
  static const Bytes large = sweep_app("9", 1024 * 1024 - 4096, 99);
  static const Bytes small_sv = sweep_app("9", 80 * 1024, 99, 2);
  static const Bytes large_sv = sweep_app("9", 1024 * 1024 - 4096, 99, 2);
  if (s == Scenario::secure_version) return size == 80 * 1024 ? small_sv : large_sv;
  return size == 80 * 1024 ? small : large;
}

void expect_survived(const Result<SweepReport>& r) {
  ASSERT_TRUE(r) << r.error().message();
  for (const auto& f : r->failures) {
    ADD_FAILURE() << "cut at operation " << f.cut << (f.second ? " then " + std::to_string(*f.second) : "")
                  << " (" << f.op << "): " << f.what;
  }
  EXPECT_EQ(r->cuts_survived, r->cuts) << summary_line(*r);
  EXPECT_EQ(r->pairs_survived, r->pairs) << summary_line(*r);
}

// The fewest operations each scenario's clean run can make (a sweep over nothing would pass anything).
uint64_t minimum_ops(Scenario s, uint32_t image_size) {
  const uint64_t sectors = image_size / 4096, writes = image_size / 1024;
  switch (s) {
    case Scenario::ota:
    case Scenario::ota_rollback:
      return sectors + writes + 2;  // sequential erases, 1 KiB writes, the otadata entry
    case Scenario::rollback:
    case Scenario::mark_valid:
      return 4;  // two otadata rewrites of erase + program
    case Scenario::write_flash:
      return 8;  // four files, each at least one erase and one program
    case Scenario::resume:
      return (sectors + writes) / 4;  // at least the second half of the download
    case Scenario::lifecycle:
      return sectors + writes + 4;  // the download, the otadata entry, the confirmation
    case Scenario::secure_version:
      return 5;  // two otadata rewrites of erase + program, and the eFuse burn
  }
  return 1;
}

using Param = std::tuple<std::string, TornMode, Scenario>;

class PowerCutSweep : public ::testing::TestWithParam<Param> {};

TEST_P(PowerCutSweep, EveryCutSurvives) {
  const auto& [layout, torn, scenario] = GetParam();
  SweepOptions o;
  o.scenario = scenario;
  o.torn = torn;
  o.seed = 7;
  o.pairs = kPairs;
  o.sample = kSample;
  auto r = run_powercut_sweep(sweep_layout(layout), new_image(kImageSize, scenario), o);
  expect_survived(r);
  if (!r) return;
  EXPECT_GE(r->clean_ops, minimum_ops(scenario, kImageSize));
  EXPECT_EQ(r->cuts, r->clean_ops);
  EXPECT_EQ(r->pairs, kPairs);
  if (scenario == Scenario::write_flash && torn != TornMode::not_started) {
    // esptool's flashing is not power-safe: a cut in the bootloader's sector leaves nothing to boot.
    EXPECT_GT(r->unbootable_until_retry, 0u);
  } else if (scenario != Scenario::write_flash) {
    EXPECT_EQ(r->unbootable_until_retry, 0u);
  }
}

std::string param_name(const ::testing::TestParamInfo<Param>& info) {
  std::string n = std::get<0>(info.param) + "_" + std::string(to_string(std::get<1>(info.param))) + "_" +
                  std::string(to_string(std::get<2>(info.param)));
  for (auto& c : n) {
    if (c == '-') c = '_';
  }
  return n;
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, PowerCutSweep,
    ::testing::Combine(::testing::ValuesIn(sweep_layouts()),
                       ::testing::Values(TornMode::random, TornMode::not_started, TornMode::completed),
                       ::testing::ValuesIn(all_scenarios().begin(), all_scenarios().end())),
    param_name);

#ifndef OTA32_SWEEP_FULL
// A sample of the 1 MiB image's cut points in the fast suite (the slow build runs every one).
class PowerCutSweep1M : public ::testing::TestWithParam<Scenario> {};

TEST_P(PowerCutSweep1M, SampledCutsSurvive) {
  SweepOptions o;
  o.scenario = GetParam();
  o.seed = 3;
  o.sample = 12;
  o.pairs = 2;
  auto r = run_powercut_sweep(sweep_layout("factory"), new_image(1024 * 1024 - 4096, GetParam()), o);
  expect_survived(r);
  if (!r) return;
  EXPECT_GE(r->clean_ops, minimum_ops(GetParam(), 1024 * 1024 - 4096));
  EXPECT_EQ(r->cuts, std::min<uint64_t>(12, r->clean_ops));
}

INSTANTIATE_TEST_SUITE_P(Scenarios, PowerCutSweep1M,
                         ::testing::ValuesIn(all_scenarios().begin(), all_scenarios().end()),
                         [](const ::testing::TestParamInfo<Scenario>& i) {
                           std::string n(to_string(i.param));
                           for (auto& c : n) {
                             if (c == '-') c = '_';
                           }
                           return n;
                         });

// The counter burn: one of the cut points, after the VALID write; every cut leaves the counter at 0 or 2
// and the device booting; the retry ends at 2.
TEST(PowerCutSweepSecureVersion, TheBurnIsACutPointAndTheCounterEndsAtTheNewVersion) {
  SweepOptions o;
  o.scenario = Scenario::secure_version;
  o.pairs = 16;
  o.seed = 5;
  auto r = run_powercut_sweep(sweep_layout("two-entries"), new_image(80 * 1024, Scenario::secure_version), o);
  expect_survived(r);
  if (!r) return;
  EXPECT_EQ(r->clean_ops, 5u);  // NEW -> PENDING_VERIFY (erase, program), VALID (erase, program), the burn
  EXPECT_EQ(r->counter_before, 0u);
  EXPECT_EQ(r->counter_after, 2u);
}

TEST(PowerCutSweepSecureVersion, NeedsASecureVersionAboveTheCounter) {
  SweepOptions o;
  o.scenario = Scenario::secure_version;
  auto r = run_powercut_sweep(sweep_layout("factory"), new_image(80 * 1024), o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::invalid_argument);
  EXPECT_NE(r.error().message().find("secure_version 0 is not above the eFuse counter 0"), std::string::npos)
      << r.error().message();
}

// The checks can fail: otadata whose active entry names a slot with a broken image is reported at the
// first cut (the bootloader hides it by falling back to ota_0, the next OTA overwrites that very slot).
TEST(PowerCutSweepChecks, OtadataSelectingABrokenSlotIsReported) {
  DeviceState s = sweep_layout("two-entries");
  // Entry 1 (seq 4, newest) names ota_1, whose image loses its last byte's worth of hash.
  auto e = serialize_ota_select_entry(make_ota_select_entry(4, kOtaStateValid));
  std::fill(s.flash.begin() + 0xe000, s.flash.begin() + 0xf000, 0xFF);
  std::copy(e.begin(), e.end(), s.flash.begin() + 0xe000);
  s.flash[0x210000 + 200 * 1024 - 1] ^= 0xFF;
  SweepOptions o;
  o.scenario = Scenario::ota;
  auto r = run_powercut_sweep(s, new_image(80 * 1024), o);
  ASSERT_TRUE(r) << r.error().message();
  ASSERT_FALSE(r->ok());
  EXPECT_EQ(r->failures[0].cut, 0u);
  EXPECT_EQ(r->failures[0].what, "otadata entry 1 selects ota_1, whose image does not verify");
  EXPECT_LT(r->cuts_survived, r->cuts);
}

TEST(PowerCutSweepChecks, RefusesWhatCannotBeSwept) {
  SweepOptions o;
  auto same = run_powercut_sweep(sweep_layout("no-factory"), sweep_app("1", 200 * 1024, 11), o);
  ASSERT_FALSE(same);
  EXPECT_EQ(same.error().message(),
            "the new image is the one the device already runs (ota_0 (version 1)): give another one");
  DeviceState blank = sweep_layout("factory");
  std::fill(blank.flash.begin() + 0x10000, blank.flash.begin() + 0x20000, 0xFF);
  auto dead = run_powercut_sweep(blank, new_image(80 * 1024), o);
  ASSERT_FALSE(dead);
  EXPECT_NE(dead.error().message().find("the device does not boot"), std::string::npos);
  Bytes junk(4096, 0x42);
  auto bad = run_powercut_sweep(sweep_layout("factory"), junk, o);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::corrupt);
}

TEST(PowerCutSweepChecks, SamePairsForTheSameSeed) {
  SweepOptions o;
  o.scenario = Scenario::ota_rollback;
  o.seed = 11;
  o.pairs = 4;
  o.sample = 3;
  uint64_t calls = 0;
  o.on_progress = [&](const SweepProgress& p) {
    ++calls;
    EXPECT_EQ(p.total, 7u);
  };
  auto a = run_powercut_sweep(sweep_layout("two-entries"), new_image(80 * 1024), o);
  auto b = run_powercut_sweep(sweep_layout("two-entries"), new_image(80 * 1024), o);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(calls, 14u);
  EXPECT_EQ(a->clean_ops, b->clean_ops);
  EXPECT_EQ(summary_line(*a), "survived 3 of 3 cuts and 4 of 4 pairs of cuts");
}

TEST(ImageServer, AnswersRangeRequestsFromMemory) {
  Bytes img(5000);
  for (size_t i = 0; i < img.size(); ++i) img[i] = static_cast<uint8_t>(i);
  ImageServer server(img);
  agent::HttpOptions ho;
  ho.connect = server.connector();
  agent::HttpClient client(ho);
  agent::HttpRequest req;
  req.url = "http://image-server/new.bin";
  req.headers.push_back({"Range", "bytes=4000-"});
  auto resp = client.send(req);
  ASSERT_TRUE(resp) << resp.error().message();
  EXPECT_EQ((*resp)->status(), 206);
  EXPECT_EQ((*resp)->header("Content-Range").value_or(""), "bytes 4000-4999/5000");
  auto body = (*resp)->read_all(10000);
  ASSERT_TRUE(body);
  ASSERT_EQ(body->size(), 1000u);
  EXPECT_EQ(static_cast<uint8_t>((*body)[0]), static_cast<uint8_t>(4000));
  req.headers = {{"Range", "bytes=5000-"}};
  auto past = client.send(req);
  ASSERT_TRUE(past);
  EXPECT_EQ((*past)->status(), 416);
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(server.range_requests(), 2);
}
#endif

}  // namespace
}  // namespace ota32::sim
