// Carrying out a plan's balloon commands within the tick's time budget. Each libvirt call may
// take up to libvirt.timeout; a tick that sent every command regardless could outlast the
// systemd watchdog on a slow hypervisor. Commands are sent in the plan's order while time is
// left, each with the smaller of libvirt.timeout and what is left; the rest are carried over
// (the caller unsends them, so the next tick decides them again on fresh figures).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <memtide/collectors/hypervisor_worker.hpp>
#include <memtide/policy/engine.hpp>

namespace memtide::actuators {

struct CommandOutcome {
  enum class Kind : std::uint8_t { applied, failed, carried_over };
  Kind kind = Kind::carried_over;
  std::string error;  // why it failed
};

// A call is not started with less time than this left: it could only time out.
inline constexpr std::chrono::milliseconds kMinCallTime{50};

// One outcome per change, in order. `deadline` is on the steady clock. After a call that timed
// out (it goes on in the worker) the rest are carried over.
std::vector<CommandOutcome> send_balloon_commands(collectors::HypervisorWorker& hypervisor,
                                                  const std::vector<policy::BalloonChange>& changes,
                                                  std::chrono::milliseconds call_timeout,
                                                  std::chrono::steady_clock::time_point deadline);

// The time a tick may take from its start: its interval (at least 1 s), but never more than a
// third of the systemd watchdog period when one is set (`watchdog` zero: none), so the loop
// always pings in time.
std::chrono::milliseconds tick_budget(std::chrono::milliseconds interval,
                                      std::chrono::microseconds watchdog);

}  // namespace memtide::actuators
