#include <gtest/gtest.h>

#include <cmath>

#include "server/server.h"

namespace ota32::server {
namespace {

constexpr std::size_t KiB = 1024, MiB = 1024 * 1024;

TEST(NotsentLowat, ShareOfTheBudgetWithinTheBounds) {
  ServerOptions opt;  // 64 MiB shared, each connection between 32 KiB and 1 MiB
  EXPECT_EQ(notsent_lowat_for(opt, 0), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 1), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 64), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 128), 512 * KiB);
  EXPECT_EQ(notsent_lowat_for(opt, 100), 64 * MiB / 100);
  EXPECT_EQ(notsent_lowat_for(opt, 1000), 64 * MiB / 1000);
  EXPECT_EQ(notsent_lowat_for(opt, 2048), 32 * KiB);
  EXPECT_EQ(notsent_lowat_for(opt, 10000), 32 * KiB);
  opt.unsent_budget = 4 * MiB;
  EXPECT_EQ(notsent_lowat_for(opt, 4), 1 * MiB);
  EXPECT_EQ(notsent_lowat_for(opt, 100), 4 * MiB / 100);
  EXPECT_EQ(notsent_lowat_for(opt, 128), 32 * KiB);
}

TEST(UnsentBudget, AnEighthOfTheKernelsTcpMemoryPressureAtMost) {
  constexpr std::size_t preferred = 64 * MiB;
  // This machine's kind: pressure at 383858 pages of 4 KiB (1.46 GiB): the preferred 64 MiB stays.
  EXPECT_EQ(unsent_budget_for_tcp_mem("287892\t383858\t575784\n", 4096, preferred), preferred);
  // A small board: pressure at 30000 pages (117 MiB): 14.6 MiB.
  EXPECT_EQ(unsent_budget_for_tcp_mem("22500 30000 45000\n", 4096, preferred), 30000 / 8 * 4096u);
  // Unreadable text or a zero threshold: the preferred budget.
  EXPECT_EQ(unsent_budget_for_tcp_mem("", 4096, preferred), preferred);
  EXPECT_EQ(unsent_budget_for_tcp_mem("1 2", 4096, preferred), preferred);
  EXPECT_EQ(unsent_budget_for_tcp_mem("0 0 0", 4096, preferred), preferred);
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
