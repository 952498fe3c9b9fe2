// memtide's own page scanner, run on a thread of its own: it reads the guest RAM of every VM
// that allows it, one VM pass at a time, within a CPU budget (share of one core, measured as the
// thread's CPU time) and a read-rate budget, and keeps per-VM figures plus an estimate across
// all scanned VMs of what KSM would save. The tick hands it the VMs to scan and reads the
// results; neither ever waits for a pass (results are swapped in under a mutex when a pass ends).
//
// It spends its CPU only where the estimate can change. A VM is passed over every
// ksm.scan.interval while its figures move; once the zero and duplicate shares of its last
// kConvergePasses passes lie within ksm.scan.converged_width, only every converged_interval.
// Meanwhile it is rescanned at once when the answer may have changed: its QEMU process
// restarted, its resident memory, size or KSM-merged memory moved by more than wake_on_change
// of its resident memory, a probe of its sample pages (every probe_interval, two small reads a
// page) found its content moved, or the host came near its reserve (merging may matter then:
// converged VMs are passed over at the fast interval). So a content change reaches the estimate
// within probe_interval plus one pass.
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

// What may show that a VM's content moved, read each tick (0: unknown).
struct ScanSignals {
  std::uint64_t rss_bytes = 0;          // its QEMU process's resident memory
  std::uint64_t size_bytes = 0;         // the balloon's current size (virtio-mem included)
  std::uint64_t ksm_merging_bytes = 0;  // its memory KSM has merged (ksm_stat)
  friend bool operator==(const ScanSignals&, const ScanSignals&) = default;
};

struct ScanTarget {
  std::string uuid;  // the VM's key (VmSample::key())
  std::string name;
  int pid = 0;                  // the QEMU process; 0 when unknown
  std::uint64_t max_bytes = 0;  // sizes the hash sample
  std::string refused;          // non-empty: the VM must not be read, and this is its status
  ScanSignals signals;          // not part of the VM's identity (see same_vm)
  friend bool operator==(const ScanTarget&, const ScanTarget&) = default;
};

// Passes whose zero and duplicate shares must agree for a VM's figures to count as converged.
inline constexpr std::size_t kConvergePasses = 3;
// Sample pages a probe re-reads at most.
inline constexpr std::size_t kProbePages = 256;
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

  // The VMs to scan from now on (figures of VMs no longer listed are dropped), their signals,
  // the budget, and whether the host is near its reserve (converged VMs are then passed over at
  // the fast interval).
  void update(std::vector<ScanTarget> targets, const config::KsmScanSection& settings,
              bool host_near_reserve = false);

  struct View {
    std::map<std::string, VmPageScan> vms;  // by uuid, for every current target
    std::optional<KsmEstimate> estimate;    // none until a VM has been scanned
    // Rescans woken early, by reason ("restarted", "resident", "resized", "ksm", "content").
    std::map<std::string, std::uint64_t> wakes_total;
    std::uint64_t probes_total = 0;
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
    // The schedule: the last passes' (zero, duplicate) shares of resident memory, whether they
    // converged, and why the next pass comes early ("" when it does not).
    std::vector<std::pair<double, double>> shares;
    bool converged = false;
    std::string wake;
    int pid = 0;                 // the process the last pass read
    ScanSignals signals;         // as they were when the last pass started
    std::int64_t probed_ms = 0;  // steady clock, the last probe (or pass)
  };
  void run();
  // Whether `uuid` is listed and may be scanned. Called with mutex_ held.
  bool scannable(const std::string& uuid) const;
  // The listed VM whose next pass is due first (never scanned, or woken, first), with when in
  // `due_ms` (steady clock); null when none may be scanned. Called with mutex_ held.
  const ScanTarget* next_target(std::int64_t& due_ms) const;
  // When `s`'s next pass is due. Called with mutex_ held.
  std::int64_t due_ms(const Scanned& s) const;
  // Wakes the rescan of converged VMs whose signals moved. Called with mutex_ held.
  void check_signals();
  // Probes the converged VM whose probe is due first, if one is by `now`; true when it did.
  // Called with `lock` held, released while reading.
  bool probe_due(std::unique_lock<std::mutex>& lock, std::int64_t now, std::int64_t& next_ms);
  // Carries `old`'s schedule into `fresh` (a pass just ended) and judges convergence.
  void reschedule(Scanned& fresh, const Scanned* old, const ScanTarget& target) const;
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
  std::uint64_t probes_total_ = 0;
  std::map<std::string, std::uint64_t> wakes_total_;
  bool host_near_reserve_ = false;
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
// `host_near_reserve`: MemAvailable within twice the host's reserve, or swapping forecast.
void attach_page_scans(PageScanWorker* worker, Snapshot& snapshot,
                       const config::KsmScanSection& settings, bool host_near_reserve = false);

// Whether `a` and `b` name the same VMs to scan, signals aside.
bool same_vms(const std::vector<ScanTarget>& a, const std::vector<ScanTarget>& b);

}  // namespace memtide::collectors
