// Partition tables: bytes derived by hand from the spec (partition-table.md §2, §9, §10), the digests of
// every table ESP-IDF ships, round trips, one test per error of gen_esp32part.py, and the shared reference
// files.
#include "format/partition_table.h"
#include "core/splitmix.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>

#include "core/file_io.h"
#include "core/hash.h"
#include "test_support.h"

namespace ota32 {
namespace {

using ::testing::HasSubstr;

CsvOptions no_env() {
  CsvOptions o;
  o.getenv = [](const std::string&) -> std::optional<std::string> { return std::nullopt; };
  return o;
}

PartitionTable csv(std::string_view text, const CsvOptions& opt = no_env()) {
  auto t = parse_partition_csv(text, opt, "t.csv");
  EXPECT_TRUE(t.has_value()) << (t ? "" : t.error().message());
  return t ? *t : PartitionTable{};
}

// Parse, verify (CSV order as the tool runs them), serialise.
Result<Bytes> build(std::string_view text, const PartitionToolOptions& opt = {}) {
  PartitionToolOptions o = opt;
  if (!o.csv.getenv) o.csv.getenv = no_env().getenv;
  OTA32_ASSIGN(auto t, load_partition_table(as_bytes(text), o, "t.csv"));
  return partition_table_to_binary_checked(t.table, o.md5);
}

std::string error_of(std::string_view text, const PartitionToolOptions& opt = {}) {
  auto r = build(text, opt);
  if (r) return "(no error)";
  return r.error().message();
}

// One 32-byte row written out by hand from the §2.1 layout.
Bytes row(uint8_t type, uint8_t subtype, uint32_t offset, uint32_t size, std::string_view name,
          uint32_t flags = 0) {
  Bytes r = {0xAA, 0x50, type, subtype};
  for (uint32_t v : {offset, size})
    for (int i = 0; i < 4; ++i) r.push_back(static_cast<uint8_t>(v >> (8 * i)));
  for (size_t i = 0; i < 16; ++i) r.push_back(i < name.size() ? static_cast<uint8_t>(name[i]) : 0);
  for (int i = 0; i < 4; ++i) r.push_back(static_cast<uint8_t>(flags >> (8 * i)));
  return r;
}

Bytes with_md5_and_padding(Bytes rows, std::string_view md5_hex) {
  Bytes out = rows;
  out.insert(out.end(), {0xEB, 0xEB});
  out.insert(out.end(), 14, 0xFF);
  auto d = from_hex(md5_hex);
  out.insert(out.end(), d->begin(), d->end());
  out.resize(0xC00, 0xFF);
  return out;
}

Bytes concat(std::initializer_list<Bytes> rows) {
  Bytes r;
  for (const auto& x : rows) r.insert(r.end(), x.begin(), x.end());
  return r;
}

constexpr std::string_view kTwoOta =
    "# Name,   Type, SubType, Offset,   Size, Flags\n"
    "nvs,      data, nvs,     ,        0x4000,\n"
    "otadata,  data, ota,     ,        0x2000,\n"
    "phy_init, data, phy,     ,        0x1000,\n"
    "factory,  app,  factory, ,        1M,\n"
    "ota_0,    app,  ota_0,   ,        1M,\n"
    "ota_1,    app,  ota_1,   ,        1M,\n";

// §10's worked example, row by row: the seed's table.
TEST(PartitionTable, TwoOtaMatchesTheSpecBytes) {
  Bytes expected = with_md5_and_padding(
      concat({row(1, 2, 0x9000, 0x4000, "nvs"), row(1, 0, 0xd000, 0x2000, "otadata"),
              row(1, 1, 0xf000, 0x1000, "phy_init"), row(0, 0, 0x10000, 0x100000, "factory"),
              row(0, 0x10, 0x110000, 0x100000, "ota_0"), row(0, 0x11, 0x210000, 0x100000, "ota_1")}),
      "bf25822c0fa6d8641bd930251e06b4c4");
  auto bin = build(kTwoOta);
  ASSERT_TRUE(bin) << bin.error().message();
  EXPECT_EQ(to_hex(*bin), to_hex(expected));
  EXPECT_EQ(to_hex(md5(*bin)), "9f94bf1e89f37d80f4310d5af19a6e59");
  EXPECT_EQ(to_hex(sha256(*bin)), "d1c0e9d02fa9d26cd2e1984e7b5dd20157204f501ddc83ce82229e5f3175ee8b");
}

TEST(PartitionTable, SeedTableWithExplicitOffsetsIsTheSameTable) {
  auto a = build(kTwoOta);
  auto b = build(
      "nvs,data,nvs,0x9000,0x4000\notadata,data,ota,0xd000,0x2000\nphy_init,data,phy,0xf000,0x1000\n"
      "factory,app,factory,0x10000,1M\nota_0,app,ota_0,0x110000,1M\nota_1,app,ota_1,0x210000,1M\n");
  ASSERT_TRUE(a && b);
  EXPECT_EQ(*a, *b);
}

TEST(PartitionTable, SingleappMatchesTheSpecBytes) {
  Bytes expected =
      with_md5_and_padding(concat({row(1, 2, 0x9000, 0x6000, "nvs"), row(1, 1, 0xf000, 0x1000, "phy_init"),
                                   row(0, 0, 0x10000, 0x100000, "factory")}),
                           "f4ad4f4538564b5d7435b62c75b69524");
  auto bin =
      build("nvs, data, nvs, , 0x6000,\nphy_init, data, phy, , 0x1000,\nfactory, app, factory, , 1M,\n");
  ASSERT_TRUE(bin);
  EXPECT_EQ(to_hex(*bin), to_hex(expected));
}

// Every table ESP-IDF v5.5.5 ships (§9.4): MD5 row and whole-file MD5.
struct Shipped {
  const char* name;
  const char* csv;
  const char* md5_row;
  const char* file_md5;
};
const Shipped kShipped[] = {
    {"singleapp", "nvs,data,nvs,,0x6000,\nphy_init,data,phy,,0x1000,\nfactory,app,factory,,1M,\n",
     "f4ad4f4538564b5d7435b62c75b69524", "5d61d196adc3dba01928f264eb169be7"},
    {"singleapp_coredump",
     "nvs,data,nvs,,0x6000,\nphy_init,data,phy,,0x1000,\nfactory,app,factory,,1M,\ncoredump, data, "
     "coredump,,64K\n",
     "9179c59a53262c5dd4c549db5b3eaa73", "563ee3cc9c4fd2d4e40c6570d1b1e374"},
    {"singleapp_encr_nvs",
     "nvs,data,nvs,,0x6000,\nphy_init,data,phy,,0x1000,\nfactory,app,factory,,1M,\n"
     "nvs_key, data, nvs_keys, , 0x1000, encrypted\n",
     "55a092271e356dc8c78efd3ed859bada", "2fb34864127f9a197f21dee18ec9dfd9"},
    {"singleapp_large", "nvs,data,nvs,,0x6000,\nphy_init,data,phy,,0x1000,\nfactory,app,factory,,1500K,\n",
     "0423598fe5287e6762f955efc9f5f382", "0df2c2c6687bac883c725683085a576b"},
    {"singleapp_large_coredump",
     "nvs,data,nvs,,0x6000,\nphy_init,data,phy,,0x1000,\nfactory,app,factory,,1500K,\ncoredump,data,coredump,"
     ",64K\n",
     "a87ec54720b432e771999a7e88f6e3c6", "e459a8441dc0b7868ee53e50804cfdbb"},
    {"singleapp_large_encr_nvs",
     "nvs,data,nvs,,0x6000,\nphy_init,data,phy,,0x1000,\nfactory,app,factory,,1500K,\n"
     "nvs_key,data,nvs_keys,,0x1000,encrypted\n",
     "eb90b1ed411b4c6c8436cad9c4a4d3dc", "97300746abe53e279f1a373c9022955c"},
    {"singleapp_tee",
     "tee,app,tee_0,,192K\nsecure_storage,data,nvs,,64K\nfactory,app,factory,,1536K\nnvs,data,nvs,,24K\n"
     "phy_init,data,phy,,4K\n",
     "c710b670b8d7ae40c363fcdb18d29875", "ebaa4647baab6355b5a894b4c6974038"},
    {"two_ota", kTwoOta.data(), "bf25822c0fa6d8641bd930251e06b4c4", "9f94bf1e89f37d80f4310d5af19a6e59"},
    {"two_ota_coredump",
     "nvs,data,nvs,,0x4000,\notadata,data,ota,,0x2000,\nphy_init,data,phy,,0x1000,\nfactory, 0, 0, , 1M\n"
     "coredump, data, coredump,,64K\nota_0, 0, ota_0, , 1M\nota_1, 0, ota_1, , 1M\n",
     "fbe521772f97e9bf34513e42f6167757", "edc1193f303b43c30741a2b8e99a15d6"},
    {"two_ota_encr_nvs",
     "nvs,data,nvs,,0x4000,\notadata,data,ota,,0x2000,\nphy_init,data,phy,,0x1000,\nfactory,app,factory,,1M,"
     "\n"
     "ota_0,app,ota_0,,1M,\nota_1,app,ota_1,,1M,\nnvs_key,data,nvs_keys,,0x1000,encrypted\n",
     "76d509eedec6b9850fadba48faf3a90c", "bcf4037758281cb593a08d3fe9389252"},
    {"two_ota_large",
     "nvs,data,nvs,,0x6000,\notadata,data,ota,,0x2000,\nphy_init,data,phy,,0x1000,\nota_0,app,ota_0,,1700K,\n"
     "ota_1,app,ota_1,,1700K,\n",
     "37f38b32a34f7412f158930062441178", "f6dec7bfda2f3dee587657b4e8863c55"},
    {"two_ota_tee",
     "tee_0,app,tee_0,,192K\ntee_1,app,tee_1,,192K\ntee_otadata,data,tee_ota,,8K\nsecure_storage,data,nvs,,"
     "56K\n"
     "ota_0,app,ota_0,,1536K\nota_1,app,ota_1,,1536K\notadata,data,ota,,8K\nnvs,data,nvs,,24K\nphy_init,data,"
     "phy,,4K\n",
     "83a0f5e22cf20803aa11000dc1e301f7", "ce42735c55c6439e4b519825cc7e18e6"},
};

TEST(PartitionTable, EveryShippedTableHasTheToolsDigests) {
  for (const auto& s : kShipped) {
    auto bin = build(s.csv);
    ASSERT_TRUE(bin) << s.name << ": " << bin.error().message();
    ASSERT_EQ(bin->size(), 3072u) << s.name;
    size_t n = csv(s.csv).entries.size();
    EXPECT_EQ(to_hex(ByteView(*bin).subspan(n * 32 + 16, 16)), s.md5_row) << s.name;
    EXPECT_EQ(to_hex(md5(*bin)), s.file_md5) << s.name;
  }
}

TEST(PartitionTable, RoundTripsBinaryToCsvAndBack) {
  for (const auto& s : kShipped) {
    auto bin = build(s.csv);
    ASSERT_TRUE(bin);
    auto t = parse_partition_binary(*bin, {}, "t.bin");
    ASSERT_TRUE(t) << t.error().message();
    std::string text = partition_table_to_csv(*t);
    auto again = build(text);
    ASSERT_TRUE(again) << s.name << ": " << again.error().message();
    EXPECT_EQ(*again, *bin) << s.name;
  }
}

TEST(PartitionTable, Bin2csvTextOfTwoOta) {
  auto t = csv(kTwoOta);
  EXPECT_EQ(partition_table_to_csv(t),
            "# ESP-IDF Partition Table\n# Name, Type, SubType, Offset, Size, Flags\n"
            "nvs,data,nvs,0x9000,16K,\notadata,data,ota,0xd000,8K,\nphy_init,data,phy,0xf000,4K,\n"
            "factory,app,factory,0x10000,1M,\nota_0,app,ota_0,0x110000,1M,\nota_1,app,ota_1,0x210000,1M,\n");
}

TEST(PartitionTable, Lookups) {
  auto t = csv(kTwoOta);
  ASSERT_NE(t.factory(), nullptr);
  EXPECT_EQ(t.factory()->offset, 0x10000u);
  ASSERT_NE(t.otadata(), nullptr);
  EXPECT_EQ(t.otadata()->offset, 0xd000u);
  auto ota = t.ota_apps();
  ASSERT_EQ(ota.size(), 2u);
  EXPECT_EQ(ota[1]->name, "ota_1");
  EXPECT_EQ(t.find("phy_init")->subtype, 1);
  EXPECT_EQ(t.find("nope"), nullptr);
  // Slots count only up to the first missing subtype.
  auto gap = csv("ota_0,app,ota_0,,1M\nota_2,app,ota_2,,1M\n");
  EXPECT_EQ(gap.ota_apps().size(), 1u);
}

TEST(PartitionTable, NamesAndSizes) {
  EXPECT_EQ(partition_type_name(0), "app");
  EXPECT_EQ(partition_type_name(3), "partition_table");
  EXPECT_EQ(partition_type_name(0x40), "64");
  EXPECT_EQ(partition_subtype_name(0, 0x1f), "ota_15");
  EXPECT_EQ(partition_subtype_name(1, 0x99), "153");
  EXPECT_EQ(partition_subtype_name(0, 5), "5");
  EXPECT_EQ(partition_subtype_name(1, 0x40, {{1, "mine", 0x40}}), "mine");
  EXPECT_EQ(partition_size_text(0x4000), "16K");
  EXPECT_EQ(partition_size_text(0x1A9000), "1700K");
  EXPECT_EQ(partition_size_text(0x100400), "1025K");
  EXPECT_EQ(partition_size_text(0x1234), "0x1234");
  EXPECT_EQ(partition_size_text(0), "0M");
  EXPECT_EQ(partition_usage_name(1, 2), "WiFi data");
  EXPECT_EQ(partition_usage_name(0, 0x11), "OTA app");
}

// ---- CSV syntax ----

TEST(PartitionCsv, IntegerSyntax) {
  auto t =
      csv("a,data,fat,0x9000,16_384\n"
          "b,data,fat,,0x10k\n"  // hex with suffix: 0x4000 * 1024? no: 0x10 * 1024 = 0x4000
          "c,data,fat,,1kk\n"    // 1 MiB
          "d,data,fat,,0b1000000000000\n"
          "e,data,fat,,0o10000\n"
          "f,data,fat,, 4 K\n"
          "g,0x01,0x81,,00\n");
  ASSERT_EQ(t.entries.size(), 7u);
  EXPECT_EQ(t.entries[0].size, 16384u);
  EXPECT_EQ(t.entries[1].size, 0x4000u);
  EXPECT_EQ(t.entries[2].size, 0x100000u);
  EXPECT_EQ(t.entries[3].size, 0x1000u);
  EXPECT_EQ(t.entries[4].size, 0x1000u);
  EXPECT_EQ(t.entries[5].size, 0x1000u);
  EXPECT_EQ(t.entries[6].size, 0u);
  EXPECT_EQ(t.entries[6].subtype, 0x81);
}

TEST(PartitionCsv, KeywordsAreCaseInsensitiveAndSubtypeFollowsNumericType) {
  auto t = csv("n,DATA,NVS,,0x4000\no,0x01,nvs,,0x4000\n");
  EXPECT_EQ(t.entries[0].type, 1);
  EXPECT_EQ(t.entries[0].subtype, 2);
  EXPECT_EQ(t.entries[1].subtype, 2);
}

TEST(PartitionCsv, AutomaticOffsetsAlignPerType) {
  auto t = csv(
      "nvs,data,nvs,,0x6000\notadata,data,ota,,0x2000\nphy_init,data,phy,,0x1000\nota_0,app,ota_0,,1700K\n");
  EXPECT_EQ(t.entries[1].offset, 0xf000u);
  EXPECT_EQ(t.entries[2].offset, 0x11000u);
  EXPECT_EQ(t.entries[3].offset, 0x20000u);  // pushed up to the next 64 KiB boundary
}

TEST(PartitionCsv, NegativeSizeMeansEndAt) {
  auto t = csv("factory,app,factory,0x10000,-0x200000\n");
  EXPECT_EQ(t.entries[0].size, 0x1F0000u);
}

TEST(PartitionCsv, EmptySubtypeOfDataIsUndefined) {
  EXPECT_EQ(csv("x,data,,,0x1000\n").entries[0].subtype, 0x06);
}

TEST(PartitionCsv, CommentsBlankLinesCrlfAndBom) {
  auto t = parse_partition_csv("\xEF\xBB\xBF# c\r\n\r\n  # indented comment\r\nnvs,data,nvs,,0x4000,\r\n",
                               no_env(), "t.csv");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->entries.size(), 1u);
  EXPECT_EQ(t->entries[0].line, 4);
}

TEST(PartitionCsv, FlagsAndNameTruncation) {
  auto t = csv("a_name_longer_than_16,data,fat,,4K,encrypted::readonly:\n");
  EXPECT_TRUE(t.entries[0].encrypted);
  EXPECT_TRUE(t.entries[0].readonly);
  Bytes bin = partition_table_to_binary(t);
  EXPECT_EQ(std::string(as_chars(ByteView(bin).subspan(12, 16))), "a_name_longer_th");
  EXPECT_EQ(bin[28], 3);
}

TEST(PartitionCsv, EnvironmentVariablesExpand) {
  CsvOptions o;
  o.getenv = [](const std::string& n) -> std::optional<std::string> {
    if (n == "SZ") return "0x4000";
    return std::nullopt;
  };
  auto t = parse_partition_csv("nvs,data,nvs,,${SZ}\n", o, "t.csv");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->entries[0].size, 0x4000u);
  auto bad = parse_partition_csv("$UNSET,data,nvs,,0x4000\n", o, "t.csv");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message(), "t.csv line 1: unknown variable 'UNSET'");
}

