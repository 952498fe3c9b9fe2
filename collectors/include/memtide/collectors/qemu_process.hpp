// The host's view of a guest: its QEMU process's resident and swapped memory and KSM figures.
// Parsers are pure; the readers take the procfs root like HostSource does.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/core/ksm_sample.hpp>
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

// What /proc/PID/ksm_stat says of a process while KSM holds nothing (rmap items, merged and
// zero pages and profit all 0), with the fields the kernel of `host` prints: merging pages and
// profit with general_profit (6.5+), zero pages with the host's ksm_zero_pages (6.10+).
// nullopt for a kernel without general_profit.
std::optional<ProcessKsmStat> empty_process_ksm_stat(const KsmSample& host);

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
  // VmRSS and VmSwap from the same read of status, and the process's statm opened through the
  // same directory descriptor, so that the process's first read (a QemuProcessReader made from
  // this candidate) opens and reads nothing again, and its statm is the very process whose
  // uids and executable were checked. Figures are unset when status had none or was unreadable;
  // `statm` is null or holds -1 when it could not be opened.
  std::optional<std::uint64_t> rss_bytes;
  std::optional<std::uint64_t> swap_bytes;
  std::shared_ptr<const OwnedFd> statm;
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

// Memory and KSM figures of process `pid`, every file read afresh; parts that cannot be read
// are left unset. nullopt when the process is gone.
std::optional<QemuProcess> read_qemu_process(const std::string& procfs, int pid,
                                             std::uint64_t page_size_bytes);

// /proc/PID/statm: the resident set (its second field, in pages) in bytes: the same counters
// VmRSS in /proc/PID/status sums, at a tenth of the kernel's cost.
Result<std::uint64_t> parse_process_statm(std::string_view text, std::uint64_t page_size_bytes,
                                          std::string_view origin);

// What the host's own figures say about every process's files at one instant, so that a
// QemuProcessReader skips reads whose answer is already known (and whether the host is near its
// reserve, for the libvirt collector's disk reads). Collector fills it from /proc/meminfo,
// /proc/vmstat and /sys/kernel/mm/ksm just before the VMs are collected. The default reads
// everything every time.
struct ProcessReadHints {
  // false: the host has no swap in use (SwapTotal == SwapFree), so no process has any.
  bool swap_in_use = true;
  // Advances whenever swap traffic (pswpin + pswpout) or the swap in use changed since the
  // previous collection: a process's VmSwap cannot change without one of them. nullopt: read
  // VmSwap every time.
  std::optional<std::uint64_t> swap_epoch;
  // Advances whenever KSM's state or host-wide counts changed (run, pages_shared, pages_sharing,
  // ksm_zero_pages, full_scans): a process's merged and zero pages cannot change otherwise. Its
  // rmap_items (and so its profit) also move while ksmd scans it; they are read again at the
  // end of each full scan at the latest. nullopt: read ksm_stat every time.
  std::optional<std::uint64_t> ksm_epoch;
  // Set when KSM holds nothing host-wide: no page shared, sharing or merged with the zero page,
  // and general_profit 0 (savings minus every rmap item's cost, so no process has an rmap item
  // either). Every process's ksm_stat then reads all zero: this is that reading
  // (empty_process_ksm_stat), taken without reading the files. Unset on kernels without
  // general_profit, where rmap items cannot be known to be none.
  std::optional<ProcessKsmStat> ksm_all_zero;
  // MemAvailable is under twice the reserve, where shrinks come from: every guest's disk reads
  // are asked with its balloon statistics (DiskReadSchedule). True when the reserve is not known.
  bool host_near_reserve = true;
  friend bool operator==(const ProcessReadHints&, const ProcessReadHints&) = default;
};

// One guest's QEMU process, read collection after collection at the least cost that stays
// exact: /proc/PID/statm is kept open and re-read in place (a few microseconds, against some
// 20 for opening and reading /proc/PID/status); VmSwap (from status) and ksm_stat are read
// again only when `hints` say they may have changed, and their last values are kept otherwise.
// The open file belongs to this process for good, so a PID reused by another process after it
// exits reads as gone rather than as the guest. Where the file cannot be kept open (the
// descriptor limit), every read opens it anew.
class QemuProcessReader {
 public:
  QemuProcessReader(std::string procfs, int pid, std::uint64_t page_size_bytes);
  // The process `found` by find_qemu_candidates under `hints` (the same collection's): its
  // statm as the search opened it, and for the first read its VmRSS, and its VmSwap as a value
  // read under `hints` (kept while the swap epoch stays; without one, read again).
  QemuProcessReader(std::string procfs, const QemuCandidate& found, std::uint64_t page_size_bytes,
                    const ProcessReadHints& hints);

  // The process's figures now; nullopt once it has exited.
  std::optional<QemuProcess> read(const ProcessReadHints& hints);
  int pid() const { return pid_; }

 private:
  // The resident set: nullopt when the process has exited, an unset figure when unreadable.
  std::optional<std::optional<std::uint64_t>> read_rss();

  std::string base_;  // "<procfs>/<pid>"
  int pid_ = 0;
  std::uint64_t page_size_bytes_ = 0;
  std::string statm_path_;  // "<procfs>/<pid>/statm", made once rather than every tick
  std::shared_ptr<const OwnedFd> statm_;
  std::optional<std::uint64_t> first_rss_;  // VmRSS the search read, for the first read only
  // The last VmSwap and ksm_stat read (unset: unreadable), whether they were read at all, and
  // the hints' epoch at that read.
  std::optional<std::uint64_t> swap_bytes_;
  bool swap_read_ = false;
  std::uint64_t swap_epoch_ = 0;
  std::optional<ProcessKsmStat> ksm_;
  bool ksm_read_ = false;
  std::uint64_t ksm_epoch_ = 0;
};

}  // namespace memtide::collectors
