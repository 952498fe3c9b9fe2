#include <chrono>
#include <cstdio>
#include <functional>
#include <iostream>
#include <thread>

#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/page_scanner.hpp>
#include <memtide/config/units.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/core/progress.hpp>
#include <memtide/core/text.hpp>
#include <memtide/report/json_text.hpp>

#include "commands.hpp"

namespace memtide::ctl {

namespace {

std::string rate_text(double bytes_per_second) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB/s", bytes_per_second / 1e9);
  return buf;
}

// `passes` passes over `regions` of `pid`, `interval_s` apart, calling `starting(pass)` (from 1)
// before each: the last pass's figures (volatility comes from the ones before), or nullopt when
// one failed (said on stderr).
std::optional<collectors::PageScanFigures> scan_passes(
    int pid, const std::vector<collectors::MemoryRegion>& regions, int passes, double interval_s,
    const std::function<void(int)>& starting) {
  collectors::PageScanner scanner;
  std::optional<collectors::PageScanFigures> last;
  for (int pass = 0; pass < passes; ++pass) {
    starting(pass + 1);
    if (pass > 0) {
      std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));
    }
    auto figures = scanner.scan(pid, regions);
    if (!figures) {
      std::cerr << "memtidectl: " << figures.error().to_string() << '\n';
      return std::nullopt;
    }
    last = *figures;
  }
  return last;
}

}  // namespace

int scan(const std::vector<std::string>& pids, int passes, double interval_s, bool json) {
  if (pids.empty()) {
    return usage_error("scan needs at least one PID");
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  int failures = 0;
  ProgressLine progress;
  std::size_t done = 0;
  for (const auto& text : pids) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
        text.size() > 9) {
      return usage_error("not a PID: '" + shorten_utf8(text, 40) + "'");
    }
    const int pid = std::stoi(text);
    // QEMU marks guest RAM mergeable; any other process is judged by all its private
    // anonymous memory (what prctl(PR_SET_MEMORY_MERGE) would offer KSM).
    auto regions =
        collectors::candidate_regions("/proc", pid, collectors::CandidateMemory::mergeable);
    std::string candidates = "mergeable";
    if (regions && regions->empty()) {
      regions = collectors::candidate_regions("/proc", pid,
                                              collectors::CandidateMemory::private_anonymous);
      candidates = "private-anonymous";
    }
    if (!regions) {
      std::cerr << "memtidectl: " << regions.error().to_string() << '\n';
      ++failures;
      continue;
    }
    const std::string which = "scanning PID " + std::to_string(pid) + " (" +
                              std::to_string(++done) + " of " + std::to_string(pids.size()) + ")";
    const auto last = scan_passes(pid, *regions, passes, interval_s, [&](int pass) {
      progress.show(which + ": pass " + std::to_string(pass) + " of " + std::to_string(passes),
                    true);
    });
    progress.clear();
    if (!last) {
      ++failures;
      continue;
    }
    const auto& f = *last;
    const double scanned = static_cast<double>(f.resident_pages * f.page_size_bytes);
    const double rate = f.seconds > 0 ? scanned / f.seconds : 0;
    if (json) {
      out.push_back({{"pid", pid},
                     {"candidates", candidates},
                     {"candidate_bytes", f.candidate_pages * f.page_size_bytes},
                     {"resident_bytes", f.resident_pages * f.page_size_bytes},
                     {"zero_ratio", f.zero_ratio()},
                     {"duplicate_ratio", f.duplicate_ratio()},
                     {"volatile_ratio", f.volatile_ratio ? nlohmann::ordered_json(*f.volatile_ratio)
                                                         : nlohmann::ordered_json()},
                     {"estimated_savings_bytes", f.estimated_savings_bytes()},
                     {"scan_seconds", f.seconds},
                     {"passes", passes}});
      continue;
    }
    std::cout << "PID " << pid << ": " << config::format_size(f.candidate_pages * f.page_size_bytes)
              << " " << candidates << ", "
              << config::format_size(f.resident_pages * f.page_size_bytes)
              << " resident, scanned in " << f.seconds << " s (" << rate_text(rate) << ")\n"
              << "  zero " << percent_text(f.zero_ratio()) << ", duplicate "
              << percent_text(f.duplicate_ratio()) << ", volatile "
              << (f.volatile_ratio ? percent_text(*f.volatile_ratio) : std::string("-"))
              << "; KSM could save about " << config::format_size(f.estimated_savings_bytes())
              << '\n';
  }
  if (json) {
    std::cout << report::dump_json(out, 2) << '\n';
  }
  return failures == 0 ? kExitOk : kExitFailure;
}

}  // namespace memtide::ctl