TEST(PartitionCsv, BootloaderAndPartitionTableRows) {
  CsvOptions o = no_env();
  o.primary_bootloader_offset = 0x1000;
  auto t = parse_partition_csv(
      "bootloader,bootloader,primary,,\npt,partition_table,primary,N/A,junk\nnvs,data,nvs,,0x4000\n", o,
      "t.csv");
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->entries[0].offset, 0x1000u);
  EXPECT_EQ(t->entries[0].size, 0x7000u);
  EXPECT_EQ(t->entries[1].offset, 0x8000u);
  EXPECT_EQ(t->entries[1].size, 0x1000u);
  EXPECT_EQ(t->entries[2].offset, 0x9000u);
  EXPECT_TRUE(verify_partition_table(*t, {}));
}

TEST(PartitionCsv, ExtraSubtypes) {
  auto extra = parse_extra_subtypes({"data, mine, 40"});
  ASSERT_TRUE(extra);
  CsvOptions o = no_env();
  o.extra_subtypes = *extra;
  auto t = parse_partition_csv("m,data,mine,,4K\n", o, "t.csv");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->entries[0].subtype, 0x40);
  EXPECT_THAT(partition_table_to_csv(*t, *extra), ::testing::EndsWith("\nm,data,mine,0x9000,4K,\n"));
  EXPECT_FALSE(parse_extra_subtypes({"data,dup,82"}));
  EXPECT_FALSE(parse_extra_subtypes({"nosuch,x,40"}));
}

