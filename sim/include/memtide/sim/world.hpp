// A model of one host and its guests, stepped in simulated seconds, honest enough to judge
// balloon policies by: every shortcut below costs someone something, and the cost is counted.
//
// A guest (inside its balloon, the memory it has):
// - unreclaimable memory: its kernel and its shmem/tmpfs/locked pages (a demand curve of its own);
// - anonymous memory (the demand curve): what does not fit goes to the guest's swap, whose size is
//   limited; what does not fit in swap either gets the guest's largest process killed (a guest
//   OOM, counted; the workload restarts after kOomRestartSeconds, its guest short of memory all
//   that time and the memory it would hold counted as lost work), unless its balloon deflates
//   itself (autodeflate);
// - page cache: fills free guest memory up to the workload's file data; the part of its file
//   working set that is not cached is re-read from disk (refaults, counted as I/O and as
//   working set evicted; re-read pages are cached again where there is room) and the guest
//   counts as short of memory;
//   re-reads through mappings are major faults, the rest (read()) show only in the guest's disk
//   reads, with its first reads;
// - optionally a virtio-mem device (GuestSpec::virtio_mem_*): resized in whole blocks, it
//   cannot unplug what the guest uses and cannot be taken back by autodeflate;
// - statistics, sampled every stats_period_s (they arrive late) and not at all while the guest
//   is starving (its balloon driver cannot run): they go stale, as the collector would report.
// A balloon command takes effect after a delay; the balloon inflates and deflates at finite
// speeds and cannot inflate past what the guest can free (partial success, counted as refused).
//
// The host:
// - its own non-VM memory (services, QEMU overhead) plus squeezes: a process or a passthrough VM
//   pinning memory for a while;
// - its page cache, which fills free RAM and is reclaimed first;
// - each guest's RAM resident on the host: pages the guest touched stay resident until the
//   balloon takes them back, or, with free page reporting, until the guest reports them free;
// - swappiness: below the low watermark kswapd reclaims, part of it by swapping guest memory out
//   (by approximate LRU age: cold pages mostly, some in use), even while page cache remains;
//   guest pages in host swap that the guest uses are swapped back in, which the guest waits for
//   (counted as pressure), and a host with memory in swap stalls (PSI);
// - a swap trickle from unrelated cgroups, which shows in the counters and costs nothing.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <memtide/core/snapshot.hpp>

