#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "core/bytes.h"
#include "core/crc32.h"
#include "core/file_io.h"
#include "core/hash.h"
#include "core/numbers.h"
#include "core/result.h"
#include "test_support.h"

namespace ota32 {
namespace {

TEST(Crc32, ZeroSeedIsPlainZlibCrc) {
  // zlib.crc32(b"123456789") == 0xCBF43926
  EXPECT_EQ(crc32_le(0, as_bytes("123456789")), 0xCBF43926u);
  // Incremental use gives the same result.
  uint32_t c = crc32_le(0, as_bytes("1234"));
  EXPECT_EQ(crc32_le(c, as_bytes("56789")), 0xCBF43926u);
}

TEST(ByteReader, ReadsLittleEndianAndRefusesToOverrun) {
  const uint8_t data[] = {0xE9, 0x34, 0x12, 0x78, 0x56, 0x34, 0x12, 0xAA};
  ByteReader r(data, "img.bin");
  EXPECT_EQ(*r.u8(), 0xE9);
  EXPECT_EQ(*r.u16(), 0x1234);
  EXPECT_EQ(*r.u32(), 0x12345678u);
  EXPECT_EQ(r.remaining(), 1u);
  auto bad = r.u32();
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code(), ErrorCode::corrupt);
  EXPECT_EQ(bad.error().message(), "img.bin: truncated at offset 0x7: need 4 bytes, 1 left");
  EXPECT_EQ(r.offset(), 7u);  // a failed read does not move
  EXPECT_FALSE(r.bytes(2));
  EXPECT_TRUE(r.bytes(1));
  EXPECT_TRUE(r.at_end());
  EXPECT_FALSE(r.seek(9));
}

TEST(ByteReader, FixedString) {
  const uint8_t data[] = {'n', 'v', 's', 0, 0, 0, 'a', 'b', 'c', 'd'};
  ByteReader r(data);
  EXPECT_EQ(*r.fixed_string(6), "nvs");
  EXPECT_EQ(*r.fixed_string(4), "abcd");  // full width, no NUL
}

TEST(ByteWriter, WritesLittleEndian) {
  ByteWriter w;
  w.u8(0xAA);
  w.u16(0x50AA);
  w.u32(0x12345678);
  w.fixed_string("ab", 4);
  w.fill(2, 0xFF);
  w.patch_u32(0, 0x01020304);
  EXPECT_EQ(to_hex(w.view()), "0403020156341261620000ffff");
}

TEST(Hex, RoundTripAndErrors) {
  EXPECT_EQ(to_hex(*from_hex("00ffA5")), "00ffa5");
  EXPECT_FALSE(from_hex("abc"));
  EXPECT_FALSE(from_hex("zz"));
}

TEST(Numbers, ParsesEspIdfForms) {
  EXPECT_EQ(*parse_number("0x8000"), 0x8000u);
  EXPECT_EQ(*parse_number("4096"), 4096u);
  EXPECT_EQ(*parse_number("16K"), 16384u);
  EXPECT_EQ(*parse_number("1M"), 1048576u);
  EXPECT_EQ(*parse_number("4MB"), 4u << 20);
  EXPECT_EQ(*parse_number(" 0x10k "), 0x10u * 1024);
  EXPECT_EQ(*parse_number("0xAB"), 0xABu);  // B is a hex digit here, not a unit
  EXPECT_FALSE(parse_number(""));
  EXPECT_FALSE(parse_number("abc"));
  EXPECT_FALSE(parse_number("0x"));
  EXPECT_FALSE(parse_number("99999999999999999999999"));
  auto e = parse_u32("0x100000000", "--offset");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().message(), "--offset: '0x100000000' does not fit in 32 bits");
}

TEST(Numbers, Formats) {
  EXPECT_EQ(format_hex(0x10000, 8), "0x00010000");
  EXPECT_EQ(format_hex(0x8000), "0x8000");
  EXPECT_EQ(format_size(0x100000), "1M");
  EXPECT_EQ(format_size(0x6000), "24K");
  EXPECT_EQ(format_size(100), "100");
  EXPECT_EQ(format_size_human(1536), "1.5 KiB");
}