TEST(PartitionCsv, WarningsForKeywordNames) {
  std::vector<std::string> w;
  PartitionToolOptions o;
  o.warn = [&](const std::string& s) { w.push_back(s); };
  ASSERT_TRUE(build("app,data,fat,,4K\nnvs,data,fat,,4K\nota,data,ota,,8K\n", o));
  ASSERT_EQ(w.size(), 2u);
  EXPECT_THAT(w[0], HasSubstr("Partition has name 'app' which is a partition type, but does not match this "
                              "partition's type (0x1). Mistake in partition table?"));
  EXPECT_THAT(w[1], HasSubstr("name 'nvs' which is a partition subtype, but this partition has non-matching "
                              "type 0x1 and subtype 0x81"));
}

TEST(PartitionCsv, LongNameAndSizeZeroAreWarningsNotErrors) {
  // gen_esp32part.py accepts both (truncation to 16 bytes, size 0): ota32 must produce the same bytes.
  std::vector<std::string> w;
  PartitionToolOptions o;
  o.warn = [&](const std::string& s) { w.push_back(s); };
  auto bin = build("a_name_longer_than_16,data,fat,,4K\nempty,app,factory,,0\n", o);
  ASSERT_TRUE(bin) << bin.error().message();
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[0],
            "t.csv line 1: WARNING: Partition name 'a_name_longer_than_16' is longer than 16 bytes; the "
            "binary keeps 'a_name_longer_th'");
  EXPECT_EQ(w[1], "t.csv line 2: WARNING: Partition empty has size 0");
  auto t = parse_partition_binary(*bin, {}, "t.bin");
  ASSERT_TRUE(t);
  EXPECT_EQ(partition_entry_to_csv(t->entries[1]), "empty,app,factory,0x10000,0M,");
}

