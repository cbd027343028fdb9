// Peak heap of one OTA (esp_https_ota equivalent) for 64 KiB, 1 MiB and 4 MiB images, over HTTPS from a
// real `openssl s_server -WWW` on 127.0.0.1 and over plain HTTP from a scripted server: the agent streams,
// so the peak must not grow with the image. Heap is counted by replacing malloc & co. in this executable
// (libmbedtls, libstdc++'s operator new and everything else allocate through them); the flash model and the
// served file are allocated before the measurement starts and are not counted.
//
//   agent_memory_bench            prints a Markdown table (docs/performance.md)
#include <fmt/format.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "agent/https_ota.h"
#include "core/file_io.h"
#include "core/numbers.h"
#include "flash/nor_flash.h"
#include "format/image_make.h"
#include "scripted_server.h"
#include "test_support.h"
#include "tls_fixture.h"

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void __libc_free(void*);
void* __libc_memalign(size_t, size_t);
}

namespace {
std::atomic<int64_t> g_current{0};
std::atomic<int64_t> g_peak{0};
std::atomic<int64_t> g_calls{0};

void account(void* p) {
  if (p == nullptr) return;
  int64_t now = g_current.fetch_add(static_cast<int64_t>(malloc_usable_size(p))) +
                static_cast<int64_t>(malloc_usable_size(p));
  g_calls.fetch_add(1);
  int64_t peak = g_peak.load();
  while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
  }
}
void unaccount(void* p) {
  if (p != nullptr) g_current.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)));
}
}  // namespace

extern "C" {
void* malloc(size_t n) {
  void* p = __libc_malloc(n);
  account(p);
  return p;
}
void* calloc(size_t a, size_t b) {
  void* p = __libc_calloc(a, b);
  account(p);
  return p;
}
void* realloc(void* old, size_t n) {
  unaccount(old);
  void* p = __libc_realloc(old, n);
  if (p == nullptr && n != 0) account(old);  // the old block is still there
  account(p);
  return p;
}
void free(void* p) {
  unaccount(p);
  __libc_free(p);
}
void* memalign(size_t align, size_t n) {
  void* p = __libc_memalign(align, n);
  account(p);
  return p;
}
void* aligned_alloc(size_t align, size_t n) { return memalign(align, n); }
int posix_memalign(void** out, size_t align, size_t n) {
  void* p = memalign(align, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
}

namespace ota32 {
namespace {

namespace fs = std::filesystem;

PartitionTable big_layout() {
  PartitionTable t;
  t.entries = {
      {"nvs", kPartitionTypeData, 0x02, 0x9000, 0x4000},
      {"otadata", kPartitionTypeData, kDataSubtypeOta, 0xd000, 0x2000},
      {"factory", kPartitionTypeApp, kAppSubtypeFactory, 0x10000, 0x100000},
      {"ota_0", kPartitionTypeApp, kAppSubtypeOta0, 0x110000, 0x500000},
      {"ota_1", kPartitionTypeApp, kAppSubtypeOta0 + 1, 0x610000, 0x500000},
  };
  return t;
}

struct Measure {
  int64_t peak = 0;
  int64_t allocations = 0;
  bool ok = false;
  std::string error;
};

Measure run_ota(const std::string& url, const std::string& ca_pem) {
  static MemFlash flash(16u << 20);  // allocated once, before any measurement
  PartitionTable table = big_layout();
  agent::HttpsOtaConfig cfg;
  cfg.url = url;
  cfg.http.tls.ca_pem = ca_pem;
  cfg.http.tls.ca_name = "ca_cert.pem";
  cfg.writer.chip = find_chip("esp32");
  cfg.writer.running_version = "1";
  agent::NullLog log;
  cfg.url.reserve(url.size());
  int64_t base = g_current.load();
  g_peak = base;
  int64_t calls0 = g_calls.load();
  auto r = agent::https_ota(flash, table, table.factory(), cfg, log);
  Measure m;
  m.peak = g_peak.load() - base;
  m.allocations = g_calls.load() - calls0;
  m.ok = static_cast<bool>(r);
  if (!r) m.error = r.error().message();
  return m;
}

int main_impl() {
  testing::TempDir dir;
  testing::TestPki pki;
  if (!pki.create(dir.path() / "pki")) {
    fmt::print(stderr, "agent_memory_bench: openssl could not make certificates\n");
    return 1;
  }
  fs::create_directories(dir.path() / "www");
  const uint32_t sizes[] = {65872, 1u << 20,
                            4u << 20};  // 65872: the smallest esp32 image `image make` builds
  for (uint32_t size : sizes) {
    MakeImageOptions o;
    o.chip = find_chip("esp32");
    o.project = "bench";
    o.version = "2";
    o.size = size;
    auto img = make_app_image(o);
    if (!img) {
      fmt::print(stderr, "agent_memory_bench: {}\n", img.error().message());
      return 1;
    }
    (void)write_file_atomic(dir.path() / "www" / fmt::format("fw_{}.bin", size), *img);
  }
  testing::OpensslServer tls;
  if (!tls.start(dir.path() / "www", pki.ip_cert, pki.ip_key)) {
    fmt::print(stderr, "agent_memory_bench: openssl s_server did not start\n");
    return 1;
  }
  std::string ca = *read_text_file(pki.ca_cert);
  fmt::print("| image | transport | peak heap | allocations | result |\n|---|---|---|---|---|\n");
  for (uint32_t size : sizes) {
    Bytes body = *read_file(dir.path() / "www" / fmt::format("fw_{}.bin", size));
    std::string reply = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                        std::string(as_chars(body));
    body.clear();
    body.shrink_to_fit();
    Measure https = run_ota(fmt::format("https://127.0.0.1:{}/fw_{}.bin", tls.port(), size), ca);
    Measure http;
    {
      testing::ScriptedServer plain(
          [&](const std::string&, int) {
            testing::ScriptedReply r;
            r.shared = &reply;
            return r;
          },
          1);
      http = run_ota(fmt::format("http://127.0.0.1:{}/fw.bin", plain.port()), ca);
    }
    for (auto& [name, m] : {std::pair<const char*, Measure&>{"HTTPS (mbedTLS, s_server -WWW)", https},
                            std::pair<const char*, Measure&>{"HTTP", http}}) {
      fmt::print("| {} | {} | {:.1f} KiB | {} | {} |\n", format_size(size), name, m.peak / 1024.0,
                 m.allocations, m.ok ? "ok" : m.error);
    }
  }
  return 0;
}

}  // namespace
}  // namespace ota32

int main() { return ota32::main_impl(); }
