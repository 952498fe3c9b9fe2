// memtide's own page scanner, run on a thread of its own: it reads the guest RAM of every VM
// that allows it, one VM pass at a time, within a CPU budget (share of one core, measured as the
// thread's CPU time) and a read-rate budget, and keeps per-VM figures plus an estimate across
// all scanned VMs of what KSM would save. The tick hands it the VMs to scan and reads the
// results; neither ever waits for a pass (results are swapped in under a mutex when a pass ends).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/page_scanner.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/page_scan.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::collectors {

struct ScanTarget {
  std::string uuid;  // the VM's key (VmSample::key())
  std::string name;
  int pid = 0;                  // the QEMU process; 0 when unknown
  std::uint64_t max_bytes = 0;  // sizes the hash sample
  std::string refused;          // non-empty: the VM must not be read, and this is its status
  friend bool operator==(const ScanTarget&, const ScanTarget&) = default;
};

// The estimate across scanned VMs keeps at most about this many hashes (8 bytes each): an exact
// count on small hosts, a hash-value sample of the same memory size on large ones.
inline constexpr std::uint64_t kMaxSampledHashes = 1ULL << 21;

class PageScanWorker {
 public:
  PageScanWorker(std::string procfs, config::KsmScanSection settings);
  // Stops the thread; a pass in progress is abandoned at its next batch.
  ~PageScanWorker();
  PageScanWorker(const PageScanWorker&) = delete;
  PageScanWorker& operator=(const PageScanWorker&) = delete;

  // The VMs to scan from now on (figures of VMs no longer listed are dropped), and the budget.
  void update(std::vector<ScanTarget> targets, const config::KsmScanSection& settings);

  struct View {
    std::map<std::string, VmPageScan> vms;  // by uuid, for every current target
    std::optional<KsmEstimate> estimate;    // none until a VM has been scanned
  };
  View view() const;

 private:
  struct Scanned {
    VmPageScan figures;
    // Non-zero pages' hashes <= below; immutable and shared, so the estimate is computed from
    // them without holding the mutex.
    std::shared_ptr<const std::vector<std::uint64_t>> sampled_hashes;
    std::uint64_t below = 0;
    std::uint64_t zero_pages = 0;
    std::uint64_t resident_pages = 0;
    std::uint64_t candidate_pages = 0;
    bool has_figures = false;      // a pass succeeded (the figures may be from an earlier one)
    std::int64_t finished_ms = 0;  // steady clock, end of the last pass, failed or not
  };
  void run();
  // Whether `uuid` is listed and may be scanned. Called with mutex_ held.
  bool scannable(const std::string& uuid) const;
  // The listed VM whose last pass is oldest (never scanned first), with the end of that pass in
  // `finished_ms` (-1: never); null when none may be scanned. Called with mutex_ held.
  const ScanTarget* oldest_target(std::int64_t& finished_ms) const;
  // One pass over `target`'s guest RAM, without mutex_ held.
  Scanned scan_one(const ScanTarget& target, std::uint64_t below, std::size_t max_hashes);
  // Sleeps until the budget allows `read` bytes and the thread's CPU since the pass started;
  // false when stopping.
  bool pace(std::uint64_t read);
  // Rebuilds estimate_ from scanned_. Called with `lock` held; the duplicate count (a sort of up
  // to kMaxSampledHashes) runs with it released, so view() and update() never wait for it.
  void aggregate(std::unique_lock<std::mutex>& lock);

  std::string procfs_;
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool dirty_ = false;  // scanned_ changed since estimate_ was computed
  config::KsmScanSection settings_;
  std::vector<ScanTarget> targets_;
  // targets_ by uuid: whether it may be scanned (not refused). A pass looks a VM up here, so
  // its bookkeeping stays O(1) whatever the number of VMs.
  std::unordered_map<std::string, bool> listed_;
  std::uint64_t targets_generation_ = 0;    // advances whenever targets_ changes
  std::map<std::string, Scanned> scanned_;  // by uuid
  std::optional<KsmEstimate> estimate_;
  std::uint64_t read_bytes_total_ = 0;
  double cpu_seconds_total_ = 0;
  std::uint64_t passes_total_ = 0;
  // Thread-only state.
  std::map<std::string, collectors::PageScanner> scanners_;  // volatility samples, by uuid
  std::uint64_t scanners_generation_ = 0;  // targets_generation_ scanners_ was pruned for
  double pass_started_wall_ = 0;
  double pass_started_cpu_ = 0;
  std::thread thread_;
};

// Fills in the page-scan figures of `snapshot`'s VMs and the cross-VM estimate from `worker`,
// and hands it the VMs to scan from now on (each VM's opt-out respected: nosharepages or
// scan-disabled metadata). `worker` null (ksm.scan.enabled false): every VM's status is "off".
// While libvirt is down the VM list is the last good one, so the scanner keeps its targets.
void attach_page_scans(PageScanWorker* worker, Snapshot& snapshot,
                       const config::KsmScanSection& settings);

}  // namespace memtide::collectors