// ---- one test per error ----

struct ErrorCase {
  const char* what;
  const char* csv;
  const char* expected;  // the exact message, "t.csv ..." included
};
const ErrorCase kErrors[] = {
    {"type empty", "a,,fat,,4K\n", "t.csv line 1, type: Field 'type' can't be left empty."},
    {"no comma at all", "justaname\n", "t.csv line 1, type: Field 'type' can't be left empty."},
    {"unknown type", "a,bank,fat,,4K\n",
     "t.csv line 1, type: Value 'ban' is not valid. Known keywords: bootloader, partition_table, app, data"},
    {"app subtype empty", "\n\na,app,,,1M\n",
     "t.csv line 3, subtype: App partition cannot have an empty subtype"},
    {"unknown app subtype", "a,app,ota_16,,1M\n",
     "t.csv line 1, subtype: Value 'ota_16' is not valid. Known keywords: factory, test, ota_0, ota_1, "
     "ota_2, "
     "ota_3, ota_4, ota_5, ota_6, ota_7, ota_8, ota_9, ota_10, ota_11, ota_12, ota_13, ota_14, ota_15, "
     "tee_0, "
     "tee_1"},
    {"unknown data subtype", "a,data,Foo,,4K\n",
     "t.csv line 1, subtype: Value 'Foo' is not valid. Known keywords: ota, phy, nvs, coredump, nvs_keys, "
     "efuse, "
     "undefined, esphttpd, fat, spiffs, littlefs, tee_ota"},
    {"custom type needs numeric subtype", "a,0x40,fat,,4K\n",
     "t.csv line 1, subtype: Invalid field value fat"},
    {"bad offset", "a,data,fat,0x6000 # x,4K\n", "t.csv line 1, offset: Invalid field value 0x6000 # x"},
    {"leading zero", "a,data,fat,,016384\n", "t.csv line 1, size: Invalid field value 016384"},
    {"bad size suffix", "a,data,fat,,1.5M\n", "t.csv line 1, size: Invalid field value 1.5"},
    {"size empty", "a,data,fat,0x9000,\n", "t.csv line 1, size: Size field can't be empty"},
    {"unknown flag", "a,data,fat,,4K,encrypted: readonly\n",
     "t.csv line 1, flags: CSV flag column contains unknown flag ' readonly'"},
    {"primary bootloader without option", "b,bootloader,primary,,\n",
     "t.csv line 1, offset: Primary bootloader offset is not defined. Please use "
     "--primary-bootloader-offset"},
    {"recovery bootloader without option", "b,bootloader,recovery,,\n",
     "t.csv line 1, offset: Recovery bootloader offset is not defined. Please use "
     "--recovery-bootloader-offset"},
    {"first partition overlaps the table", "nvs,data,nvs,0x8000,0x4000\n",
     "t.csv line 1, offset: Partitions overlap. Partition sets offset 0x8000. But partition table occupies "
     "the "
     "whole sector 0x8000. Use a free offset 0x9000 or higher."},
    {"later partition overlaps",
     "nvs,data,nvs,0x9000,0x6000\nfactory,app,factory,0x10000,1M\nota_0,app,ota_0,0x100000,1M\n",
     "t.csv line 3, offset: Partitions overlap. Partition sets offset 0x100000. Previous partition ends "
     "0x110000"},
    {"duplicate of the first row", "nvs,data,nvs,0x9000,0x6000\nnvs,data,nvs,0x9000,0x6000\n",
     "t.csv line 2, offset: Partitions overlap. Partition sets offset 0x9000. But partition table occupies "
     "the "
     "whole sector 0x8000. Use a free offset 0xf000 or higher."},
    {"offset misaligned (app)", "nvs,data,nvs,0x9000,0x6000\nfactory,app,factory,0x11000,1M\n",
     "t.csv line 2, offset: Partition factory invalid: Offset 0x11000 is not aligned to 0x10000"},
    {"offset misaligned (data)", "nvs,data,nvs,0x9800,0x6000\n",
     "t.csv line 1, offset: Partition nvs invalid: Offset 0x9800 is not aligned to 0x1000"},
    {"app size misaligned", "factory,app,factory,,0x30800\n",
     "t.csv line 1, size: Partition factory invalid: Size 0x30800 is not aligned to 0x1000"},
    {"read-only otadata", "otadata,data,ota,,0x2000,readonly\n",
     "t.csv line 1, flags: Partition otadata invalid: 'otadata' partition of type 1 and subtype 0 is always "
     "read-write and cannot be read-only"},
    {"small read-write nvs", "a,data,nvs,0x9000,0x2000\n",
     "t.csv line 1, size: Partition a invalid: 'a' partition of type 1 and subtype 2 of this size (0x2000) "
     "must be "
     "flagged as 'readonly' (the size of read/write NVS has to be at least 0x3000)"},
    {"duplicate names", "nvs,data,nvs,,0x6000\nfactory,app,factory,,1M\nfactory,app,ota_0,,1M\n",
     "t.csv line 3, name: Partition names must be unique (line 2: factory,app,factory,0x10000,1M,; line 3: "
     "factory,app,ota_0,0x110000,1M,)"},
    {"two otadata", "a,data,ota,,0x2000\nb,data,ota,,0x2000\n",
     "t.csv line 2, subtype: Found multiple otadata partitions. Only one partition can be defined with "
     "type=\"data\"(1) and subtype=\"ota\"(0). (line 1: a,data,ota,0x9000,8K,; line 2: "
     "b,data,ota,0xb000,8K,)"},
    {"otadata not two sectors", "otadata,data,ota,,0x3000\n",
     "t.csv line 1, size: otadata partition must have size = 0x2000 (otadata,data,ota,0x9000,12K,)"},
    {"TEE otadata size", "a,data,tee_ota,,0x3000\n",
     "t.csv line 1, size: TEE otadata partition must have size = 0x2000 (a,data,tee_ota,0x9000,12K,)"},
    {"value too large for the binary", "a,data,fat,,0x100000000\n",
     "t.csv line 1, size: value 0x100000000 does not fit the binary field (0..0xffffffff)"},
    {"negative size below offset", "a,data,fat,0x9000,-0x8000\n",
     "t.csv line 1, size: value 0x-1000 does not fit the binary field (0..0xffffffff)"},
};

