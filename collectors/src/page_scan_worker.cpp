#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <pthread.h>
#include <time.h>

#include <memtide/collectors/page_scan_worker.hpp>
#include <memtide/core/clock.hpp>

namespace memtide::collectors {

namespace {

double seconds_of(clockid_t clock) {
  timespec ts{};
  clock_gettime(clock, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double wall_now() {
  return seconds_of(CLOCK_MONOTONIC);
}

double thread_cpu_now() {
  return seconds_of(CLOCK_THREAD_CPUTIME_ID);
}

// Hashes at most this are kept, so the sample over every target's memory stays within
// kMaxSampledHashes.
std::uint64_t sample_threshold(const std::vector<ScanTarget>& targets, std::uint64_t page) {
  std::uint64_t pages = 0;
  for (const auto& t : targets) {
    pages += t.refused.empty() ? t.max_bytes / page : 0;
  }
  if (pages <= kMaxSampledHashes) {
    return std::numeric_limits<std::uint64_t>::max();
  }
  const double share = static_cast<double>(kMaxSampledHashes) / static_cast<double>(pages);
  return static_cast<std::uint64_t>(share *
                                    static_cast<double>(std::numeric_limits<std::uint64_t>::max()));
}

}  // namespace

PageScanWorker::PageScanWorker(std::string procfs, config::KsmScanSection settings)
    : procfs_(std::move(procfs)), settings_(settings), thread_([this] { run(); }) {}

PageScanWorker::~PageScanWorker() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

bool same_vms(const std::vector<ScanTarget>& a, const std::vector<ScanTarget>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](const ScanTarget& x, const ScanTarget& y) {
                      return x.uuid == y.uuid && x.name == y.name && x.pid == y.pid &&
                             x.max_bytes == y.max_bytes && x.refused == y.refused;
                    });
}

void PageScanWorker::update(std::vector<ScanTarget> targets, const config::KsmScanSection& settings,
                            bool host_near_reserve) {
  const std::lock_guard lock(mutex_);
  const bool changed = !same_vms(targets, targets_) || settings != settings_;
  settings_ = settings;
  const bool was_near = std::exchange(host_near_reserve_, host_near_reserve);
  if (!changed) {
    // The signals change every tick; they only wake a rescan, never the estimate's rebuild.
    for (std::size_t i = 0; i < targets.size(); ++i) {
      targets_[i].signals = targets[i].signals;
    }
    check_signals();
    if (was_near != host_near_reserve) {
      wake_.notify_all();
    }
    return;
  }
  targets_ = std::move(targets);
  ++targets_generation_;
  listed_.clear();
  for (const auto& t : targets_) {
    listed_[t.uuid] = t.refused.empty();
  }
  for (auto it = scanned_.begin(); it != scanned_.end();) {
    it = scannable(it->first) ? std::next(it) : scanned_.erase(it);
  }
  check_signals();
  dirty_ = true;  // the scanning thread recomputes the estimate
  wake_.notify_all();
}

void PageScanWorker::check_signals() {
  bool woke = false;
  for (const auto& t : targets_) {
    const auto it = scanned_.find(t.uuid);
    if (it == scanned_.end() || !it->second.has_figures || !it->second.wake.empty() ||
        !t.refused.empty()) {
      continue;
    }
    Scanned& s = it->second;
    // Moved by more than the share of the memory the last pass read.
    const double limit = settings_.wake_on_change * static_cast<double>(std::max<std::uint64_t>(
                                                        s.figures.resident_bytes, 1ULL << 20));
    const auto moved = [limit](std::uint64_t then, std::uint64_t now) {
      return then != 0 && now != 0 &&
             std::abs(static_cast<double>(now) - static_cast<double>(then)) > limit;
    };
    std::string kind;
    if (t.pid != 0 && s.pid != 0 && t.pid != s.pid) {
      kind = "restarted";
      s.wake = "its QEMU process restarted";
    } else if (moved(s.signals.rss_bytes, t.signals.rss_bytes)) {
      kind = "resident";
      s.wake = "its resident memory moved from " + std::to_string(s.signals.rss_bytes >> 20) +
               " to " + std::to_string(t.signals.rss_bytes >> 20) + " MiB";
    } else if (moved(s.signals.size_bytes, t.signals.size_bytes)) {
      kind = "resized";
      s.wake = "resized from " + std::to_string(s.signals.size_bytes >> 20) + " to " +
               std::to_string(t.signals.size_bytes >> 20) + " MiB";
    } else if (moved(s.signals.ksm_merging_bytes, t.signals.ksm_merging_bytes)) {
      kind = "ksm";
      s.wake = "KSM's merged memory of it moved from " +
               std::to_string(s.signals.ksm_merging_bytes >> 20) + " to " +
               std::to_string(t.signals.ksm_merging_bytes >> 20) + " MiB";
    } else {
      continue;
    }
    ++wakes_total_[kind];
    woke = true;
  }
  if (woke) {
    wake_.notify_all();
  }
}

bool PageScanWorker::scannable(const std::string& uuid) const {
  const auto it = listed_.find(uuid);
  return it != listed_.end() && it->second;
}

PageScanWorker::View PageScanWorker::view() const {
  std::lock_guard lock(mutex_);
  View v;
  // The reasons all converged (or settled but differing) VMs share, made once a tick.
  const std::string width = std::to_string(std::lround(settings_.converged_width * 100)) + " %";
  const std::string passes = std::to_string(kConvergePasses);
  const std::string agree = "its last " + passes + " passes agree within " + width;
  const std::string differ = "its last passes differ by more than " + width;
  for (const auto& t : targets_) {
    VmPageScan& f = v.vms[t.uuid];
    if (!t.refused.empty()) {
      f.status = t.refused;
    } else if (const auto it = scanned_.find(t.uuid); it != scanned_.end()) {
      const Scanned& s = it->second;
      f = s.figures;
      if (!s.has_figures) {
        continue;
      }
      if (!s.wake.empty()) {
        f.schedule = "rescanning";
        f.schedule_reason = s.wake;
      } else if (s.converged && host_near_reserve_) {
        f.schedule = "rescanning";
        f.schedule_reason = "the host is near its reserve: merging may matter";
      } else if (s.converged) {
        f.schedule = "converged";
        f.schedule_reason = agree;
      } else {
        f.schedule = "converging";
        f.schedule_reason = s.shares.size() < kConvergePasses
                                ? std::to_string(s.shares.size()) + " of " + passes + " passes"
                                : differ;
      }
    }
  }
  v.wakes_total = wakes_total_;
  v.probes_total = probes_total_;
  v.estimate = estimate_;
  if (v.estimate) {
    v.estimate->read_bytes_total = read_bytes_total_;
    v.estimate->cpu_seconds_total = cpu_seconds_total_;
    v.estimate->passes_total = passes_total_;
    v.estimate->probes_total = probes_total_;
    v.estimate->wakes_total = wakes_total_;
  }
  return v;
}

void PageScanWorker::aggregate(std::unique_lock<std::mutex>& lock) {
  dirty_ = false;
  const std::uint64_t page = collectors::system_page_size();
  KsmEstimate e;
  e.page_size_bytes = page;
  std::uint64_t zero = 0;
  std::uint64_t resident = 0;
  std::uint64_t below = std::numeric_limits<std::uint64_t>::max();
  std::vector<std::shared_ptr<const std::vector<std::uint64_t>>> held;
  for (const auto& [uuid, s] : scanned_) {
    if (!s.has_figures) {
      continue;
    }
    ++e.vms;
    e.candidate_bytes += s.candidate_pages * page;
    resident += s.resident_pages;
    zero += s.zero_pages;
    below = std::min(below, s.below);
    held.push_back(s.sampled_hashes);
  }
  if (e.vms == 0) {
    estimate_.reset();
    return;
  }
  lock.unlock();
  std::vector<const std::vector<std::uint64_t>*> samples;
  samples.reserve(held.size());
  for (const auto& h : held) {
    samples.push_back(h.get());
  }
  std::uint64_t sampled = 0;
  const std::uint64_t duplicates = collectors::sampled_duplicates(samples, below, sampled);
  const std::uint64_t nonzero = resident - zero;
  // Every zero page merges into one; the other duplicates in the share the sample shows.
  const double other = sampled > 0
                           ? static_cast<double>(nonzero) * static_cast<double>(duplicates) /
                                 static_cast<double>(sampled)
                           : 0.0;
  e.resident_bytes = resident * page;
  e.zero_bytes = zero * page;
  e.savings_bytes =
      ((zero > 0 ? zero - 1 : 0) + static_cast<std::uint64_t>(std::llround(other))) * page;
  lock.lock();
  if (!dirty_) {
    estimate_ = e;  // else the VMs changed meanwhile: the caller's loop computes it again
  }
}

bool PageScanWorker::pace(std::uint64_t read) {
  std::unique_lock lock(mutex_);
  for (;;) {
    if (dirty_) {
      aggregate(lock);  // VMs changed during a long pass: keep the estimate current
    }
    if (stopping_) {
      return false;
    }
    const double cpu = thread_cpu_now() - pass_started_cpu_;
    // The pass may take no less wall time than its CPU at the budget's share of a core, nor
    // than its reads at the read rate.
    const double needed =
        std::max(cpu / settings_.cpu_ratio,
                 static_cast<double>(read) / static_cast<double>(settings_.read_bytes_per_second));
    const double wait = pass_started_wall_ + needed - wall_now();
    if (wait <= 0) {
      return true;
    }
    wake_.wait_for(lock, std::chrono::duration<double>(wait),
                   [this] { return stopping_ || dirty_; });
  }
}

std::int64_t PageScanWorker::due_ms(const Scanned& s) const {
  if (!s.wake.empty() || s.finished_ms <= 0) {
    return -1;
  }
  const bool slow = s.converged && !host_near_reserve_;
  const auto interval =
      slow ? std::max(settings_.converged_interval, settings_.interval) : settings_.interval;
  return s.finished_ms + interval.count();
}

const ScanTarget* PageScanWorker::next_target(std::int64_t& due) const {
  const ScanTarget* next = nullptr;
  due = std::numeric_limits<std::int64_t>::max();
  for (const auto& t : targets_) {
    if (!t.refused.empty()) {
      continue;
    }
    const auto it = scanned_.find(t.uuid);
    const std::int64_t when = it == scanned_.end() ? -2 : due_ms(it->second);
    if (when < due) {
      next = &t;
      due = when;
    }
  }
  return next;
}

bool PageScanWorker::probe_due(std::unique_lock<std::mutex>& lock, std::int64_t now,
                               std::int64_t& next_ms) {
  const ScanTarget* target = nullptr;
  std::int64_t first = std::numeric_limits<std::int64_t>::max();
  for (const auto& t : targets_) {
    const auto it = scanned_.find(t.uuid);
    if (!t.refused.empty() || it == scanned_.end() || !it->second.converged ||
        !it->second.wake.empty() || !scanners_.contains(t.uuid)) {
      continue;
    }
    const std::int64_t when = it->second.probed_ms + settings_.probe_interval.count();
    if (when < first) {
      first = when;
      target = &t;
    }
  }
  if (target == nullptr || first > now) {
    next_ms = std::min(next_ms, first);
    return false;
  }
  const std::string uuid = target->uuid;
  const int pid = target->pid;
  const auto& scanner = scanners_.at(uuid);
  lock.unlock();
  const double cpu0 = thread_cpu_now();
  const auto probed = scanner.probe(pid, kProbePages);
  const double cpu = thread_cpu_now() - cpu0;
  lock.lock();
  cpu_seconds_total_ += cpu;
  ++probes_total_;
  const auto it = scanned_.find(uuid);
  if (it == scanned_.end()) {
    return true;
  }
  Scanned& s = it->second;
  s.probed_ms = clock::monotonic_ms();
  // Changed beyond what the VM's own churn explains, in enough pages to tell.
  const double churn = s.figures.volatile_ratio.value_or(0.0);
  const double limit = std::max(settings_.converged_width, 2 * churn);
  if (probed && probed->probed_pages >= 32 && probed->changed_ratio() > limit && s.wake.empty()) {
    s.wake = "a probe found " + std::to_string(std::lround(probed->changed_ratio() * 100)) +
             " % of its sample pages changed";
    ++wakes_total_["content"];
  }
  return true;
}

void PageScanWorker::reschedule(Scanned& fresh, const Scanned* old,
                                const ScanTarget& target) const {
  fresh.pid = target.pid;
  fresh.signals = target.signals;
  fresh.probed_ms = fresh.finished_ms;
  if (old != nullptr && old->pid == target.pid) {
    fresh.shares = old->shares;
  }
  if (!fresh.has_figures) {
    return;
  }
  const auto resident = static_cast<double>(std::max<std::uint64_t>(fresh.resident_pages, 1));
  fresh.shares.emplace_back(
      static_cast<double>(fresh.zero_pages) / resident,
      static_cast<double>(fresh.figures.duplicate_bytes) /
          static_cast<double>(std::max<std::uint64_t>(fresh.figures.resident_bytes, 1)));
  if (fresh.shares.size() > kConvergePasses) {
    fresh.shares.erase(fresh.shares.begin());
  }
  const auto spread = [&fresh](auto member) {
    double low = 1;
    double high = 0;
    for (const auto& share : fresh.shares) {
      low = std::min(low, share.*member);
      high = std::max(high, share.*member);
    }
    return high - low;
  };
  fresh.converged = fresh.shares.size() == kConvergePasses &&
                    spread(&std::pair<double, double>::first) <= settings_.converged_width &&
                    spread(&std::pair<double, double>::second) <= settings_.converged_width;
}

PageScanWorker::Scanned PageScanWorker::scan_one(const ScanTarget& target, std::uint64_t below,
                                                 std::size_t max_hashes) {
  Scanned result;
  result.below = below;
  result.figures.status = "failed";
  if (target.pid <= 0) {
    result.figures.error = "no QEMU process known";
  } else {
    auto regions =
        collectors::candidate_regions(procfs_, target.pid, collectors::CandidateMemory::mergeable);
    collectors::ScanOptions options;
    options.hash_sample_below = below;
    options.max_hashes = max_hashes;
    options.pace = [this](std::uint64_t read) { return pace(read); };
    auto& scanner = scanners_.try_emplace(target.uuid, procfs_).first->second;
    auto figures = regions ? scanner.scan(target.pid, *regions, options)
                           : Result<collectors::PageScanFigures>(regions.error());
    if (!figures) {
      result.figures.error = figures.error().to_string();
    } else {
      const std::uint64_t page = figures->page_size_bytes;
      result.figures.status = "scanned";
      result.figures.candidate_bytes = figures->candidate_pages * page;
      result.figures.resident_bytes = figures->resident_pages * page;
      result.figures.zero_bytes = figures->zero_pages * page;
      result.figures.duplicate_bytes = figures->duplicate_pages * page;
      result.figures.volatile_ratio = figures->volatile_ratio;
      result.figures.scanned_unix_ms = clock::unix_ms();
      result.sampled_hashes =
          std::make_shared<const std::vector<std::uint64_t>>(std::move(figures->sampled_hashes));
      // A guest beyond the memory budget was sampled at a lower threshold: the estimate
      // across VMs then uses that one for all.
      result.below = figures->hash_sample_below;
      result.zero_pages = figures->zero_pages;
      result.resident_pages = figures->resident_pages;
      result.candidate_pages = figures->candidate_pages;
      result.has_figures = true;
      pace(result.figures.resident_bytes);  // the budget covers the last partial batch too
    }
  }
  return result;
}

void PageScanWorker::run() {
  pthread_setname_np(pthread_self(), "page-scan");
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (dirty_) {
      aggregate(lock);
      continue;
    }
    std::int64_t due = 0;
    const ScanTarget* next = next_target(due);
    const std::int64_t now = clock::monotonic_ms();
    if (next == nullptr || due > now) {
      std::int64_t until = next == nullptr ? now + 1000 : due;
      if (probe_due(lock, now, until)) {
        continue;
      }
      // Woken early by new targets, a woken VM (check_signals) or the host nearing its reserve.
      const auto generation = targets_generation_;
      const auto wakes = wakes_total_;
      const bool near = host_near_reserve_;
      wake_.wait_for(lock, std::chrono::milliseconds(std::max<std::int64_t>(until - now, 1)), [&] {
        return stopping_ || dirty_ || generation != targets_generation_ || wakes != wakes_total_ ||
               near != host_near_reserve_;
      });
      continue;
    }
    const ScanTarget target = *next;
    if (scanners_generation_ != targets_generation_) {
      scanners_generation_ = targets_generation_;
      for (auto it = scanners_.begin(); it != scanners_.end();) {
        it = listed_.contains(it->first) ? std::next(it) : scanners_.erase(it);
      }
    }
    const std::uint64_t below = sample_threshold(targets_, collectors::system_page_size());
    const auto max_hashes = static_cast<std::size_t>(settings_.max_memory_bytes / 8);
    lock.unlock();

    pass_started_wall_ = wall_now();
    pass_started_cpu_ = thread_cpu_now();
    Scanned result = scan_one(target, below, max_hashes);
    const double cpu = thread_cpu_now() - pass_started_cpu_;

    lock.lock();
    cpu_seconds_total_ += cpu;
    if (stopping_) {
      break;
    }
    // Still wanted (the VM may have gone, or refused scanning, meanwhile)?
    if (!scannable(target.uuid)) {
      scanners_.erase(target.uuid);
      continue;
    }
    const auto old = scanned_.find(target.uuid);
    if (result.figures.status == "scanned") {
      read_bytes_total_ += result.figures.resident_bytes;
      ++passes_total_;
    } else if (old != scanned_.end() && old->second.finished_ms > 0) {
      // Keep the last good figures for the estimate; report the failure. It waits an interval
      // like a VM whose figures move.
      old->second.figures.status = "failed";
      old->second.figures.error = result.figures.error;
      old->second.finished_ms = clock::monotonic_ms();
      old->second.converged = false;
      old->second.wake.clear();
      continue;
    }
    // A failed pass waits an interval too, rather than retrying in a loop.
    result.finished_ms = clock::monotonic_ms();
    reschedule(result, old == scanned_.end() ? nullptr : &old->second, target);
    scanned_[target.uuid] = std::move(result);
    aggregate(lock);
  }
}

