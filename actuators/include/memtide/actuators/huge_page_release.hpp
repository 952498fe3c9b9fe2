// Returning to the host the memory a balloon freed inside transparent huge pages.
//
// QEMU asks for transparent huge pages for guest RAM (MADV_HUGEPAGE). A balloon gives the host
// 4 KiB pages; a 2 MiB huge page of which only some 4 KiB pages were given stays whole and
// allocated, "partly mapped": the kernel splits it and frees the given pages only when its own
// reclaim runs, at its watermarks, far below any reserve an operator sets. Until then
// MemAvailable does not count that memory, and a policy judging the host by MemAvailable sees
// no relief from a shrink and squeezes on. process_madvise(MADV_COLD) over the guest's RAM splits
// every partly mapped huge page in it at once (whole huge pages are left whole) and marks its
// pages as the first to reclaim, which suits a guest that was just shrunk for having spare
// memory. It needs CAP_SYS_NICE and ptrace access to the QEMU process.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/page_scanner.hpp>
#include <memtide/core/result.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::actuators {

// A VM's balloon must have shrunk by at least this much since its last release (or since it
// was first seen) to be released again, and no VM is released more often than every
// kHugePageReleaseIntervalMs: the walk over a large guest's page tables costs milliseconds.
inline constexpr std::uint64_t kHugePageReleaseMinShrinkBytes = 8ULL << 20;
inline constexpr std::int64_t kHugePageReleaseIntervalMs = 10'000;

// Advises `regions` of process `pid` as cold (process_madvise MADV_COLD), which splits the
// partly mapped huge pages in them. Returns the bytes advised.
Result<std::uint64_t> advise_cold(int pid, const std::vector<collectors::MemoryRegion>& regions);

// Guest RAM of a QEMU process: its mappings marked mergeable (QEMU marks guest RAM so unless
// page sharing is off), else its private anonymous mappings; only those that can hold a 2 MiB
// huge page.
Result<std::vector<collectors::MemoryRegion>> guest_ram_regions(const std::string& procfs, int pid);

class HugePageRelease {
 public:
  explicit HugePageRelease(std::string procfs = "/proc") : procfs_(std::move(procfs)) {}
  HugePageRelease(std::string procfs, const std::string& sysfs)
      : procfs_(std::move(procfs)), thp_counters_(collectors::find_thp_counters(sysfs)) {}
  const std::string& procfs() const { return procfs_; }
  // The host's partly mapped huge pages now (after a release), in bytes; nullopt when unknown.
  std::optional<std::uint64_t> partly_mapped_now() const {
    auto now = collectors::read_thp_partially_mapped(thp_counters_);
    return now ? *now : std::nullopt;
  }

  struct Released {
    std::string vm;
    std::uint64_t advised_bytes = 0;
    std::string error;  // set when the release failed
  };
  // Releases every running VM whose balloon shrank since its last release, while the host
  // reports partly mapped huge pages; `now_ms` is on a monotonic clock. VMs that are gone are
  // forgotten.
  std::vector<Released> run(const Snapshot& snapshot, std::int64_t now_ms);

 private:
  struct Seen {
    std::uint64_t balloon_bytes = 0;  // at the last release, or the largest since
    std::int64_t released_ms = 0;
    bool released = false;
  };
  std::string procfs_;
  std::vector<collectors::ThpCounter> thp_counters_;  // for partly_mapped_now()
  std::map<std::string, Seen> seen_;                  // by uuid
};

}  // namespace memtide::actuators
