// Everything one tick collected, as plain values: the input of policy::decide and of the
// record/replay trace.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <memtide/core/host_sample.hpp>
#include <memtide/core/ksm_sample.hpp>
#include <memtide/core/page_scan.hpp>
#include <memtide/core/vm_sample.hpp>

namespace memtide {

// Another program on the host that resizes guest balloons or tunes KSM: ksmtuned, oVirt MOM
// (momd, vdsm), Proxmox VE's pvestatd, or a second memtided for the same hypervisor. Two managers
// of the same settings undo each other's work.
struct OtherManager {
  std::string name;  // "ksmtuned", "momd", "vdsm", "pvestatd", "memtided"
  int pid = 0;
  bool balloons = false;  // it resizes guest balloons
  bool ksm = false;       // it writes /sys/kernel/mm/ksm
  friend bool operator==(const OtherManager&, const OtherManager&) = default;
};

// One libvirt daemon's connection when memtided manages several (libvirt.connections and
// libvirt.discover); a daemon with the single libvirt.uri lists none.
struct ConnectionState {
  enum class Status { up, down, refused };
  std::string name;
  std::string uri;
  bool discovered = false;  // found by a socket glob rather than configured
  Status status = Status::down;
  std::uint64_t vms = 0;  // guests at its last good collection (still in the snapshot when down)
  std::string error;      // down: why; refused: why the socket is not used
  std::int64_t down_since_ms = -1;  // monotonic; -1 when up
  friend bool operator==(const ConnectionState&, const ConnectionState&) = default;
};

inline const char* to_string(ConnectionState::Status status) {
  switch (status) {
    case ConnectionState::Status::up:
      return "up";
    case ConnectionState::Status::down:
      return "down";
    case ConnectionState::Status::refused:
      return "refused";
  }
  return "?";
}

struct Snapshot {
  std::int64_t collected_at_unix_ms = 0;  // wall clock, for humans and traces
  std::int64_t monotonic_ms = 0;          // CLOCK_MONOTONIC, for rates; immune to clock steps
  HostSample host;
  std::optional<KsmSample> ksm;              // unavailable without CONFIG_KSM
  std::optional<KsmEstimate> ksm_estimate;   // none until the page scanner finished a pass
  bool hypervisor_up = false;                // the VM figures below come from a live connection
  std::string hypervisor_error;              // why not, when hypervisor_up is false
  std::vector<VmSample> vms;                 // active domains, sorted by name
  std::vector<ConnectionState> connections;  // with several daemons: each one, by name
  std::vector<OtherManager> other_managers;  // running now, in PID order

  friend bool operator==(const Snapshot&, const Snapshot&) = default;
};

}  // namespace memtide