TEST(PartitionCsvErrors, EachCheckHasItsMessage) {
  for (const auto& c : kErrors) EXPECT_EQ(error_of(c.csv), c.expected) << c.what;
}

TEST(PartitionCsvErrors, BelowTableOnlyForBinaries) {
  // A binary whose entry sits below the table: the placement step cannot catch it, verify does.
  PartitionTable t;
  t.entries.push_back({"nvs", 1, 2, 0x8000, 0x4000});
  auto bin = partition_table_to_binary(t);
  auto parsed = parse_partition_binary(bin, {}, "t.bin");
  ASSERT_TRUE(parsed);
  auto r = verify_partition_table(*parsed, {}, "t.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "t.bin entry 0, offset: Partition offset 0x8000 is below 0x9000");
}

TEST(PartitionCsvErrors, OverlapInBinary) {
  PartitionTable t;
  t.entries.push_back({"a", 1, 0x81, 0x10000, 0x2000});
  t.entries.push_back({"b", 1, 0x81, 0x9000, 0x8000});
  auto r = verify_partition_table(t, {}, "t.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(), "t.bin entry 0, offset: Partition at 0x10000 overlaps 0x9000-0x10fff");
}

TEST(PartitionCsvErrors, SecureV1AppSize) {
  PartitionToolOptions o;
  o.secure = SecureBootVersion::kV1;
  EXPECT_EQ(error_of("factory,app,factory,,0x31000\n", o),
            "t.csv line 1, size: Partition factory invalid: Size 0x31000 is not aligned to 0x10000");
  o.secure = SecureBootVersion::kV2;
  EXPECT_EQ(error_of("factory,app,factory,,0x31000\n", o), "(no error)");
}

TEST(PartitionCsvErrors, PastTheEndOfFlash) {
  PartitionToolOptions o;
  o.flash_size = 2 * 1024 * 1024;
  EXPECT_EQ(
      error_of(kTwoOta, o),
      "t.csv line 7, size: Partitions tables occupies 3.1MB of flash (3211264 bytes) which does not fit in "
      "configured flash size 2MB. Change the flash size in menuconfig under the 'Serial Flasher Config' "
      "menu.");
  o.flash_size = 4 * 1024 * 1024;
  EXPECT_EQ(error_of(kTwoOta, o), "(no error)");
}

TEST(PartitionCsvErrors, TooManyEntries) {
  std::string text;
  for (int i = 0; i < 95; ++i) text += "p" + std::to_string(i) + ",data,fat,,4K\n";
  EXPECT_EQ(error_of(text), "95 partitions: Binary partition table length (3072) longer than max");
  PartitionToolOptions no_md5;
  no_md5.md5 = false;
  EXPECT_EQ(error_of(text, no_md5), "(no error)");  // 95 fit without the MD5 row
  text += "p95,data,fat,,4K\n";
  EXPECT_EQ(error_of(text, no_md5), "96 partitions: Binary partition table length (3072) longer than max");
}

TEST(PartitionCsvErrors, NoVerifySkipsTableChecks) {
  PartitionToolOptions o;
  o.verify = false;
  EXPECT_EQ(error_of("factory,app,factory,0x11000,1M\n", o), "(no error)");
}

// ---- binary reading ----

TEST(PartitionBinary, Md5Mismatch) {
  Bytes bin = *build(kTwoOta);
  bin[0xd0] ^= 1;
  auto r = parse_partition_binary(bin, {}, "t.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(
      r.error().message(),
      "t.bin entry 6 at 0xc0, md5: MD5 checksums don't match! (computed: 0xbf25822c0fa6d8641bd930251e06b4c4, "
      "parsed: 0xb'be25822c0fa6d8641bd930251e06b4c4')");
  BinaryOptions no_md5;
  no_md5.check_md5 = false;
  auto r2 = parse_partition_binary(bin, no_md5, "t.bin");
  ASSERT_FALSE(r2);
  // The tool decodes the label before checking the magic, so an MD5 row read as an entry fails on its label
  // (FF bytes: a UnicodeDecodeError traceback in the tool), not on its EB EB magic.
  EXPECT_THAT(r2.error().message(), HasSubstr("t.bin entry 6 at 0xc0, label: label b'\\xff\\xff\\xff\\xff"));
}

TEST(PartitionBinary, BadMagicLengthAndMissingEnd) {
  Bytes bin = *build(kTwoOta);
  bin[0x20] = 0xAB;
  auto r = parse_partition_binary(bin, {}, "t.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message(),
            "t.bin entry 1 at 0x20, magic: Invalid magic bytes (b'\\xabP') for partition definition");

  Bytes odd(bin.begin(), bin.begin() + 40);
  odd[0x20] = 0xAA;
  auto r2 = parse_partition_binary(odd, {}, "t.bin");
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().message(),
            "t.bin entry 1 at 0x20, length: Partition table length must be a multiple of 32 bytes");

  Bytes noend(bin.begin(), bin.begin() + 64);
  noend[0x20] = 0xAA;
  auto r3 = parse_partition_binary(noend, {}, "t.bin");
  ASSERT_FALSE(r3);
  EXPECT_EQ(r3.error().message(), "t.bin end: Partition table is missing an end-of-table marker");
}

TEST(PartitionBinary, UnknownFlagsWarnAndAreDropped) {
  Bytes bin = concat({row(1, 0x81, 0x9000, 0x1000, "x", 0xFF)});
  bin.resize(64, 0xFF);
  std::vector<std::string> w;
  BinaryOptions o;
  o.warn = [&](const std::string& s) { w.push_back(s); };
  auto t = parse_partition_binary(bin, o, "t.bin");
  ASSERT_TRUE(t);
  EXPECT_TRUE(t->entries[0].encrypted && t->entries[0].readonly);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(
      w[0],
      "t.bin entry 0: WARNING: Partition definition had unknown flag(s) 0x000000fc. Newer binary format?");
}

TEST(PartitionBinary, InvalidUtf8Label) {
  Bytes bin = concat({row(1, 0x81, 0x9000, 0x1000, "\xff\xfe")});
  bin.resize(64, 0xFF);
  auto t = parse_partition_binary(bin, {}, "t.bin");
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().message(), "t.bin entry 0 at 0x0, label: label b'\\xff\\xfe' is not valid UTF-8");
}

