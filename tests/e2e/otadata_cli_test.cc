// ota32 otadata: the real binary, from ota_data_initial.bin through esp_ota_set_boot_partition switches.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "core/file_io.h"
#include "e2e/run_process.h"
#include "format/otadata.h"
#include "test_support.h"

namespace ota32::testing {
namespace {

using ::testing::HasSubstr;

constexpr std::string_view kTwoOta =
    "nvs,data,nvs,,0x4000\notadata,data,ota,,0x2000\nphy_init,data,phy,,0x1000\nfactory,app,factory,,1M\n"
    "ota_0,app,ota_0,,1M\nota_1,app,ota_1,,1M\n";

struct Fixture {
  TempDir tmp;
  std::string table = (tmp / "t.csv").string();
  std::string ota = (tmp / "ota.bin").string();
  Fixture(std::string_view csv = kTwoOta) { EXPECT_TRUE(write_file_atomic(table, csv)); }
  nlohmann::json read(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"otadata", "read", ota, "--partitions", table, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = run_ota32(args);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.exit_code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json();
  }
};

TEST(OtadataCli, EmptyIsOtaDataInitial) {
  Fixture f;
  auto r = run_ota32({"otadata", "write", f.ota, "--empty"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto b = read_file(f.ota);
  ASSERT_TRUE(b);
  EXPECT_EQ(*b, Bytes(8192, 0xFF));
  auto j = f.read();
  EXPECT_EQ(j["boot"], "factory");
  EXPECT_EQ(j["log"], "Defaulting to factory image");
}

TEST(OtadataCli, SwitchSequenceLikeTheDevice) {
  Fixture f;
  ASSERT_EQ(run_ota32({"otadata", "write", f.ota, "--empty"}).exit_code, 0);
  struct Step {
    const char* slot;
    const char* boot;
    uint32_t seq0, seq1;
  } steps[] = {
      {"0", "ota_0", 1, 0xFFFFFFFF}, {"1", "ota_1", 1, 2}, {"0", "ota_0", 3, 2}, {"0", "ota_0", 3, 3}};
  for (const auto& s : steps) {
    auto r = run_ota32({"otadata", "switch", f.ota, "--slot", s.slot, "--partitions", f.table});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, HasSubstr(std::string("the bootloader will boot ") + s.boot));
    auto j = f.read();
    EXPECT_EQ(j["boot"], s.boot);
    EXPECT_EQ(j["entries"][0]["seq"], s.seq0);
    EXPECT_EQ(j["entries"][1]["seq"], s.seq1);
  }
  auto fac = run_ota32({"otadata", "switch", f.ota, "--name", "factory", "--partitions", f.table});
  ASSERT_EQ(fac.exit_code, 0) << fac.err;
  EXPECT_EQ(*read_file(f.ota), Bytes(8192, 0xFF));
}

TEST(OtadataCli, WriteSlotStateSeq) {
  Fixture f;
  auto r = run_ota32({"otadata", "write", f.ota, "--slot", "1", "--state", "pending_verify"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto b = read_file(f.ota);
  ASSERT_TRUE(b);
  ASSERT_EQ(b->size(), 8192u);
  auto d = parse_otadata(*b);
  EXPECT_EQ(d->entries[0], make_ota_select_entry(2, 1));
  EXPECT_EQ(f.read()["boot"], "ota_1");
  auto rb = f.read({"--rollback"});  // a second boot of an unconfirmed app: aborted, back to factory
  EXPECT_EQ(rb["boot"], "factory");
  EXPECT_EQ(rb["writes"].size(), 1u);

  ASSERT_EQ(
      run_ota32({"otadata", "write", f.ota, "--slot", "0", "--seq", "5", "--partitions", f.table}).exit_code,
      0);
  EXPECT_EQ(f.read()["boot"], "ota_0");
  auto mismatch =
      run_ota32({"otadata", "write", f.ota, "--slot", "1", "--seq", "5", "--partitions", f.table});
  EXPECT_EQ(mismatch.exit_code, 1);
  EXPECT_THAT(mismatch.err, HasSubstr("--seq 5 selects slot 0"));
}

TEST(OtadataCli, BadCrcIsIgnored) {
  Fixture f;
  Otadata d{{make_ota_select_entry(1, 0xFFFFFFFF), make_ota_select_entry(2, 0xFFFFFFFF)}};
  d.entries[1].crc ^= 0x100;
  ASSERT_TRUE(write_file_atomic(f.ota, otadata_image(d)));
  auto j = f.read();
  EXPECT_EQ(j["boot"], "ota_0");
  EXPECT_EQ(j["entries"][1]["crc_ok"], false);
  auto text = run_ota32({"otadata", "read", f.ota, "--partitions", f.table});
  EXPECT_THAT(text.out, HasSubstr("BAD (expected 0x55f63774): ignored"));
  EXPECT_THAT(text.out, HasSubstr("boot: ota_0 at 0x110000"));
}

TEST(OtadataCli, NoFactoryTriesOta0) {
  Fixture f("nvs,data,nvs,,0x4000\notadata,data,ota,,0x2000\nota_0,app,ota_0,,1M\nota_1,app,ota_1,,1M\n");
  ASSERT_EQ(run_ota32({"otadata", "write", f.ota, "--empty"}).exit_code, 0);
  auto j = f.read();
  EXPECT_EQ(j["boot"], "ota_0");
  EXPECT_EQ(j["log"], "No factory image, trying OTA 0");
  EXPECT_EQ(j["initial_contents"], true);
}

TEST(OtadataCli, OtatoolOptionKeepsState) {
  Fixture f;
  Otadata d{{make_ota_select_entry(1, 0xFFFFFFFF), make_ota_select_entry(4, 3)}};
  ASSERT_TRUE(write_file_atomic(f.ota, otadata_image(d)));
  auto out = (f.tmp / "o.bin").string();
  auto r =
      run_ota32({"otadata", "switch", f.ota, "--slot", "0", "--partitions", f.table, "--otatool", "-o", out});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto after = parse_otadata(*read_file(out));
  EXPECT_EQ(after->entries[0].ota_seq, 5u);
  EXPECT_EQ(after->entries[1], d.entries[1]);
  EXPECT_EQ(*read_file(f.ota), otadata_image(d));  // -o leaves the input alone
}

TEST(OtadataCli, FlashImage) {
  Fixture f;
  Bytes flash(0x20000, 0xFF);
  Bytes e = serialize_ota_select_entry(make_ota_select_entry(2, 0xFFFFFFFF));
  std::copy(e.begin(), e.end(), flash.begin() + 0xd000);
  auto img = (f.tmp / "flash.bin").string();
  ASSERT_TRUE(write_file_atomic(img, flash));
  auto r = run_ota32({"otadata", "read", img, "--flash-image", "--partitions", f.table, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["boot"], "ota_1");
  ASSERT_EQ(run_ota32({"otadata", "switch", img, "--flash-image", "--slot", "0", "--partitions", f.table})
                .exit_code,
            0);
  auto after = read_file(img);
  EXPECT_EQ(after->size(), flash.size());
  EXPECT_EQ((*after)[0xe000], 3);  // entry 1 at otadata + 0x1000 got seq 3
}

TEST(OtadataCli, ErrorsExit1AndWriteNothing) {
  Fixture f;
  ASSERT_TRUE(write_file_atomic(f.ota, Bytes(100, 0xFF)));
  auto r = run_ota32({"otadata", "read", f.ota, "--partitions", f.table});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("otadata is 100 bytes; it needs two 4 KiB sectors"));
  ASSERT_TRUE(write_file_atomic(f.ota, Bytes(8192, 0xFF)));
  auto out = (f.tmp / "o.bin").string();
  auto s = run_ota32({"otadata", "switch", f.ota, "--slot", "2", "--partitions", f.table, "-o", out});
  EXPECT_EQ(s.exit_code, 1);
  EXPECT_THAT(s.err, HasSubstr("slot 2: the table has 2 OTA app slot(s)"));
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(run_ota32({"otadata", "write", out, "--state", "bogus", "--slot", "0"}).exit_code, 1);
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(run_ota32({"otadata", "read", f.ota}).exit_code, 2);  // --partitions is required
}

TEST(OtadataCli, TableWithoutOtadata) {
  Fixture f("nvs,data,nvs,,0x4000\nfactory,app,factory,,1M\nota_0,app,ota_0,,1M\n");
  ASSERT_TRUE(
      write_file_atomic(f.ota, otadata_image(Otadata{{make_ota_select_entry(1, 0xFFFFFFFF),
                                                      make_ota_select_entry(0xFFFFFFFF, 0xFFFFFFFF)}})));
  auto j = f.read();
  EXPECT_EQ(j["boot"], "factory");  // otadata is not read at all
  EXPECT_THAT(j["reason"].get<std::string>(), HasSubstr("has no otadata partition"));
  auto s = run_ota32({"otadata", "switch", f.ota, "--slot", "0", "--partitions", f.table});
  EXPECT_EQ(s.exit_code, 1);
  EXPECT_THAT(s.err, HasSubstr("ESP_ERR_NOT_FOUND"));
}

TEST(OtadataCli, HelpOnEveryCommand) {
  for (const char* c : {"read", "write", "switch"}) {
    auto r = run_ota32({"otadata", c, "--help"});
    EXPECT_EQ(r.exit_code, 0) << c;
  }
  EXPECT_THAT(run_ota32({"otadata", "switch", "--help"}).out, HasSubstr("esp_ota_set_boot_partition"));
}

}  // namespace
}  // namespace ota32::testing
