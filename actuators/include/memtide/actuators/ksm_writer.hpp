// Writing KSM settings to /sys/kernel/mm/ksm (collectors::KsmReader reads them).
#pragma once

#include <string>
#include <vector>

#include <memtide/core/ksm_sample.hpp>
#include <memtide/core/result.hpp>

namespace memtide::actuators {

// One file written by KsmWriter::apply.
struct KsmWrite {
  std::string file;  // "pages_to_scan"
  std::string from;  // what the sample said
  std::string to;
  friend bool operator==(const KsmWrite&, const KsmWrite&) = default;
};

class KsmWriter {
 public:
  explicit KsmWriter(std::string sysfs_root = "/sys");

  // Writes the fields of `wanted` that differ from `current` (a fresh KsmReader::read()), in an
  // order the kernel accepts: merge_across_nodes only after run=2 (the kernel refuses it with
  // EBUSY while pages are merged), run last. Every value is checked against the kernel's range
  // first; a value outside it, or a setting this kernel does not have, fails the call before
  // anything is written. Returns what was written; on a failed write, the error names the file
  // and errno (earlier writes stay done).
  Result<std::vector<KsmWrite>> apply(const KsmSettings& wanted, const KsmSample& current) const;

  const std::string& directory() const { return dir_; }

 private:
  std::string dir_;
};

}  // namespace memtide::actuators
