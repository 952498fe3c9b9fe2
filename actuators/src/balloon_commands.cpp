#include <algorithm>
#include <cerrno>

#include <memtide/actuators/balloon_commands.hpp>

namespace memtide::actuators {

std::vector<CommandOutcome> send_balloon_commands(collectors::HypervisorWorker& hypervisor,
                                                  const std::vector<policy::BalloonChange>& changes,
                                                  std::chrono::milliseconds call_timeout,
                                                  std::chrono::steady_clock::time_point deadline) {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  std::vector<CommandOutcome> out(changes.size());
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const auto left = duration_cast<milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left < kMinCallTime) {
      break;  // this one and the rest stay carried_over
    }
    const auto& change = changes[i];
    auto set = hypervisor.set_memory_size(change.key(), change.to_bytes, change.floor_bytes,
                                          std::min(call_timeout, left));
    if (set) {
      out[i].kind = CommandOutcome::Kind::applied;
      continue;
    }
    out[i].kind = CommandOutcome::Kind::failed;
    out[i].error = set.error().message;
    const int err = set.error().sys_errno;
    if (err == ETIMEDOUT || err == EBUSY) {
      // The call goes on in the worker and the next would only fail "busy": the rest wait for
      // the next tick.
      break;
    }
  }
  return out;
}

std::chrono::milliseconds tick_budget(std::chrono::milliseconds interval,
                                      std::chrono::microseconds watchdog) {
  using std::chrono::milliseconds;
  milliseconds budget = std::max(interval, milliseconds{1000});
  if (watchdog.count() > 0) {
    budget = std::min(budget, std::chrono::duration_cast<milliseconds>(watchdog / 3));
  }
  return budget;
}

}  // namespace memtide::actuators
