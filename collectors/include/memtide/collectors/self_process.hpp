// memtided's own process and the host it runs on, for the process_* metrics every Prometheus
// client exports and memtide_host_info. Always the real /proc (not daemon.procfs, which may be
// a captured tree).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace memtide::collectors {

struct SelfProcess {
  double cpu_seconds = 0;  // user + system
  std::uint64_t resident_bytes = 0;
  std::uint64_t virtual_bytes = 0;
  std::uint64_t open_fds = 0;
  std::uint64_t max_fds = 0;      // RLIMIT_NOFILE (soft)
  double start_time_seconds = 0;  // since the epoch
  friend bool operator==(const SelfProcess&, const SelfProcess&) = default;
};

// nullopt when /proc/self cannot be read.
std::optional<SelfProcess> read_self_process();

struct HostIdentity {
  std::string hostname;  // uname nodename
  std::string kernel;    // uname release ("6.12.48+deb13-amd64")
  std::string machine;   // uname machine ("x86_64")
  friend bool operator==(const HostIdentity&, const HostIdentity&) = default;
};

HostIdentity read_host_identity();

}  // namespace memtide::collectors
