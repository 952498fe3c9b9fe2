// Reads the host's memory state from procfs and sysfs under configurable roots, like
// node_exporter's --path.procfs/--path.sysfs: tests and offline analysis point them at a fixture
// tree; the daemon uses /proc and /sys.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

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

class HostSource {
 public:
  // `page_size_bytes` converts page counters to bytes; fixture trees from other architectures
  // pass their own.
  explicit HostSource(HostRoots roots, std::uint64_t page_size_bytes = system_page_size());

  // meminfo, vmstat, pressure/{memory,io,cpu} and swaps. meminfo and vmstat must exist; PSI and
  // swaps are optional (see HostSample). Fails on the first unreadable or malformed file.
  Result<HostSample> read() const;

  const HostRoots& roots() const { return roots_; }

 private:
  HostRoots roots_;
  std::uint64_t page_size_bytes_;
};

// Reads (and, from the KSM tuning work on, writes) /sys/kernel/mm/ksm.
class KsmControl {
 public:
  explicit KsmControl(std::string sysfs_root = "/sys",
                      std::uint64_t page_size_bytes = system_page_size());

  // std::nullopt when the kernel has no KSM (the directory or its `run` file is missing).
  // Files that only newer kernels have are left unset in the sample; a file that exists but
  // cannot be read or parsed is an error.
  Result<std::optional<KsmSample>> read() const;

  const std::string& directory() const { return dir_; }

 private:
  std::string dir_;
  std::uint64_t page_size_bytes_;
};

}  // namespace memtide::collectors
