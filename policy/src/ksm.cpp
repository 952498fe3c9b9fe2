#include <algorithm>
#include <cmath>

#include <memtide/policy/ksm.hpp>

#include "text.hpp"

namespace memtide::policy {

namespace {

// run=1 at the pace for the estimate's candidate memory, within the CPU budget.
KsmSettings merging(const KsmSample& now, const std::optional<KsmEstimate>& estimate,
                    std::optional<double> ksmd_cpu_ratio, const config::KsmSection& config,
                    std::string& why) {
  KsmSettings s;
  s.run = 1;
  s.sleep_ms = static_cast<std::uint64_t>(config.sleep.count());
  if (config.advisor == config::KsmAdvisor::scan_time) {
    if (now.advisor_mode) {
      s.advisor_mode = "scan-time";
      s.advisor_max_cpu_percent = std::clamp<std::uint64_t>(
          static_cast<std::uint64_t>(std::llround(config.max_cpu_ratio * 100)), 1, 100);
      s.advisor_target_scan_time_seconds = std::max<std::uint64_t>(
          1, static_cast<std::uint64_t>(config.full_scan_time.count() / 1000));
      why += "; the kernel's scan-time advisor paces ksmd";
      return s;
    }
    why += "; this kernel has no scan-time advisor: memtide paces ksmd";
  } else if (now.advisor_mode && *now.advisor_mode != "none") {
    s.advisor_mode = "none";  // else the advisor overrides the pages_to_scan set here
  }
  if (!estimate || estimate->candidate_bytes == 0) {
    return s;  // nothing to size the pace on: pages_to_scan left as it is
  }
  const double wakeups = static_cast<double>(config.full_scan_time.count()) /
                         static_cast<double>(std::max<std::int64_t>(1, config.sleep.count()));
  const double candidate_pages =
      static_cast<double>(estimate->candidate_bytes) /
      static_cast<double>(std::max<std::uint64_t>(1, estimate->page_size_bytes));
  const double target = candidate_pages / wakeups;
  double pages = target;
  if (ksmd_cpu_ratio && now.run == 1 && now.pages_to_scan > 0) {
    const auto current = static_cast<double>(now.pages_to_scan);
    if (*ksmd_cpu_ratio > config.max_cpu_ratio) {
      pages = std::min(target, current * config.max_cpu_ratio / *ksmd_cpu_ratio);
      why += "; ksmd used " + percent(*ksmd_cpu_ratio) + " of a core, budget " +
             percent(config.max_cpu_ratio) + ": slower";
    } else if (current < target) {
      const double room = config.max_cpu_ratio / std::max(*ksmd_cpu_ratio, 1e-6);
      pages = std::min(target, current * std::min(2.0, room));
    }
  }
  s.pages_to_scan = std::clamp(static_cast<std::uint64_t>(std::llround(pages)), kKsmMinPagesToScan,
                               kKsmMaxPagesToScan);
  return s;
}

// run=0, or run=2 with ksm.unmerge; nullopt when ksmd is already so.
std::optional<KsmSettings> stopping(const KsmSample& now, const config::KsmSection& config) {
  KsmSettings s;
  if (config.unmerge) {
    if (now.run == 2 || (now.run == 0 && now.shared_bytes == 0)) {
      return std::nullopt;
    }
    s.run = 2;
  } else {
    if (now.run != 1) {
      return std::nullopt;
    }
    s.run = 0;
  }
  return s;
}

std::optional<KsmSettings> decide_run(const KsmSample& now,
                                      const std::optional<KsmEstimate>& estimate, bool host_pressed,
                                      std::optional<double> ksmd_cpu_ratio,
                                      const config::KsmSection& config, KsmMemory& memory,
                                      std::int64_t now_ms, std::string& why) {
  if (config.mode == config::KsmMode::unmanaged) {
    why = "ksm.mode unmanaged: KSM settings left to the host";
    return std::nullopt;
  }
  const char* stopped = config.unmerge ? ": stopped, merged pages unmerged" : ": stopped";
  if (config.mode == config::KsmMode::off) {
    why = std::string("ksm.mode off") + stopped;
    return stopping(now, config);
  }
  if (config.mode == config::KsmMode::on) {
    why = "ksm.mode on: merging";
    return merging(now, estimate, ksmd_cpu_ratio, config, why);
  }
  // auto
  if (!estimate || estimate->resident_bytes == 0) {
    why = "no page-scan estimate yet: KSM left as it is";
    return std::nullopt;
  }
  const double savings =
      static_cast<double>(estimate->savings_bytes) / static_cast<double>(estimate->resident_bytes);
  const std::string figures = "estimated savings " + percent(savings) + " of guest memory";
  if (now.run == 1 && now.general_profit_bytes && *now.general_profit_bytes < 0 &&
      memory.merging_since_full_scans &&
      now.full_scans_total >= *memory.merging_since_full_scans + 2) {
    why = "merging costs more than it saves (general_profit " +
          std::to_string(*now.general_profit_bytes) + " B after " +
          std::to_string(now.full_scans_total - *memory.merging_since_full_scans) + " full scans)" +
          stopped;
    memory.stopped_for_cost_ms = now_ms;
    return stopping(now, config);
  }
  if (now.run != 1 && memory.stopped_for_cost_ms >= 0 &&
      now_ms - memory.stopped_for_cost_ms < kKsmCostHoldOffMs) {
    why = figures + ", but merging cost more than it saved " +
          std::to_string((now_ms - memory.stopped_for_cost_ms) / 1000) +
          " s ago: not merging before " + std::to_string(kKsmCostHoldOffMs / 60000) +
          " min have passed";
    return std::nullopt;
  }
  if (savings < config.min_savings_ratio) {
    why = figures + " < ksm.min_savings " + percent(config.min_savings_ratio) +
          (now.run == 1 ? stopped : ": not merging");
    return now.run == 1 ? stopping(now, config) : std::nullopt;
  }
  if (!host_pressed && now.run != 1) {
    why = figures + ", but the host is not under or heading toward pressure: not merging";
    return std::nullopt;
  }
  why = figures + (host_pressed ? " and the host is pressed: merging" : ": merging");
  return merging(now, estimate, ksmd_cpu_ratio, config, why);
}

}  // namespace

KsmDecision decide_ksm(const KsmSample& now, const std::optional<KsmEstimate>& estimate,
                       bool host_pressed, std::optional<double> ksmd_cpu_ratio,
                       const config::KsmSection& config, KsmMemory& memory, std::int64_t now_ms) {
  if (now.run != 1) {
    memory.merging_since_full_scans.reset();
  } else if (!memory.merging_since_full_scans) {
    memory.merging_since_full_scans = now.full_scans_total;
  }
  KsmDecision d;
  d.ksmd_cpu_ratio = ksmd_cpu_ratio;
  d.settings =
      decide_run(now, estimate, host_pressed, ksmd_cpu_ratio, config, memory, now_ms, d.reason);
  if (config.mode != config::KsmMode::unmanaged && config.merge_across_nodes &&
      now.merge_across_nodes && *config.merge_across_nodes != *now.merge_across_nodes) {
    if (!d.settings) {
      d.settings = KsmSettings{};
    }
    d.settings->merge_across_nodes = *config.merge_across_nodes;
    if (!d.settings->run) {
      d.settings->run = now.run;  // the change goes through run=2; come back to where ksmd was
    }
    d.reason += std::string("; merge_across_nodes set to ") +
                (*config.merge_across_nodes ? "1" : "0") + " (unmerges everything first)";
  }
  return d;
}

}  // namespace memtide::policy
