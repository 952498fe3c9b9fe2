// The host's view of a guest: its QEMU process's resident and swapped memory and KSM figures.
// Parsers are pure; the readers take the procfs root like HostSource does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include <memtide/core/result.hpp>
#include <memtide/core/vm_sample.hpp>

namespace memtide::collectors {

struct ProcessMemory {
  std::optional<std::uint64_t> rss_bytes;   // VmRSS
  std::optional<std::uint64_t> swap_bytes;  // VmSwap
  friend bool operator==(const ProcessMemory&, const ProcessMemory&) = default;
};

// /proc/PID/status: only VmRSS and VmSwap are read (both absent for kernel threads).
Result<ProcessMemory> parse_process_status(std::string_view text, std::string_view origin);

// /proc/PID/ksm_stat. Page counts become bytes with `page_size_bytes`.
Result<ProcessKsmStat> parse_process_ksm_stat(std::string_view text, std::uint64_t page_size_bytes,
                                              std::string_view origin);

// The QEMU process of every guest on the host: UUID (lower case) -> pid, found from the
// "-uuid UUID" argument libvirt puts on every QEMU command line. Processes that vanish or cannot
// be read while scanning are skipped.
std::map<std::string, int> find_qemu_processes(const std::string& procfs);

// Whether process `pid` still runs the guest `uuid` (pids are reused).
bool process_runs_guest(const std::string& procfs, int pid, const std::string& uuid);

// Memory and KSM figures of process `pid`; parts that cannot be read are left unset. nullopt
// when the process is gone.
std::optional<QemuProcess> read_qemu_process(const std::string& procfs, int pid,
                                             std::uint64_t page_size_bytes);

}  // namespace memtide::collectors
