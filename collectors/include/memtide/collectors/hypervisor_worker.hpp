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
#include <future>
#include <memory>
#include <mutex>
#include <optional>
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
  // The same in two steps, so that several workers collect at once: start_collect returns at
  // once, finish waits for the answer until `deadline` (then it fails with ETIMEDOUT as collect
  // does, and the call goes on in the background).
  template <typename T>
  struct Pending {
    std::future<Result<T>> answer;
    std::optional<Error> refused;  // not started: an earlier call is still running (EBUSY)
    std::chrono::steady_clock::time_point started;
  };
  Pending<std::vector<VmSample>> start_collect(std::int64_t monotonic_ms,
                                               const ProcessReadHints& hints = {});
  template <typename T>
  static Result<T> finish(Pending<T>& pending, std::chrono::steady_clock::time_point deadline);
  Result<std::uint64_t> set_memory_size(const std::string& uuid, std::uint64_t target_bytes,
                                        std::uint64_t floor_bytes,
                                        std::chrono::milliseconds timeout);
  // Hypervisor::connection_states(), at once, whatever call is running.
  std::vector<ConnectionState> connection_states() const;
  // Waits until no call is running (an abandoned one has returned) or `deadline` passes; true
  // when idle.
  bool wait_idle(std::chrono::steady_clock::time_point deadline);

 private:
  struct Shared;
  template <typename T>
  Pending<T> start(std::function<Result<T>(collectors::Hypervisor&)> fn);
  template <typename T>
  Result<T> call(std::function<Result<T>(collectors::Hypervisor&)> fn,
                 std::chrono::milliseconds timeout);

  std::shared_ptr<Shared> shared_;
};

}  // namespace memtide::collectors
