// The policy's memory kept across restarts (daemon.state_file): hysteresis and commands in
// flight per VM, alert state, the KSM controller's hold-off, and the MemAvailable history of the
// swap forecast. Without it a restart forgets every guard and can send a burst of commands.
//
// The file is JSON, versioned ("format"), written atomically (a temporary file in the same
// directory, fsync, rename) with mode 0600. Times in PolicyState are on the monotonic clock,
// which restarts at boot; the file also holds the wall-clock and monotonic time of saving, and
// loading moves every time by the difference, so ages survive a reboot. A file that cannot be
// read or parsed, of another format, or older than kMaxStateAge is not used (the caller warns).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <memtide/core/result.hpp>
#include <memtide/policy/engine.hpp>

namespace memtide::daemon {

inline constexpr int kStateFormat = 1;
// Older state is not trusted: the guests and the host have moved on since.
inline constexpr std::chrono::hours kMaxStateAge{1};
// The most VMs a state file may hold: ten times the largest host memtide is measured on.
inline constexpr std::size_t kMaxStateVms = 10'000;
// A state file larger than this is refused unread: a real one is about 650 bytes per VM, and
// kMaxStateVms VMs with long names, two alerts each and the longest history come to 14.0 MB
// (StateFile.TheLargestRealStateFitsUnderTheCap keeps a quarter to spare). A file at the old
// 64 MiB cap took 425 MiB and 5.5 s to parse before the daemon was ready.
inline constexpr std::size_t kMaxStateBytes = std::size_t{20} << 20;

// The JSON text of `state` as saved at (monotonic_ms, unix_ms).
std::string state_to_json(const policy::PolicyState& state, std::int64_t monotonic_ms,
                          std::int64_t unix_ms);

// The state in `text`, its times moved onto the current monotonic clock (`monotonic_ms`, with
// the wall clock `unix_ms` telling how long ago it was saved).
Result<policy::PolicyState> state_from_json(const std::string& text, std::int64_t monotonic_ms,
                                            std::int64_t unix_ms);

// Writes `text` to `path` atomically (PATH.tmp, fsync, rename; never through a symlink).
Status save_state_file(const std::string& path, const std::string& text);

// Reads `path` (a regular file, not through a symlink, at most kMaxStateBytes).
Result<std::string> read_state_file(const std::string& path);

// The path daemon.state_file names: "auto" is $STATE_DIRECTORY/policy-state.json when the
// variable is set (the first directory when it lists several), else "" (off).
std::string resolve_state_path(const std::string& configured);

}  // namespace memtide::daemon
