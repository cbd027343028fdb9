#include <gtest/gtest.h>

#include <cmath>

#include "server/server.h"

namespace ota32::server {
namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

TEST(NotsentLowat, ShareOfTheBudgetWithinTheBounds) {
  ServerOptions opt;  // 4 MiB shared, each connection between 32 KiB and 1 MiB
  EXPECT_EQ(notsent_lowat_for(opt, 0), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 1), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 4), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 8), 512 * KiB);
  EXPECT_EQ(notsent_lowat_for(opt, 10), 4 * MiB / 10);
  EXPECT_EQ(notsent_lowat_for(opt, 100), 4 * MiB / 100);
  EXPECT_EQ(notsent_lowat_for(opt, 128), 32 * KiB);
  EXPECT_EQ(notsent_lowat_for(opt, 1000), 32 * KiB);
  EXPECT_EQ(notsent_lowat_for(opt, 10000), 32 * KiB);
  opt.unsent_budget = 16 * MiB;
  EXPECT_EQ(notsent_lowat_for(opt, 16), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 100), 16 * MiB / 100);
  EXPECT_EQ(notsent_lowat_for(opt, 512), 32 * KiB);
}

TEST(NotsentLowat, ZeroBudgetMeansNoMark) {
  ServerOptions opt;
  opt.unsent_budget = 0;
  EXPECT_EQ(notsent_lowat_for(opt, 1), 0u);
  EXPECT_EQ(notsent_lowat_for(opt, 10000), 0u);
}

TEST(NotsentLowat, MaxBelowMinGivesMin) {
  ServerOptions opt;
  opt.notsent_lowat_min = 64 * KiB;
  opt.notsent_lowat_max = 16 * KiB;
  EXPECT_EQ(notsent_lowat_for(opt, 1), 64 * KiB);
  EXPECT_EQ(notsent_lowat_for(opt, 5000), 64 * KiB);
}

// The bound server.h states for connections opened one after another (each sees the count so far).
TEST(NotsentLowat, SumOverARampStaysWithinTheStatedBound) {
  ServerOptions opt;
  for (std::size_t n : {1u, 10u, 100u, 1000u, 10000u}) {
    double sum = 0;
    for (std::size_t k = 1; k <= n; ++k) sum += static_cast<double>(notsent_lowat_for(opt, k));
    double bound = static_cast<double>(n * opt.notsent_lowat_min) +
                   static_cast<double>(opt.unsent_budget) * (1 + std::log(static_cast<double>(n)));
    EXPECT_LE(sum, bound) << n;
  }
}

}  // namespace
}  // namespace ota32::server
