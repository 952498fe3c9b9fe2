#include <random>

#include <gtest/gtest.h>

#include <memtide/collectors/hypervisor.hpp>

#include "../support/sizes.hpp"

namespace memtide::collectors {
namespace {

using memtide::test_sizes::MiB;

VirtioMemDevice device(std::uint64_t max, std::uint64_t block, std::uint64_t configured) {
  VirtioMemDevice d;
  d.alias = "virtiomem" + std::to_string(max / MiB);
  d.max_bytes = max;
  d.block_bytes = block;
  d.requested_bytes = d.plugged_bytes = d.configured_bytes = configured;
  return d;
}

TEST(MemorySplit, WithoutDevicesTheBalloonCarriesAll) {
  const auto s = split_memory_size(300 * MiB, 512 * MiB, {});
  EXPECT_EQ(s.balloon_bytes, 300 * MiB);
  EXPECT_TRUE(s.requested_bytes.empty());
}

// The guest of the real-guest tests: 512 MiB of base memory, a 1 GiB device in 2 MiB blocks.
TEST(MemorySplit, TheDeviceCarriesWholeBlocksAboveTheCeilingAndTheBalloonTheRest) {
  const std::vector devices{device(1024 * MiB, 2 * MiB, 256 * MiB)};
  auto s = split_memory_size(768 * MiB, 512 * MiB, devices);
  EXPECT_EQ(s.requested_bytes[0], 256 * MiB);
  EXPECT_EQ(s.balloon_bytes, 512 * MiB);
  s = split_memory_size(769 * MiB, 512 * MiB, devices);  // not a whole block above the ceiling
  EXPECT_EQ(s.requested_bytes[0], 258 * MiB);
  EXPECT_EQ(s.balloon_bytes, 511 * MiB);
  s = split_memory_size(300 * MiB, 512 * MiB, devices);  // below the ceiling: the balloon alone
  EXPECT_EQ(s.requested_bytes[0], 0u);
  EXPECT_EQ(s.balloon_bytes, 300 * MiB);
  s = split_memory_size(1536 * MiB, 512 * MiB, devices);  // the maximum
  EXPECT_EQ(s.requested_bytes[0], 1024 * MiB);
  EXPECT_EQ(s.balloon_bytes, 512 * MiB);
}

TEST(MemorySplit, ARestoreGivesEveryDeviceItsConfiguredSize) {
  const std::vector devices{device(1024 * MiB, 2 * MiB, 256 * MiB),
                            device(512 * MiB, 4 * MiB, 128 * MiB)};
  VmSample vm;
  vm.max_bytes = 2048 * MiB;
  vm.virtio_mem = devices;
  ASSERT_EQ(balloon_ceiling(vm), 512 * MiB);
  ASSERT_EQ(restore_size(vm), 896 * MiB);
  const auto s = split_memory_size(restore_size(vm), balloon_ceiling(vm), devices);
  EXPECT_EQ(s.requested_bytes, (std::vector<std::uint64_t>{256 * MiB, 128 * MiB}));
  EXPECT_EQ(s.balloon_bytes, 512 * MiB);
  // More than configured: the first device fills up before the second grows.
  const auto more = split_memory_size(1400 * MiB, 512 * MiB, devices);
  EXPECT_EQ(more.requested_bytes, (std::vector<std::uint64_t>{760 * MiB, 128 * MiB}));
}

TEST(MemorySplit, ABlockLargerThanTheBalloonNeverGoesBelowTheTarget) {
  const std::vector devices{device(4096 * MiB, 1024 * MiB, 0)};
  const auto s = split_memory_size(600 * MiB, 256 * MiB, devices);
  EXPECT_EQ(s.requested_bytes[0], 1024 * MiB);
  EXPECT_EQ(s.balloon_bytes, 256 * MiB);
}

// Whatever the devices and target: whole blocks within each device, the balloon within its
// ceiling, never less than the target, never more than the maximum, and exactly the target
// when every block fits under the ceiling.
TEST(MemorySplit, GuardrailsHoldForAnyDevicesAndTarget) {
  std::mt19937_64 rng(17);
  for (int round = 0; round < 20000; ++round) {
    const std::uint64_t ceiling = (64 + rng() % 4096) * MiB;
    std::vector<VirtioMemDevice> devices;
    std::uint64_t max = ceiling;
    std::uint64_t largest_block = 0;
    for (std::uint64_t n = rng() % 4; n > 0; --n) {
      const std::uint64_t block = (std::uint64_t{1} << (rng() % 11)) * MiB;  // 1 MiB .. 1 GiB
      const std::uint64_t blocks = 1 + rng() % 64;
      devices.push_back(device(blocks * block, block, (rng() % (blocks + 1)) * block));
      max += blocks * block;
      largest_block = std::max(largest_block, block);
    }
    const std::uint64_t target = rng() % (max + 1);
    const auto s = split_memory_size(target, ceiling, devices);
    ASSERT_EQ(s.requested_bytes.size(), devices.size());
    for (std::size_t i = 0; i < devices.size(); ++i) {
      ASSERT_EQ(s.requested_bytes[i] % devices[i].block_bytes, 0u) << round;
      ASSERT_LE(s.requested_bytes[i], devices[i].max_bytes) << round;
    }
    ASSERT_LE(s.balloon_bytes, ceiling) << round;
    ASSERT_GE(s.total_bytes(), target) << round;
    ASSERT_LE(s.total_bytes(), max) << round;
    if (largest_block <= ceiling) {
      ASSERT_EQ(s.total_bytes(), target) << round;
    }
  }
}

}  // namespace
}  // namespace memtide::collectors