TEST(PartitionBinary, WithoutMd5Row) {
  PartitionTable t = csv(kTwoOta);
  Bytes bin = partition_table_to_binary(t, false);
  EXPECT_EQ(bin[0xc0], 0xFF);
  auto back = parse_partition_binary(bin, {}, "t.bin");
  ASSERT_TRUE(back);
  EXPECT_EQ(back->entries.size(), 6u);
}

// ---- as the chip reads it (esp_partition_table_verify) ----

TEST(PartitionDevice, ReadsWhatTheToolWrites) {
  Bytes bin = *build(kTwoOta);
  auto t = parse_partition_table_as_device(bin, 4 * 1024 * 1024);
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->entries.size(), 6u);
  EXPECT_EQ(t->entries[5].offset, 0x210000u);
  EXPECT_TRUE(parse_partition_table_as_device(partition_table_to_binary(csv(kTwoOta), false), 4 << 20));
}

TEST(PartitionDevice, ErrorsAreTheLogLines) {
  Bytes bin = *build(kTwoOta);
  auto small = parse_partition_table_as_device(bin, 2 * 1024 * 1024);
  ASSERT_FALSE(small);
  EXPECT_EQ(small.error().message(),
            "partition 4 invalid - offset 0x110000 size 0x100000 exceeds flash chip size 0x200000");
  Bytes md5 = bin;
  md5[0xd0] ^= 1;
  EXPECT_EQ(parse_partition_table_as_device(md5, 4 << 20).error().message(), "Incorrect MD5 checksum");
  Bytes two = bin;
  std::copy(bin.begin() + 0xc0, bin.begin() + 0xe0, two.begin() + 0xe0);
  EXPECT_EQ(parse_partition_table_as_device(two, 4 << 20).error().message(),
            "Only one MD5 checksum is allowed");
  Bytes magic = bin;
  magic[0x40] = 0xAB;
  EXPECT_EQ(parse_partition_table_as_device(magic, 4 << 20).error().message(),
            "partition 2 invalid magic number 0x50ab");
  EXPECT_EQ(parse_partition_table_as_device(Bytes(0xC00, 0xFF), 4 << 20).error().message(),
            "partition 0 invalid magic number 0xffff");
  Bytes full(0xC00, 0);
  for (size_t i = 0; i < 96; ++i) {
    Bytes r = row(1, 0x81, 0x9000, 0x1000, "x");
    std::copy(r.begin(), r.end(), full.begin() + static_cast<std::ptrdiff_t>(i * 32));
  }
  EXPECT_EQ(parse_partition_table_as_device(full, 4 << 20).error().message(),
            "partition table has no terminating entry, not valid");
}

