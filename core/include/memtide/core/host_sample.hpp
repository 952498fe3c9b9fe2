// Plain value structs for one reading of the host's memory state. Units are in the field names;
// memory is always in bytes (the kernel's KiB and page counts are converted by the parsers),
// times in seconds, ratios in [0, 1]. `std::optional` marks a figure the running kernel may not
// provide; absence is "unavailable", never an error.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace memtide {

// /proc/meminfo. The required fields exist on every kernel memtide supports (3.14+).
struct MemInfo {
  std::uint64_t total_bytes = 0;        // MemTotal
  std::uint64_t free_bytes = 0;         // MemFree
  std::uint64_t available_bytes = 0;    // MemAvailable: the kernel's estimate of what can be
                                        // allocated without swapping (includes page cache)
  std::uint64_t buffers_bytes = 0;      // Buffers
  std::uint64_t cached_bytes = 0;       // Cached
  std::uint64_t swap_cached_bytes = 0;  // SwapCached
  std::uint64_t swap_total_bytes = 0;   // SwapTotal
  std::uint64_t swap_free_bytes = 0;    // SwapFree
  std::optional<std::uint64_t> active_anon_bytes;         // Active(anon)
  std::optional<std::uint64_t> inactive_anon_bytes;       // Inactive(anon)
  std::optional<std::uint64_t> active_file_bytes;         // Active(file)
  std::optional<std::uint64_t> inactive_file_bytes;       // Inactive(file)
  std::optional<std::uint64_t> unevictable_bytes;         // Unevictable
  std::optional<std::uint64_t> mlocked_bytes;             // Mlocked
  std::optional<std::uint64_t> dirty_bytes;               // Dirty
  std::optional<std::uint64_t> writeback_bytes;           // Writeback
  std::optional<std::uint64_t> anon_pages_bytes;          // AnonPages
  std::optional<std::uint64_t> mapped_bytes;              // Mapped
  std::optional<std::uint64_t> shmem_bytes;               // Shmem
  std::optional<std::uint64_t> slab_reclaimable_bytes;    // SReclaimable (KReclaimable on 4.20+
                                                          // is a superset; we keep SReclaimable)
  std::optional<std::uint64_t> slab_unreclaimable_bytes;  // SUnreclaim
  std::optional<std::uint64_t> page_tables_bytes;         // PageTables
  std::optional<std::uint64_t> commit_limit_bytes;        // CommitLimit
  std::optional<std::uint64_t> committed_as_bytes;        // Committed_AS
  std::optional<std::uint64_t> anon_huge_pages_bytes;     // AnonHugePages (THP backing anon memory)
  std::optional<std::uint64_t> hugepages_total;           // HugePages_Total (count of pages)
  std::optional<std::uint64_t> hugepages_free;            // HugePages_Free (count of pages)
  std::optional<std::uint64_t> hugepage_size_bytes;       // Hugepagesize
  std::optional<std::uint64_t> hugetlb_bytes;             // Hugetlb (4.16+)

  friend bool operator==(const MemInfo&, const MemInfo&) = default;
};

// /proc/vmstat counters that matter for memory pressure. Monotonic since boot; rates are derived
// by policy/ from two samples. Page counts are converted to bytes with the host page size.
struct VmStat {
  std::uint64_t page_faults_total = 0;     // pgfault
  std::uint64_t major_faults_total = 0;    // pgmajfault
  std::uint64_t swap_in_bytes_total = 0;   // pswpin (0 when the kernel has no swap support)
  std::uint64_t swap_out_bytes_total = 0;  // pswpout (0 when the kernel has no swap support)
  std::optional<std::uint64_t> scan_kswapd_bytes_total;   // pgscan_kswapd
  std::optional<std::uint64_t> scan_direct_bytes_total;   // pgscan_direct
  std::optional<std::uint64_t> steal_kswapd_bytes_total;  // pgsteal_kswapd
  std::optional<std::uint64_t> steal_direct_bytes_total;  // pgsteal_direct
  std::optional<std::uint64_t> allocstall_total;  // allocstall, or the sum of allocstall_* (4.10+)
  std::optional<std::uint64_t> workingset_refault_bytes_total;  // workingset_refault or the sum
                                                                // of its _anon/_file split (5.9+)
  std::optional<std::uint64_t> oom_kills_total;                 // oom_kill (4.13+)

  friend bool operator==(const VmStat&, const VmStat&) = default;
};

// One line of a /proc/pressure/* file.
struct PressureLine {
  double avg10_ratio = 0;  // share of wall time stalled, averaged over 10 s, in [0, 1]
  double avg60_ratio = 0;
  double avg300_ratio = 0;
  double total_seconds = 0;  // cumulative stall time since boot

  friend bool operator==(const PressureLine&, const PressureLine&) = default;
};

// /proc/pressure/{memory,io,cpu}. `full` is absent for cpu on kernels before 5.13.
struct Pressure {
  PressureLine some;
  std::optional<PressureLine> full;

  friend bool operator==(const Pressure&, const Pressure&) = default;
};

// One row of /proc/swaps.
struct SwapDevice {
  std::string path;  // octal escapes (\040 for space) decoded
  std::string type;  // "partition" or "file"
  std::uint64_t size_bytes = 0;
  std::uint64_t used_bytes = 0;
  int priority = 0;

  friend bool operator==(const SwapDevice&, const SwapDevice&) = default;
};

struct HostSample {
  MemInfo meminfo;
  VmStat vmstat;
  std::optional<Pressure> psi_memory;  // unavailable without CONFIG_PSI (or psi=0)
  std::optional<Pressure> psi_io;
  std::optional<Pressure> psi_cpu;
  std::optional<std::vector<SwapDevice>> swaps;  // unavailable without CONFIG_SWAP
  // Anonymous transparent huge pages that are only partly mapped (Linux 6.12+, summed over the
  // sizes in /sys/kernel/mm/transparent_hugepage/hugepages-*/stats/nr_anon_partially_mapped), in
  // bytes of whole huge pages. A balloon that takes 4 KiB pages out of a huge page leaves it
  // partly mapped: the pages it freed return to the host only when the kernel splits the huge
  // page, and MemAvailable does not count them meanwhile.
  std::optional<std::uint64_t> thp_partially_mapped_bytes;

  friend bool operator==(const HostSample&, const HostSample&) = default;
};

}  // namespace memtide
