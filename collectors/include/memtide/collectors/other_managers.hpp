// Finds the other memory managers running on the host (see OtherManager): by process name, and
// only processes of root or of the manager's own system user count, so that no unprivileged
// user can make memtide stand down by naming a process "ksmtuned".
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <memtide/core/snapshot.hpp>

namespace memtide::collectors {

// Which known manager a process is, from /proc/PID/comm and /proc/PID/cmdline (NUL-separated):
// its comm, the base name of argv[0], or, when argv[0] is an interpreter (python, perl, bash,
// sh), the base name of argv[1]. `pid` is copied into the result. nullopt for any other process.
std::optional<OtherManager> identify_manager(std::string_view comm, std::string_view cmdline,
                                             int pid);

// Every name identify_manager() gives: "ksmtuned", "momd", "vdsm", "pvestatd", "memtided".
std::vector<std::string_view> known_manager_names();

// The system user a known manager runs as besides root ("vdsm" for oVirt's), or "".
std::string_view manager_user(std::string_view name);

// Every process under `procfs` that identify_manager() knows, except `self_pid`, whose real uid
// is root or the manager's own user (looked up with getpwnam), in PID order. Processes that
// vanish or cannot be read while scanning are skipped.
std::vector<OtherManager> find_other_managers(const std::string& procfs, int self_pid);

}  // namespace memtide::collectors
