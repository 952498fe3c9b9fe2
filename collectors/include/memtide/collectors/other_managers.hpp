// Finds the other memory managers running on the host (see OtherManager): by process name, and
// only processes of root or of the manager's own system user count, so that no unprivileged
// user can make memtide stand down by naming a process "ksmtuned".
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
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

// find_other_managers() run collection after collection at a fraction of its cost on a host of
// many processes (a QEMU per guest). /proc is listed at most every `pass_interval` (in between,
// the last pass's answer is given); a process found ordinary is listed but not read again until
// the next full pass, every `full_pass_interval`; new processes and the managers found are read
// at every pass. So a manager that starts or stops is seen within `pass_interval`, and a
// process that turns into one under a PID already looked at (a fork that then executes the
// manager) by the next full pass.
class OtherManagerFinder {
 public:
  OtherManagerFinder(std::string procfs, int self_pid,
                     std::chrono::milliseconds pass_interval = std::chrono::seconds(5),
                     std::chrono::milliseconds full_pass_interval = std::chrono::seconds(60));
  std::vector<OtherManager> find(std::int64_t monotonic_ms);

 private:
  std::string procfs_;
  int self_pid_;
  std::chrono::milliseconds pass_interval_;
  std::chrono::milliseconds full_pass_interval_;
  std::int64_t last_pass_ms_ = INT64_MIN;
  std::int64_t last_full_pass_ms_ = INT64_MIN;
  std::uint64_t passes_ = 0;
  // PIDs read and found not to be managers, with the pass that last listed them.
  std::unordered_map<int, std::uint64_t> ordinary_;
  std::vector<OtherManager> found_;  // the last pass's answer
};

}  // namespace memtide::collectors