void attach_page_scans(PageScanWorker* worker, Snapshot& snapshot,
                       const config::KsmScanSection& settings, bool host_near_reserve) {
  if (worker == nullptr) {
    for (auto& vm : snapshot.vms) {
      vm.page_scan = VmPageScan{};
      vm.page_scan->status = "off";
    }
    return;
  }
  if (snapshot.hypervisor_up) {
    std::vector<ScanTarget> targets;
    targets.reserve(snapshot.vms.size());
    for (const auto& vm : snapshot.vms) {
      ScanTarget t{vm.key(), vm.name, vm.process ? vm.process->pid : 0, vm.max_bytes, "", {}};
      if (vm.process) {
        t.signals.rss_bytes = vm.process->rss_bytes.value_or(0);
        if (vm.process->ksm) {
          t.signals.ksm_merging_bytes = vm.process->ksm->merging_bytes.value_or(0);
        }
      }
      t.signals.size_bytes = vm.current_bytes;
      // Reading guest memory is a privilege the operator withholds per VM.
      if (!vm.sharing_allowed) {
        t.refused = "opted-out";
      } else if (vm.metadata.scan_enabled == false) {
        t.refused = "scan-disabled";
      }
      targets.push_back(std::move(t));
    }
    worker->update(std::move(targets), settings, host_near_reserve);
  }
  auto view = worker->view();
  for (auto& vm : snapshot.vms) {
    if (const auto it = view.vms.find(vm.key()); it != view.vms.end()) {
      vm.page_scan = std::move(it->second);
    }
  }
  snapshot.ksm_estimate = view.estimate;
}

}  // namespace memtide::collectors
