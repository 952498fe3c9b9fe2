// Reads the host's memory state from procfs and sysfs under configurable roots, like
// node_exporter's --path.procfs/--path.sysfs: tests and offline analysis point them at a fixture
// tree; the daemon uses /proc and /sys.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/core/host_sample.hpp>
#include <memtide/core/ksm_sample.hpp>
#include <memtide/core/result.hpp>

namespace memtide::collectors {

struct HostRoots {
  std::string procfs = "/proc";
  std::string sysfs = "/sys";
};

// The host's page size (sysconf(_SC_PAGESIZE)).
std::uint64_t system_page_size();

// One nr_anon_partially_mapped counter: its file and the size of its huge pages.
struct ThpCounter {
  std::string path;
  std::uint64_t page_bytes = 0;
};
// The counters under SYSFS/kernel/mm/transparent_hugepage/hugepages-*kB/stats, one per huge page
// size; empty on kernels without them (before 6.12) or without transparent huge pages. The sizes
// are fixed at boot, so the directory is listed once.
std::vector<ThpCounter> find_thp_counters(const std::string& sysfs);
// Bytes of anonymous transparent huge pages that are only partly mapped, summed over `counters`
// (see HostSample); nullopt when there are none. Read through `files` (kept open) when given.
Result<std::optional<std::uint64_t>> read_thp_partially_mapped(
    const std::vector<ThpCounter>& counters, OpenFiles* files = nullptr);

class HostSource {
 public:
  // `page_size_bytes` converts page counters to bytes; fixture trees from other architectures
  // pass their own.
  explicit HostSource(HostRoots roots, std::uint64_t page_size_bytes = system_page_size());

  // meminfo, vmstat, pressure/{memory,io,cpu}, swaps and partly mapped huge pages. meminfo and
  // vmstat must exist; the others are optional (see HostSample). Fails on the first unreadable or
  // malformed file.
  Result<HostSample> read() const;

  const HostRoots& roots() const { return roots_; }

 private:
  HostRoots roots_;
  std::uint64_t page_size_bytes_;
  std::vector<ThpCounter> thp_counters_;  // found once, at construction
  mutable OpenFiles files_;               // kept open from tick to tick
};

// CPU time the ksmd kernel thread has used since boot (utime + stime of PROCFS/PID/stat), in
// seconds. ksmd is found by its command name once; the pid is remembered while it matches.
class KsmdCpu {
 public:
  explicit KsmdCpu(std::string procfs = "/proc");
  // nullopt when there is no ksmd (a kernel without KSM, or a fixture tree without one).
  std::optional<double> read();

 private:
  std::string procfs_;
  OpenFiles files_;  // ksmd's stat, kept open
  int pid_ = -1;
  int searches_missed_ = 0;  // calls since a search found no ksmd
};

// Reads /sys/kernel/mm/ksm (actuators::KsmWriter writes it).
class KsmReader {
 public:
  explicit KsmReader(std::string sysfs_root = "/sys",
                     std::uint64_t page_size_bytes = system_page_size());

  // std::nullopt when the kernel has no KSM (the directory or its `run` file is missing).
  // Files that only newer kernels have are left unset in the sample; a file that exists but
  // cannot be read or parsed is an error.
  Result<std::optional<KsmSample>> read() const;

  const std::string& directory() const { return dir_; }

 private:
  std::string dir_;
  std::uint64_t page_size_bytes_;
  mutable OpenFiles files_;  // kept open from tick to tick
};

}  // namespace memtide::collectors