namespace memtide::sim {

inline constexpr std::uint64_t MiB = 1ULL << 20;
inline constexpr std::uint64_t GiB = 1ULL << 30;
inline constexpr double kOomRestartSeconds = 60;
// A guest re-reading (or swapping in) faster than this (pages/s, whether they show as major
// faults or only as disk reads) for longer than kLongRereadSeconds while the host has its reserve
// is losing work no policy should leave it to: the target "no guest above 1,000 major faults/s
// for more than 60 s while the host is above its reserve", counting re-reads through read() too.
inline constexpr double kLongRereadPagesPerS = 1000;
inline constexpr double kLongRereadSeconds = 60;

using Curve = std::function<double(double t)>;  // bytes at second t

struct GuestSpec {
  std::string name;
  std::uint64_t max_bytes = 4 * GiB;
  std::uint64_t floor_bytes = 1 * GiB;        // policies that honour floors never go below
  std::uint32_t shares = 1000;                // weight, for the policies that use one
  std::uint64_t kernel_bytes = 128 * MiB;     // the guest kernel's own unreclaimable memory
  Curve shmem_bytes;                          // tmpfs, shmem, locked pages: unreclaimable (none if
                                              // empty)
  Curve demand_bytes;                         // anonymous memory wanted at second t
  Curve file_working_set_bytes;               // file data it re-reads (none if empty)
  std::uint64_t cache_limit_bytes = 1 * GiB;  // all the file data it has read: cache fills to it
  double cache_fill_bytes_per_s = 8.0 * MiB;
  // The share of its file reads made through mappings (mmap): only those re-reads are major
  // faults; the rest (read(), as most servers and databases do) show only as disk reads.
  double mapped_read_share = 1.0;
  std::uint64_t swap_bytes = 1 * GiB;  // the guest's own swap; 0: none (an OOM comes sooner)
  bool free_page_reporting = false;    // returns free pages to the host after about 2 s
  // The balloon deflates itself when the guest would otherwise run out of memory (virtio-balloon
  // deflate-on-oom): the guest takes back what it lacks, up to its maximum, within the second,
  // and keeps it until the next balloon command.
  bool autodeflate = false;
  // A virtio-mem device: the guest has virtio_mem_base_bytes of base memory (the balloon's range)
  // and plugs the rest of max_bytes in blocks of virtio_mem_block_bytes; 0: no device. Memory
  // above the base is resized as memtide's actuator does it (the device in whole blocks, the
  // balloon the part of a block). Unplugging moves pages but swaps nothing: blocks that hold the
  // guest's anonymous or unreclaimable memory stay plugged (a partial unplug, counted as
  // refused); and autodeflate can only give back the balloon's part, never unplugged blocks.
  std::uint64_t virtio_mem_block_bytes = 0;
  std::uint64_t virtio_mem_base_bytes = 0;
  double stats_period_s = 5;
  double start_s = 0;  // starts with its balloon at maximum (or where a policy sets it at once)
};

// A burst of non-VM memory on the host: a process, or a passthrough VM pinning its memory.
struct Squeeze {
  double start_s = 0;
  double duration_s = 0;
  std::uint64_t bytes = 0;
};

struct HostSpec {
  std::uint64_t ram_bytes = 32 * GiB;
  std::uint64_t overhead_bytes = 2 * GiB;  // host kernel, services, QEMU's own overhead
  std::uint64_t cache_limit_bytes = 1 * GiB;
  std::uint64_t swap_bytes = 16 * GiB;
  int swappiness = 60;
  double swap_trickle_bytes_per_s = 0;  // unrelated cgroups swapping at their own limits
  std::vector<Squeeze> squeezes;
  double balloon_delay_s = 1;  // command to balloon moving (libvirt, QEMU, the guest driver)
  double balloon_inflate_bytes_per_s = 256.0 * MiB;
  double balloon_deflate_bytes_per_s = 1024.0 * MiB;
  std::uint64_t reserve_bytes = 2 * GiB;  // for the score "time back above the reserve"
};

// Everything the model tracks for one guest; figures in bytes.
struct Guest {
  GuestSpec spec;
  bool running = false;
  double balloon = 0;  // the memory the guest has
  double target = 0;   // where the balloon is heading
  double pending_target = -1;
  double pending_at = 0;  // when pending_target takes effect
  bool refused = false;   // the balloon stopped short of the current target
  double anon = 0;        // anonymous memory held in guest RAM
  double swapped = 0;     // anonymous memory in the guest's swap
  double cache = 0;
  double resident = 0;      // guest RAM backed on the host (in RAM or in host swap)
  double host_swapped = 0;  // of which in host swap
  // Of host_swapped, pages kswapd took while the guest was using them (its LRU is approximate).
  double host_swapped_hot = 0;
  double oom_until = -1;        // workload restarting after an OOM kill
  double evicted = 0;           // file working set not cached now
  double pages_in_now = 0;      // pages paged in in the last second (swap-ins and re-reads)
  double rereading_since = -1;  // start of its re-reading above kLongRereadPagesPerS (-1: not)
  // Counters as the guest reports them.
  double swap_in_total = 0;
  double swap_out_total = 0;
  double major_faults_total = 0;  // pages
  double disk_read_total = 0;     // bytes read from its disks: first reads and re-reads
  // The statistics as last sampled (what libvirt shows).
  double stats_at = -1;
  double stats_unused = 0;
  double stats_cache = 0;
  double stats_usable = 0;
  double stats_swap_in = 0;
  double stats_swap_out = 0;
  double stats_major_faults = 0;
  double unreclaimable(double t) const;
  double active(double t) const;  // memory it uses now: unreclaimable + anon + working set
  // Of its pages in host swap, those it uses now: the ones kswapd took while they were in use,
  // and at least what is in swap beyond its cold pages.
  double host_swapped_in_use(double t) const;
  // Of its pages in host RAM, those it does not use now.
  double cold_in_ram(double t) const;
};

// Running totals of one simulation: the scoreboard.
struct Totals {
  double host_swap_out_bytes = 0;      // guest memory the host swapped out (not the trickle)
  double host_swap_in_bytes = 0;       // guest memory the host swapped back in (guests waited)
  double host_hot_swap_out_bytes = 0;  // of host_swap_out_bytes, pages the guest was using
  std::uint64_t guest_ooms = 0;
  double guest_pressure_seconds = 0;  // summed over guests: short of what they use
  double lost_work_byte_seconds = 0;  // memory killed workloads would hold while restarting
  double guest_swap_out_bytes = 0;
  double evicted_byte_seconds = 0;  // file working set not cached, integrated
  double refault_bytes = 0;         // re-read from disk because of it
  // Summed over guests: seconds past the first kLongRereadSeconds of re-reading above
  // kLongRereadPagesPerS while the host's MemAvailable was at or above its reserve.
  double long_reread_seconds = 0;
  double ballooned_byte_seconds = 0;
  double seconds = 0;
  std::uint64_t balloon_actions = 0;
  std::uint64_t refused_commands = 0;  // shrinks the guest could not carry out in full
  double min_available_bytes = -1;
  double reserve_recovery_seconds = 0;  // after each squeeze, until MemAvailable >= reserve
};

class World {
 public:
  World(HostSpec host, std::vector<GuestSpec> guests);

