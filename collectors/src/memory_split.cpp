#include <algorithm>

#include <memtide/collectors/hypervisor.hpp>

namespace memtide::collectors {

namespace {

std::uint64_t round_up(std::uint64_t bytes, std::uint64_t block) {
  if (block == 0) {
    return bytes;
  }
  const std::uint64_t rest = bytes % block;
  return rest == 0 ? bytes : bytes + (block - rest);
}

}  // namespace

MemorySplit split_memory_size(std::uint64_t target, std::uint64_t balloon_ceiling,
                              const std::vector<VirtioMemDevice>& devices) {
  MemorySplit split;
  split.requested_bytes.assign(devices.size(), 0);
  std::uint64_t remaining = target > balloon_ceiling ? target - balloon_ceiling : 0;
  // First pass up to each device's configured size, second up to its maximum.
  for (const bool up_to_max : {false, true}) {
    for (std::size_t i = 0; i < devices.size() && remaining > 0; ++i) {
      const auto& d = devices[i];
      const std::uint64_t cap = up_to_max ? d.max_bytes : std::min(d.configured_bytes, d.max_bytes);
      auto& given = split.requested_bytes[i];
      if (cap <= given) {
        continue;
      }
      const std::uint64_t take = std::min(cap - given, round_up(remaining, d.block_bytes));
      given += take;
      remaining = take >= remaining ? 0 : remaining - take;
    }
  }
  // The devices' share is at most `target` - ceiling + one block, so the balloon's is within a
  // block of its ceiling, or all of `target` when that is below the ceiling.
  const std::uint64_t devices_bytes = split.total_bytes();
  split.balloon_bytes =
      devices_bytes <= target ? std::min(target - devices_bytes, balloon_ceiling) : balloon_ceiling;
  return split;
}

}  // namespace memtide::collectors