// ---- robustness: mutated inputs never crash (bounded; run under ASan/UBSan in build-asan) ----

// Each mutated input is either refused with one line naming what is wrong, or accepted; an accepted CSV
// builds a table that reads back (bin2csv, csv2bin) to the same bytes, and an accepted binary re-serialises
// to a table that loads again with the same entries.
TEST(PartitionRobustness, MutatedCsvAndBinaryInputs) {
  SplitMix64 rng(12345);
  const std::string alphabet =
      "0123456789abcdefxkKmM,:#$ _-\t\r\n\x0b\xc2\xa0"
      "appdatanvsotaencrypted";
  Bytes good = *build(kTwoOta);
  auto one_line = [](const Error& e) {
    const std::string& m = e.message();
    return !m.empty() && m.find('\n') == std::string::npos;
  };
  int accepted_csv = 0, refused_csv = 0, accepted_bin = 0, refused_bin = 0;
  for (int round = 0; round < 3000; ++round) {
    std::string text(kTwoOta);
    Bytes bin = good;
    int edits = 1 + static_cast<int>(rng.below(8));
    for (int k = 0; k < edits; ++k) {
      size_t at = rng.below(text.size());
      switch (rng.below(3)) {
        case 0:
          text[at] = alphabet[rng.below(alphabet.size())];
          break;
        case 1:
          text.erase(at, 1 + rng.below(4));
          break;
        default:
          text.insert(at, 1, alphabet[rng.below(alphabet.size())]);
          break;
      }
      bin[rng.below(std::min<size_t>(bin.size(), 0x100))] = rng.byte();
    }
    if (rng.below(4) == 0) bin.resize(rng.below(bin.size()));
    PartitionToolOptions o;
    o.flash_size = 4 << 20;
    if (auto b = build(text, o)) {
      ++accepted_csv;
      auto again = load_partition_table(*b, o, "m.bin");
      ASSERT_TRUE(again) << "round " << round
                         << ": csv2bin output does not load: " << again.error().message();
      auto rebuilt = build(partition_table_to_csv(again->table), o);
      ASSERT_TRUE(rebuilt) << "round " << round
                           << ": bin2csv output does not build: " << rebuilt.error().message();
      EXPECT_EQ(*rebuilt, *b) << "round " << round;
    } else {
      ++refused_csv;
      EXPECT_TRUE(one_line(b.error())) << "round " << round << ": '" << b.error().message() << "'";
    }
    if (auto l = load_partition_table(bin, o, "m.bin")) {
      ++accepted_bin;
      auto out = partition_table_to_binary_checked(l->table, true);
      ASSERT_TRUE(out) << "round " << round;
      auto back = load_partition_table(*out, o, "m2.bin");
      ASSERT_TRUE(back) << "round " << round << ": " << back.error().message();
      EXPECT_EQ(partition_table_to_csv(back->table), partition_table_to_csv(l->table)) << "round " << round;
    } else {
      ++refused_bin;
      EXPECT_TRUE(one_line(l.error())) << "round " << round << ": '" << l.error().message() << "'";
    }
    if (auto d = parse_partition_table_as_device(bin, 4 << 20); !d) {
      EXPECT_TRUE(one_line(d.error())) << "round " << round;
    }
  }
  // The mutations reach both outcomes on both paths (else the test checks nothing).
  EXPECT_GT(accepted_csv, 0);
  EXPECT_GT(refused_csv, 0);
  EXPECT_GT(accepted_bin, 0);
  EXPECT_GT(refused_bin, 0);
}

