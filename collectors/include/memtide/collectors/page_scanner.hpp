// Page-content statistics of a process's memory, gathered the way KSM would see it: which pages
// are empty, which have an identical twin (and so would merge), and how many change between
// passes. Pages are read from /proc/PID/mem in runs and hashed with XXH3-64 (not with
// process_vm_readv, whose read-only pins unshare KSM-merged pages); contents
// never leave the scanning function and are never stored, only hashes and counts. Only resident
// pages are read (the present bit of /proc/PID/pagemap): reading a swapped-out page would swap it
// back in, and reading an untouched one would count memory the process never used.
//
// Reading another process's memory needs ptrace access to it (root, or CAP_SYS_PTRACE).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <memtide/core/result.hpp>

namespace memtide::collectors {

struct MemoryRegion {
  std::uint64_t start = 0;  // page-aligned virtual addresses, end exclusive
  std::uint64_t end = 0;
  friend bool operator==(const MemoryRegion&, const MemoryRegion&) = default;
};

enum class CandidateMemory {
  mergeable,          // mappings KSM may merge: "mg" in VmFlags (QEMU marks guest RAM so)
  private_anonymous,  // every private anonymous mapping (any process; what prctl
                      // PR_SET_MEMORY_MERGE would make mergeable)
};

// The regions of `pid` to scan, from PROCFS/PID/smaps.
Result<std::vector<MemoryRegion>> candidate_regions(const std::string& procfs, int pid,
                                                    CandidateMemory which);

// Pure parser for the smaps text, for tests.
Result<std::vector<MemoryRegion>> parse_smaps_regions(std::string_view smaps, CandidateMemory which,
                                                      std::string_view origin);

struct PageScanFigures {
  std::uint64_t candidate_pages = 0;   // pages in the regions
  std::uint64_t resident_pages = 0;    // present in RAM, read and hashed
  std::uint64_t unreadable_pages = 0;  // present but could not be read (unmapped meanwhile)
  // Present but not anonymous memory KSM could merge: mapped to the shared zero page or the huge
  // zero page (memory read, never written), or file and shared pages (bit 61 of the page map).
  // They cost no private memory or cannot merge: not read, not counted as resident. The 4 KiB
  // zero page is recognised on Linux 6.7+ (PAGEMAP_SCAN); older kernels count it as resident.
  std::uint64_t unmergeable_pages = 0;
  std::uint64_t zero_pages = 0;       // all bytes zero
  std::uint64_t distinct_pages = 0;   // distinct contents among resident pages (zero included)
  std::uint64_t duplicate_pages = 0;  // resident pages that would merge away: resident - distinct
  std::optional<double> volatile_ratio;  // share of the sampled pages whose hash changed since
                                         // the previous pass (none on the first pass)
  std::uint64_t page_size_bytes = 4096;
  double seconds = 0;  // wall time of the pass
  // Hashes of the non-zero resident pages whose hash is at most `hash_sample_below`, sorted,
  // repeats kept. Sampling by hash value keeps every copy of a content or none, so samples from
  // several processes merged at one threshold estimate their shared duplicates.
  std::vector<std::uint64_t> sampled_hashes;
  // The threshold sampled_hashes used: ScanOptions::hash_sample_below, or lower when the pass's
  // memory budget (ScanOptions::max_hashes) forced a smaller sample.
  std::uint64_t hash_sample_below = 0;
  // Share of the non-zero resident pages whose hashes were kept to count duplicates: 1 means
  // the count is exact; below 1 it is estimated from that hash-value sample.
  double kept_hash_ratio = 1.0;

  double zero_ratio() const;       // zero / resident
  double duplicate_ratio() const;  // duplicate / resident
  std::uint64_t estimated_savings_bytes() const { return duplicate_pages * page_size_bytes; }
};

struct ScanOptions {
  // Keep the hashes at most this (see PageScanFigures::sampled_hashes); 0 keeps none,
  // UINT64_MAX every one.
  std::uint64_t hash_sample_below = 0;
  // At most this many page hashes are held during a pass (8 bytes each: the pass's memory
  // budget). Past it only hashes in a shrinking lower part of the hash range are kept, and the
  // duplicate count is estimated from them (PageScanFigures::kept_hash_ratio).
  std::size_t max_hashes = std::size_t{1} << 19;
  // Called after each batch read (512 pages) and after each 64 MiB of address space walked, with
  // the bytes read so far in this pass; it may sleep to keep a budget (the walk costs CPU even
  // where nothing is resident). Returning false abandons the pass (the scan fails with
  // ECANCELED).
  std::function<bool(std::uint64_t read_bytes)> pace;
};

// Duplicate pages among the hashes of several processes sampled at one threshold: the sorted
// union's size minus its distinct count.
std::uint64_t sampled_duplicates(const std::vector<const std::vector<std::uint64_t>*>& samples,
                                 std::uint64_t below, std::uint64_t& sampled_pages);

// What a probe found: of the sample pages it re-read, how many changed since the last pass.
struct ProbeFigures {
  std::uint64_t probed_pages = 0;   // sample pages still resident and private, re-read
  std::uint64_t changed_pages = 0;  // of which hash differently than at the last pass
  double changed_ratio() const {
    return probed_pages > 0 ? static_cast<double>(changed_pages) / static_cast<double>(probed_pages)
                            : 0.0;
  }
};

// Scans one process, pass after pass. Keeps only the hashes of a fixed sample of pages (for
// volatility) between passes.
class PageScanner {
 public:
  // `procfs` for pagemap; `volatility_sample` pages (every Nth resident one) are remembered.
  explicit PageScanner(std::string procfs = "/proc", std::size_t volatility_sample = 4096);

  Result<PageScanFigures> scan(int pid, const std::vector<MemoryRegion>& regions,
                               const ScanOptions& options = {});

  // Re-reads at most `max_pages` of the last pass's sample pages (an even spread of them; those
  // no longer resident, or shared, are skipped: reading them would swap them in or count
  // another's page) and counts those whose content changed: a cheap look at whether the
  // content moved since the pass. Two reads per page; the sample stays the last pass's.
  Result<ProbeFigures> probe(int pid, std::size_t max_pages) const;

 private:
  std::string procfs_;
  std::size_t sample_size_;
  std::unordered_map<std::uint64_t, std::uint64_t> sample_;  // page address -> hash
};

}  // namespace memtide::collectors
