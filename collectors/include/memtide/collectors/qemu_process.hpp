// The host's view of a guest: its QEMU process's resident and swapped memory and KSM figures.
// Parsers are pure; the readers take the procfs root like HostSource does.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

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

// The four uids (real, effective, saved, filesystem) of the "Uid:" line of /proc/PID/status;
// empty when absent or malformed.
std::vector<std::uint32_t> parse_status_uids(std::string_view status);

// A process whose command line claims a guest ("-uuid UUID", as libvirt starts QEMU). Anyone
// can start a process with that argument, so a claim is only believed after trusted_qemu().
struct QemuCandidate {
  int pid = 0;
  std::vector<std::uint32_t> uids;  // real, effective, saved and filesystem uid (status "Uid:")
  std::string exe;                  // the executable's path (readlink of /proc/PID/exe)
  std::optional<std::uint32_t> exe_owner;  // owner and mode of the executable file itself
  std::uint32_t exe_mode = 0;
  friend bool operator==(const QemuCandidate&, const QemuCandidate&) = default;
};

// Every process claiming a guest: UUID (lower case) -> candidates, in PID order. Processes that
// vanish or cannot be read while scanning are skipped.
std::map<std::string, std::vector<QemuCandidate>> find_qemu_candidates(const std::string& procfs);

// Why `c` cannot be the guest's QEMU, or "" when it can: every one of its uids must be one QEMU
// runs as (`qemu_uids`: root, the hypervisor's QEMU user, a domain's DAC label, the session
// user), and its executable a QEMU binary ("qemu-system-*" or "qemu-kvm") owned by root and
// writable by no one else, so neither another user's process nor a copied binary passes.
std::string untrusted_reason(const QemuCandidate& c, const std::vector<std::uint32_t>& qemu_uids);

// The uids QEMU may run as on this host whatever the domain: root, and the users libvirt's
// packages create for it ("libvirt-qemu" on Debian, "qemu" on Fedora) where they exist.
std::vector<std::uint32_t> default_qemu_uids();

// Memory and KSM figures of process `pid`; parts that cannot be read are left unset. nullopt
// when the process is gone.
std::optional<QemuProcess> read_qemu_process(const std::string& procfs, int pid,
                                             std::uint64_t page_size_bytes);

}  // namespace memtide::collectors