TEST(Hash, KnownVectors) {
  EXPECT_EQ(to_hex(sha256(as_bytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(to_hex(md5(as_bytes("abc"))), "900150983cd24fb0d6963f7d28e17f72");
  EXPECT_EQ(
      to_hex(sha384(as_bytes("abc"))),
      "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7");
  Sha256 h;
  h.update(as_bytes("a"));
  h.update(as_bytes("bc"));
  EXPECT_EQ(h.finish(), sha256(as_bytes("abc")));
}

// Many blocks, fed in pieces that straddle the 64-byte blocks: the whole-block path (the CPU's SHA
// instructions where it has them) and the buffered tail both run. FIPS 180-2's million 'a's, and its
// two-block message.
TEST(Hash, LongInputsInUnevenPieces) {
  std::string million(1000000, 'a');
  EXPECT_EQ(to_hex(sha256(as_bytes(million))),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  for (size_t piece : {1u, 63u, 65u, 4097u}) {
    Sha256 h;
    for (size_t at = 0; at < million.size(); at += piece)
      h.update(as_bytes(std::string_view(million).substr(at, piece)));
    EXPECT_EQ(to_hex(h.finish()), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        << piece;
  }
  EXPECT_EQ(to_hex(sha256(as_bytes("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"))),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(to_hex(md5(as_bytes(million))), "7707d6ae4e027c70eea2a935c2296f21");
}

TEST(FileIo, AtomicWriteAndRead) {
  testing::TempDir dir;
  auto p = dir / "out.bin";
  ASSERT_TRUE(write_file_atomic(p, std::string_view("hello")));
  EXPECT_EQ(*read_text_file(p), "hello");
  ASSERT_TRUE(write_file_atomic(p, std::string_view("bye")));
  EXPECT_EQ(*read_text_file(p), "bye");
  // No temporary file is left behind.
  int n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir.path())) ++n;
  EXPECT_EQ(n, 1);
}

}  // namespace
}  // namespace ota32

// Every umask(2) call of this test binary goes through here (the executable's definition wins over libc's),
// so a test can see whether library code changed the process umask.
namespace {
std::atomic<int> g_umask_calls{0};
}
extern "C" mode_t umask(mode_t mask) {
  ++g_umask_calls;
  return static_cast<mode_t>(::syscall(SYS_umask, mask));
}

// Likewise for fsync(2): a test can count the syncs a write made.
namespace {
std::atomic<int> g_fsync_calls{0};
}
extern "C" int fsync(int fd) {
  ++g_fsync_calls;
  return static_cast<int>(::syscall(SYS_fsync, fd));
}

namespace ota32 {
namespace {

mode_t set_umask(mode_t m) { return static_cast<mode_t>(::syscall(SYS_umask, m)); }

// Durability::synced syncs the file before the rename; Durability::artifact does not, and is otherwise the
// same atomic write: the complete new contents, no temporary file left, the old file kept on a failure.
TEST(FileIo, AtomicWriteSyncsOnlyWhenAskedTo) {
  testing::TempDir dir;
  auto p = dir / "out.bin";
  int before = g_fsync_calls;
  ASSERT_TRUE(write_file_atomic(p, std::string_view("state"), Durability::synced));
  EXPECT_EQ(g_fsync_calls - before, 1);
  EXPECT_EQ(*read_text_file(p), "state");
  before = g_fsync_calls;
  ASSERT_TRUE(write_file_atomic(p, std::string(100000, 'a'), Durability::artifact));
  EXPECT_EQ(g_fsync_calls - before, 0);
  EXPECT_EQ(*read_text_file(p), std::string(100000, 'a'));
  before = g_fsync_calls;
  ASSERT_TRUE(write_file_atomic(p, std::string_view("default")));
  EXPECT_EQ(g_fsync_calls - before, 1) << "the default is synced";
  int n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir.path())) ++n;
  EXPECT_EQ(n, 1);
}

// The output gets 0666 minus the umask, as a file created by `cp` would, and the process umask is never
// touched on the way: umask(2) sets it even to read it, and other threads create files at the same time
// (the server writes blobs from its workers).
TEST(FileIo, AtomicWriteModeFollowsTheUmaskWithoutChangingIt) {
  testing::TempDir dir;
  const mode_t saved = set_umask(022);
  const int calls_before = g_umask_calls;
  ASSERT_TRUE(write_file_atomic(dir / "a.bin", std::string_view("a")));
  set_umask(077);
  ASSERT_TRUE(write_file_atomic(dir / "b.bin", std::string_view("b")));
  set_umask(saved);
  EXPECT_EQ(g_umask_calls - calls_before, 0);
  struct stat st {};
  ASSERT_EQ(::stat((dir / "a.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
  ASSERT_EQ(::stat((dir / "b.bin").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST(FileIo, Errors) {
  testing::TempDir dir;
  auto r = read_file(dir / "missing.bin");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code(), ErrorCode::not_found);
  EXPECT_NE(r.error().message().find("missing.bin"), std::string::npos);
  auto w = write_file_atomic(dir / "no" / "such" / "dir.bin", std::string_view("x"));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code(), ErrorCode::not_found);
  // Named like `cp` names it: the destination, not the temporary file written beside it.
  EXPECT_EQ(w.error().message(),
            (dir / "no" / "such" / "dir.bin").string() + ": cannot create: No such file or directory");
}

TEST(Result, ContextAndTry) {
  auto f = [](bool ok) -> Result<int> {
    if (!ok) return Error(ErrorCode::corrupt, "bad magic");
    return 42;
  };
  auto g = [&](bool ok) -> Result<int> {
    OTA32_ASSIGN(int v, f(ok));
    return v + 1;
  };
  EXPECT_EQ(*g(true), 43);
  EXPECT_EQ(g(false).error().with_context("x.bin").message(), "x.bin: bad magic");
  auto h = [&](bool ok) -> Result<void> {
    OTA32_TRY(f(ok));
    return {};
  };
  EXPECT_TRUE(h(true));
  EXPECT_EQ(h(false).error().code(), ErrorCode::corrupt);
}

}  // namespace
}  // namespace ota32
