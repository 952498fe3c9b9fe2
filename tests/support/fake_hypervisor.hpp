// An in-memory Hypervisor for unit tests of the layers above collectors (daemon, policy).
// Never used by the product.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include <memtide/collectors/hypervisor.hpp>

namespace memtide::testing {

class FakeHypervisor final : public collectors::Hypervisor {
 public:
  std::vector<VmSample> vms;  // what collect() returns
  // Each call sleeps this long first (atomic: a test may change it while a call sleeps).
  std::atomic<std::chrono::milliseconds> delay{std::chrono::milliseconds{0}};
  bool down = false;                         // collect()/set_memory_size() fail
  std::atomic<int> set_balloon_failures{0};  // the next N set_memory_size() calls fail
  std::vector<std::pair<std::string, std::uint64_t>> balloon_calls;  // (uuid, bytes requested)
  std::vector<collectors::ProcessReadHints> hints_seen;  // what each collect() was given

  using collectors::Hypervisor::collect;
  Result<std::vector<VmSample>> collect(std::int64_t,
                                        const collectors::ProcessReadHints& hints) override {
    hints_seen.push_back(hints);
    std::this_thread::sleep_for(delay.load());
    if (down) {
      return Error{"", 0, 0, "fake hypervisor is down"};
    }
    return vms;
  }

  Result<std::uint64_t> set_memory_size(const std::string& uuid, std::uint64_t target,
                                        std::uint64_t floor) override {
    std::this_thread::sleep_for(delay.load());
    if (down) {
      return Error{"", 0, 0, "fake hypervisor is down"};
    }
    if (set_balloon_failures > 0) {
      --set_balloon_failures;
      return Error{"", 0, 0, "fake hypervisor refused this once"};
    }
    for (auto& vm : vms) {
      if (vm.uuid == uuid) {
        const auto bytes = collectors::clamp_balloon(target, floor, vm.max_bytes);
        vm.current_bytes = bytes;
        balloon_calls.emplace_back(uuid, bytes);
        return bytes;
      }
    }
    return Error{"", 0, 0, "domain " + uuid + " is gone"};
  }
};

}  // namespace memtide::testing
