// Hypervisor over one libvirt connection: the inventory of its active domains, their
// statistics and QEMU processes, and their memory sizes. It composes the parts that do one job
// each: the connection and its events (libvirt_connection.hpp), reading statistics records
// (src/libvirt_stats.hpp), reading a domain's definition and resizing it (src/libvirt_domain.hpp),
// and finding QEMU processes (qemu_process.hpp).
//
// Threads: collect() and set_memory_size() must be called from one thread at a time (a
// hypervisor worker); they make blocking libvirt calls, so the caller bounds their duration
// (see hypervisor_worker.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <memtide/collectors/domain_xml.hpp>
#include <memtide/collectors/hypervisor.hpp>
#include <memtide/collectors/libvirt_connection.hpp>
#include <memtide/core/disk_read_schedule.hpp>

namespace memtide::collectors {

struct LibvirtOptions : ConnectionOptions {
  std::chrono::milliseconds relist_interval{60'000};
  std::uint32_t stats_period_s = 5;  // set on guests whose statistics are disabled; 0: never
  std::string procfs = "/proc";      // where QEMU processes are looked up
  std::uint64_t page_size_bytes = 4096;
  // A transient domain's virtio-mem boot sizes (what a restore returns its devices to) come from
  // memtide's record in its live metadata (domain_xml.hpp: kBootNamespace). With none recorded,
  // memtided (`record_boot_sizes`) takes the sizes it first sees and records them, so a
  // restarted memtided and the unit's safety net know them after memtided died; a client that
  // does not record (memtidectl restore) restores such a device to its full size rather than
  // leave the guest short of memory it may have booted with.
  bool record_boot_sizes = false;
  // When a domain's disk read counters are asked (disk_read_schedule.hpp).
  std::chrono::milliseconds disk_reads_follow = kDiskReadsFollow;
  std::chrono::milliseconds disk_reads_interval = kDiskReadsInterval;
};

struct BalloonFigures;
struct BootSizes;

class LibvirtHypervisor final : public Hypervisor {
 public:
  explicit LibvirtHypervisor(LibvirtOptions options);
  ~LibvirtHypervisor() override;
  LibvirtHypervisor(const LibvirtHypervisor&) = delete;
  LibvirtHypervisor& operator=(const LibvirtHypervisor&) = delete;

  using Hypervisor::collect;
  Result<std::vector<VmSample>> collect(std::int64_t monotonic_ms,
                                        const ProcessReadHints& hints) override;
  Result<std::uint64_t> set_memory_size(const std::string& uuid, std::uint64_t target_bytes,
                                        std::uint64_t floor_bytes) override;

  // Opens the connection now, if it is not open (collect opens it when needed). Lets a caller
  // tell the connection's cost (with the test driver, libvirt parsing every domain definition
  // in-process) from the first collection's.
  Status connect(std::int64_t monotonic_ms);
  bool connected() const { return connection_.open(); }
  std::uint64_t connects_total() const { return connection_.connects_total(); }
  // Domain events received (lifecycle and metadata changes), for tests.
  std::uint64_t domain_events_total() const { return connection_.events_total(); }
  std::size_t inventory_size() const { return inventory_.size(); }
  // Domains whose balloon statistics were asked of libvirt, summed over collections (each one
  // costs libvirtd a query to QEMU), for tests and benchmarks.
  std::uint64_t balloon_queries_total() const { return balloon_queries_total_; }
  // The same for their disks' read counters (disk_reads_follow says when).
  std::uint64_t disk_queries_total() const { return disk_queries_total_; }
  // The uuids whose statistics period this instance set (for tests and the daemon's report).
  const std::vector<std::string>& stats_period_set_on() const { return stats_period_set_on_; }

 private:
  struct Domain;
  struct StatsRecords;

  // Opens the connection if needed; on a new one, forgets what events would have told.
  Status ensure_connected(std::int64_t monotonic_ms);
  // Asks in one call for the balloon group of those domains in `all` whose balloon statistics
  // are due (`uuids`: theirs, in the same order); their records go to `due`.
  Status ask_due_balloons(const StatsRecords& all, const std::vector<std::string>& uuids,
                          std::int64_t monotonic_ms, StatsRecords& due);
  // Asks in one call for the disk read counters of those domains in `vms` (their records in
  // `all`, in the same order) whose balloon statistics were asked at this collection and whose
  // disk reads are due (DiskReadSchedule), into their samples.
  Status ask_due_disk_reads(const StatsRecords& all, std::vector<VmSample>& vms,
                            std::int64_t monotonic_ms, bool host_near_reserve);
  void apply_events();
  Status relist();
  void load_facts(virDomainPtr dom, Domain& d);
  // Finds the QEMU process of each domain not yet searched, and makes its reader (starting
  // from the VmSwap the search read, under `hints`).
  void find_processes(const ProcessReadHints& hints);
  // Reads each listed domain's QEMU process into its sample.
  void read_processes(std::vector<VmSample>& vms, const ProcessReadHints& hints);
  // Whether `d`'s balloon statistics are asked for at this collection: never asked yet, a
  // balloon change reported by QEMU, a balloon being followed after a command, or the time
  // the guest's next report is expected (schedule_balloon).
  static bool balloon_due(const Domain& d, std::int64_t monotonic_ms);
  // When `d`'s balloon statistics, just asked for, are next due.
  void schedule_balloon(Domain& d, std::int64_t monotonic_ms) const;
  // `state_params`: the domain's record with the state group; `balloon_params`: its record with
  // the balloon group when that was asked in bulk (nullptr: not asked at this collection).
  VmSample sample_from_record(virDomainPtr dom, std::string uuid, const void* state_params,
                              int n_state, const void* balloon_params, int n_balloon,
                              std::int64_t monotonic_ms);
  // What the domain's XML says, into `vm`.
  void add_facts(virDomainPtr dom, Domain& d, VmSample& vm, std::int64_t monotonic_ms);
  // Sorts `vms` by name (then UUID) in place, reusing the last order when the records came
  // alike.
  void sort_by_name(std::vector<VmSample>& vms);
  void classify_stats(virDomainPtr dom, Domain& d, VmSample& vm, std::int64_t monotonic_ms);

  LibvirtOptions options_;
  LibvirtConnection connection_;
  std::int64_t last_relist_ms_ = INT64_MIN;
  bool bulk_balloon_supported_ = true;  // false once the driver returned no balloon group

  std::unordered_map<std::string, Domain> inventory_;  // by uuid
  std::uint64_t collections_ = 0;     // collect() calls, to mark the domains each one saw
  std::int64_t last_collect_ms_ = 0;  // the last collect()'s clock, for set_memory_size
  std::uint64_t balloon_queries_total_ = 0;
  std::uint64_t disk_queries_total_ = 0;
  // The order of the last collection's records (UUIDs), and the positions that sort them by
  // name: a collection in the same order as the last one is sorted in O(N).
  std::vector<std::string> record_order_;
  std::vector<std::size_t> by_name_;
  std::vector<bool> placed_;  // sort_by_name's marks, kept to reuse their memory
  std::vector<std::string> stats_period_set_on_;
};

}  // namespace memtide::collectors
