// What memtide's own page scanner learned about guest memory contents: per VM, and summed over
// every VM it may read as the estimate the KSM controller decides on. Only counts; page contents
// are never kept.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

namespace memtide {

// One VM's last scan, or why there is none.
struct VmPageScan {
  // "scanned"; "pending" (not reached yet); "opted-out" (<nosharepages/> in the domain XML);
  // "scan-disabled" (memtide metadata scan="off"); "off" (ksm.scan.enabled false); "failed".
  std::string status = "pending";
  std::string error;                     // why, when failed
  std::uint64_t candidate_bytes = 0;     // guest RAM in mergeable mappings
  std::uint64_t resident_bytes = 0;      // of it, resident on the host and read
  std::uint64_t zero_bytes = 0;          // resident pages that are all zero
  std::uint64_t duplicate_bytes = 0;     // resident pages with an identical twin in this VM
  std::optional<double> volatile_ratio;  // share of sampled pages changed since the pass before
  std::int64_t scanned_unix_ms = 0;      // when the last pass ended
  // The scanner's schedule for it: "converging" (passes every ksm.scan.interval until its
  // figures settle), "converged" (every converged_interval, probed between), "rescanning" (a
  // pass comes early); empty before the first pass. `schedule_reason` says why.
  std::string schedule;
  std::string schedule_reason;
  // `bytes` (zero_bytes, duplicate_bytes) as a share of resident_bytes; none before a pass read
  // anything.
  std::optional<double> share_of_resident(std::uint64_t bytes) const {
    return resident_bytes > 0 ? std::optional<double>(static_cast<double>(bytes) /
                                                      static_cast<double>(resident_bytes))
                              : std::nullopt;
  }
  friend bool operator==(const VmPageScan&, const VmPageScan&) = default;
};

// Over every scanned VM: what merging all of their guest RAM would save, duplicates across VMs
// included, plus the scanner's own work counters.
struct KsmEstimate {
  std::uint64_t candidate_bytes = 0;
  std::uint64_t resident_bytes = 0;
  std::uint64_t zero_bytes = 0;
  std::uint64_t savings_bytes = 0;  // resident bytes that would merge away
  std::uint64_t vms = 0;            // VMs the estimate covers
  std::uint64_t page_size_bytes = 4096;
  std::uint64_t read_bytes_total = 0;  // guest memory the scanner has read since start
  double cpu_seconds_total = 0;        // CPU the scanner thread has used since start
  std::uint64_t passes_total = 0;      // VM passes completed since start
  std::uint64_t probes_total = 0;      // probes of converged VMs' sample pages since start
  // Passes woken before their time, by reason ("restarted", "resident", "resized", "ksm",
  // "content"), since start.
  std::map<std::string, std::uint64_t> wakes_total;
  friend bool operator==(const KsmEstimate&, const KsmEstimate&) = default;
};

}  // namespace memtide
