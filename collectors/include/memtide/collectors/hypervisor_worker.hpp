// Runs every Hypervisor call on a thread of its own so that a hung or dead libvirtd can never
// hold the daemon's tick longer than a configured timeout. One call runs at a time; a call that
// overruns its timeout keeps running in the background (libvirt calls cannot be cancelled), its
// result is dropped, and further calls fail at once with "busy" until it returns: the tick goes
// on with the figures it has. Such errors carry sys_errno ETIMEDOUT (this call overran) or EBUSY
// (an earlier call is still running).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>

#include <memtide/collectors/hypervisor.hpp>

namespace memtide::collectors {

class HypervisorWorker {
 public:
  explicit HypervisorWorker(std::unique_ptr<collectors::Hypervisor> hypervisor);
  // Waits up to 2 s for a running call; a call still hung then is abandoned with its thread
  // (the process is exiting).
  ~HypervisorWorker();
  HypervisorWorker(const HypervisorWorker&) = delete;
  HypervisorWorker& operator=(const HypervisorWorker&) = delete;

  Result<std::vector<VmSample>> collect(std::int64_t monotonic_ms,
                                        std::chrono::milliseconds timeout,
                                        const ProcessReadHints& hints = {});
  Result<std::uint64_t> set_memory_size(const std::string& uuid, std::uint64_t target_bytes,
                                        std::uint64_t floor_bytes,
                                        std::chrono::milliseconds timeout);
  // Waits until no call is running (an abandoned one has returned) or `deadline` passes; true
  // when idle.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);

 private:
  struct Shared;
  template <typename T>
  Result<T> call(std::function<Result<T>(collectors::Hypervisor&)> fn,
                 std::chrono::milliseconds timeout);

  std::shared_ptr<Shared> shared_;
};

}  // namespace memtide::collectors