// ---- the shared reference files (real gen_esp32part.py outputs) ----

TEST(PartitionTestdata, CsvToBinAndBinToCsv) {
  OTA32_REQUIRE_TESTDATA();
  auto dir = testing::testdata_dir() / "partitions";
  for (const char* n : {"singleapp", "two_ota", "auto_offsets", "encrypted_flags", "hex_and_decimal"}) {
    auto text = read_text_file(dir / (std::string(n) + ".csv"));
    auto expected_bin = read_file(dir / (std::string(n) + ".bin"));
    auto expected_csv = read_text_file(dir / (std::string(n) + ".bin2csv.csv"));
    ASSERT_TRUE(text && expected_bin && expected_csv) << n;
    auto bin = build(*text);
    ASSERT_TRUE(bin) << n << ": " << bin.error().message();
    EXPECT_EQ(*bin, *expected_bin) << n;
    auto t = parse_partition_binary(*expected_bin, {}, n);
    ASSERT_TRUE(t) << n;
    ASSERT_TRUE(verify_partition_table(*t, {}));
    EXPECT_EQ(partition_table_to_csv(*t), *expected_csv) << n;
  }
}

TEST(PartitionTestdata, SingleappWithoutMd5Row) {
  OTA32_REQUIRE_TESTDATA();
  auto bin = read_file(testing::testdata_dir() / "images" / "partitions_singleapp.bin");
  ASSERT_TRUE(bin);
  // 96 bytes: three entries and no end row, which the tool refuses; as the chip reads it (the rest of the
  // 0xC00 bytes erased) it is a valid table.
  auto t0 = parse_partition_binary(*bin, {}, "partitions_singleapp.bin");
  ASSERT_FALSE(t0);
  EXPECT_EQ(t0.error().message(),
            "partitions_singleapp.bin end: Partition table is missing an end-of-table marker");
  bin->resize(0xC00, 0xFF);
  auto t = parse_partition_binary(*bin, {}, "partitions_singleapp.bin");
  ASSERT_TRUE(t) << t.error().message();
  EXPECT_EQ(t->entries.size(), 3u);
  EXPECT_EQ(t->factory()->offset, 0x10000u);
}

TEST(PartitionTestdata, InvalidFilesGiveTheToolsMessage) {
  OTA32_REQUIRE_TESTDATA();
  auto dir = testing::testdata_dir() / "partitions";
  for (const char* n : {"invalid_app_offset_misaligned", "invalid_duplicate_names", "invalid_overlap"}) {
    auto text = read_text_file(dir / (std::string(n) + ".csv"));
    auto expected = read_text_file(dir / (std::string(n) + ".error.txt"));
    ASSERT_TRUE(text && expected) << n;
    std::string msg = error_of(*text);
    // The tool's last error line (before "rc=2"), without its "CSV Error at line N: " prefix, is in ours.
    std::vector<std::string> lines;
    std::string cur;
    for (char c : *expected) {
      if (c == '\n') {
        lines.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    ASSERT_GE(lines.size(), 2u);
    std::string tool = lines[lines.size() - 2];
    if (auto p = tool.find("CSV Error at line "); p == 0) tool = tool.substr(tool.find(": ") + 2);
    EXPECT_THAT(msg, HasSubstr(tool)) << n;
  }
}

}  // namespace
}  // namespace ota32
