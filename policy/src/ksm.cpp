#include <algorithm>
#include <cmath>

#include <memtide/policy/ksm.hpp>

#include "text.hpp"

namespace memtide::policy {

namespace {

// run=1 at the pace for `candidate_bytes`, within the CPU budget.
KsmSettings merging(std::uint64_t candidate_bytes, std::optional<double> ksmd_cpu_ratio,
                    const config::KsmSection& config, std::uint64_t page_size, std::string& why) {
  const double wakeups = kKsmTargetScanSeconds * 1000.0 / static_cast<double>(kKsmSleepMs);
  const std::uint64_t candidate_pages = candidate_bytes / std::max<std::uint64_t>(1, page_size);
  double pages = static_cast<double>(candidate_pages) / wakeups;
  if (ksmd_cpu_ratio && *ksmd_cpu_ratio > config.max_cpu_ratio) {
    pages *= config.max_cpu_ratio / *ksmd_cpu_ratio;
    why += "; ksmd used " + percent(*ksmd_cpu_ratio) + " of a core, budget " +
           percent(config.max_cpu_ratio) + ": slower";
  }
  KsmSettings s;
  s.run = 1;
  s.sleep_ms = kKsmSleepMs;
  s.pages_to_scan = std::clamp(static_cast<std::uint64_t>(std::llround(pages)), kKsmMinPagesToScan,
                               kKsmMaxPagesToScan);
  return s;
}

}  // namespace

KsmDecision decide_ksm(const KsmSample& now, const std::optional<KsmEstimate>& estimate,
                       bool host_pressed, std::optional<double> ksmd_cpu_ratio,
                       const config::KsmSection& config, std::uint64_t page_size_bytes) {
  KsmDecision d;
  KsmSettings stop;
  stop.run = 0;
  if (config.mode == config::KsmMode::off) {
    if (now.run == 1) {
      d.settings = stop;
    }
    d.reason = "ksm.mode off: merging stopped";
    return d;
  }
  const std::uint64_t candidate = estimate ? estimate->candidate_bytes : 0;
  if (config.mode == config::KsmMode::on) {
    d.reason = "ksm.mode on";
    d.settings = merging(candidate, ksmd_cpu_ratio, config, page_size_bytes, d.reason);
    return d;
  }
  // auto
  if (!estimate || estimate->candidate_bytes == 0) {
    d.reason = "no page-scan estimate yet: KSM left as it is";
    return d;
  }
  const double savings =
      static_cast<double>(estimate->savings_bytes) / static_cast<double>(estimate->candidate_bytes);
  const std::string figures = "estimated savings " + percent(savings) + " of guest memory";
  if (now.run == 1 && now.general_profit_bytes && *now.general_profit_bytes < 0 &&
      now.full_scans_total > 0) {
    d.settings = stop;
    d.reason = "merging costs more than it saves (general_profit " +
               std::to_string(*now.general_profit_bytes) + " B): stopped";
    return d;
  }
  if (savings < config.min_savings_ratio) {
    if (now.run == 1) {
      d.settings = stop;
    }
    d.reason = figures + " < ksm.min_savings " + percent(config.min_savings_ratio) +
               (now.run == 1 ? ": stopped" : ": not merging");
    return d;
  }
  if (!host_pressed && now.run != 1) {
    d.reason = figures + ", but the host is not under or heading toward pressure: not merging";
    return d;
  }
  d.reason = figures + (host_pressed ? " and the host is pressed: merging" : ": merging");
  d.settings = merging(candidate, ksmd_cpu_ratio, config, page_size_bytes, d.reason);
  return d;
}

}  // namespace memtide::policy