  // Advances the model by one second.
  void step();
  double now() const { return now_; }

  // A balloon command, effective after the host's balloon delay. The target is clamped to
  // [floor, maximum] when `honour_floor` (memtide's actuator does so for every command), else
  // to [kernel + shmem, maximum]. Counts as one action. Ignored for guests not running.
  void set_target(std::size_t guest, std::uint64_t bytes, bool honour_floor = true);
  void set_free_page_reporting(bool on);

  const std::vector<Guest>& guests() const { return guests_; }
  const HostSpec& host() const { return host_; }
  double host_guest_ram_bytes() const;  // guest memory in host RAM
  double host_free_bytes() const;
  double host_cache_bytes() const { return host_cache_; }
  double host_available_bytes() const;  // MemAvailable: free + page cache - low watermark
  double host_swapped_bytes() const;
  bool host_swapping_now() const { return swap_out_now_ > 0; }
  // Whether the kernel's memory PSI trigger that memtided registers ("some 150000 2000000",
  // daemon/src/pressure_trigger.cpp) fired in the last second: at least 150 ms of "some" stall
  // within the last 2 s, at most one event per 2 s window.
  bool memory_pressure_event() const { return pressure_event_; }
  const Totals& totals() const { return totals_; }

  // The figures a collector would report now: host meminfo, vmstat, memory PSI, and every
  // running guest as libvirt shows it (balloon size now; guest statistics as last sampled, with
  // their last-update time and stale once they stop for three periods).
  Snapshot snapshot() const;

 private:
  void step_balloon(Guest& g);
  void step_guest(Guest& g);
  // Deflate-on-oom (spec.autodeflate): what would not fit in memory and swap comes out of the
  // balloon first.
  void deflate_on_oom(Guest& g, double unreclaimable, double want);
  // The balloon statistics, sampled every period unless the guest is starving (its swap nearly
  // full, or restarting after an OOM): then its balloon driver does not get to report.
  void sample_stats(Guest& g, double room, double anon, double swapped);
  // One second of the host: guest pages in host swap that are in use fault back in, kswapd
  // reclaims below the low watermark, and memory PSI accounts the stalls.
  void step_host();
  // Faults back what guests use from host swap, within the swap bandwidth. Returns the bytes
  // swapped in.
  double swap_in_used_pages();
  // Below the low watermark kswapd reclaims up to twice it: page cache, and by swappiness a share
  // of guest memory swapped out even while cache remains (all of it once cache is gone). Returns
  // the bytes swapped out.
  double reclaim_to_watermark(double free, double watermark, double swap_in);
  void account_pressure(double swap_in, double swap_out);
  // Counts the guests re-reading for long while the host has its reserve (Totals).
  void account_long_rereads(double available);
  double nonvm_bytes() const;

  HostSpec host_;
  std::vector<Guest> guests_;
  double now_ = 0;
  double host_cache_ = 0;
  double swap_out_now_ = 0;
  double host_swap_out_total_ = 0;  // including the trickle (what vmstat shows)
  double host_swap_in_total_ = 0;
  double psi_some_total_s_ = 0;
  double psi_full_total_s_ = 0;
  double psi_some_avg10_ = 0;
  double psi_full_avg10_ = 0;
  double psi_some_last_s_ = 0;  // "some" stall in the second before this one
  double last_pressure_event_ = -1e9;
  bool pressure_event_ = false;
  std::vector<double> squeeze_recovered_;  // per squeeze: -1 until MemAvailable >= reserve
  Totals totals_;
};

}  // namespace memtide::sim
