#include <gtest/gtest.h>

#include <memtide/policy/rates.hpp>

namespace memtide::policy {
namespace {

HostSample sample(std::uint64_t swap_out, std::uint64_t majfault, double psi_total) {
  HostSample s;
  s.vmstat.swap_out_bytes_total = swap_out;
  s.vmstat.swap_in_bytes_total = swap_out / 2;
  s.vmstat.major_faults_total = majfault;
  s.vmstat.page_faults_total = majfault * 10;
  s.psi_memory = Pressure{PressureLine{0, 0, 0, psi_total}, std::nullopt};
  return s;
}

TEST(DeriveRates, PerSecondFromCounterDeltas) {
  const auto r = derive_rates(sample(4096, 10, 1.0), sample(4096 + 40960, 30, 1.5), 10.0);
  EXPECT_DOUBLE_EQ(r.swap_out_bytes_per_second, 4096.0);
  EXPECT_DOUBLE_EQ(r.swap_in_bytes_per_second, 2048.0);
  EXPECT_DOUBLE_EQ(r.major_faults_per_second, 2.0);
  EXPECT_DOUBLE_EQ(r.page_faults_per_second, 20.0);
  EXPECT_DOUBLE_EQ(r.psi_memory_some_stall_ratio, 0.05);
}

TEST(DeriveRates, CounterResetGivesZeroNotGarbage) {
  const auto r = derive_rates(sample(1 << 20, 500, 9.0), sample(0, 3, 0.1), 10.0);
  EXPECT_EQ(r, HostRates{});
}

TEST(DeriveRates, NonPositiveIntervalGivesZeros) {
  EXPECT_EQ(derive_rates(sample(0, 0, 0), sample(4096, 1, 1), 0.0), HostRates{});
  EXPECT_EQ(derive_rates(sample(0, 0, 0), sample(4096, 1, 1), -1.0), HostRates{});
}

TEST(DeriveRates, WithoutPsiTheStallRatioIsZero) {
  auto a = sample(0, 0, 0);
  auto b = sample(0, 0, 5);
  b.psi_memory.reset();
  EXPECT_EQ(derive_rates(a, b, 1.0).psi_memory_some_stall_ratio, 0.0);
}

}  // namespace
}  // namespace memtide::policy

namespace memtide::policy {
namespace {

TEST(DeriveRates, FullStallShareWhenTheKernelHasIt) {
  HostSample a;
  HostSample b;
  a.psi_memory = Pressure{PressureLine{0, 0, 0, 10.0}, PressureLine{0, 0, 0, 4.0}};
  b.psi_memory = Pressure{PressureLine{0, 0, 0, 11.0}, PressureLine{0, 0, 0, 4.5}};
  const auto r = derive_rates(a, b, 2.0);
  EXPECT_DOUBLE_EQ(r.psi_memory_some_stall_ratio, 0.5);
  EXPECT_DOUBLE_EQ(r.psi_memory_full_stall_ratio, 0.25);
  b.psi_memory->full.reset();
  EXPECT_EQ(derive_rates(a, b, 2.0).psi_memory_full_stall_ratio, 0.0);
}

}  // namespace
}  // namespace memtide::policy
