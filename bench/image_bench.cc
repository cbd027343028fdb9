// image info / verify on a 4 MiB app image, in-process (the library work without process start-up).
// bench/image_vs_openssl.sh measures the whole `ota32` process against `openssl dgst -sha256`.
#include <benchmark/benchmark.h>

#include "core/hash.h"
#include "format/app_image.h"
#include "format/image_info.h"
#include "format/image_make.h"

namespace {

const ota32::Bytes& image_4m() {
  static const ota32::Bytes img = [] {
    ota32::MakeImageOptions o;
    o.chip = ota32::find_chip("esp32");
    o.project = "bench";
    o.version = "1.0";
    o.size = 4u << 20;
    return *ota32::make_app_image(o);
  }();
  return img;
}

void BM_Sha256(benchmark::State& st) {
  const auto& img = image_4m();
  for (auto _ : st) benchmark::DoNotOptimize(ota32::sha256(img));
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(img.size()));
}
BENCHMARK(BM_Sha256)->Unit(benchmark::kMillisecond);

void BM_ParseImage(benchmark::State& st) {
  const auto& img = image_4m();
  for (auto _ : st) benchmark::DoNotOptimize(ota32::parse_image(img));
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(img.size()));
}
BENCHMARK(BM_ParseImage)->Unit(benchmark::kMillisecond);

void BM_VerifyImage(benchmark::State& st) {
  const auto& img = image_4m();
  for (auto _ : st) {
    auto p = ota32::parse_image(img);
    benchmark::DoNotOptimize(ota32::verify_image(*p, img, {}));
  }
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(img.size()));
}
BENCHMARK(BM_VerifyImage)->Unit(benchmark::kMillisecond);

void BM_ImageInfo(benchmark::State& st) {
  const auto& img = image_4m();
  for (auto _ : st) benchmark::DoNotOptimize(ota32::image_info_report(img, {}));
  st.SetBytesProcessed(int64_t(st.iterations()) * int64_t(img.size()));
}
BENCHMARK(BM_ImageInfo)->Unit(benchmark::kMillisecond);

}  // namespace
