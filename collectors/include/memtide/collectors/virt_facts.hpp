// Memory-virtualization facts an operator asks about first when judging overcommit: whether the
// CPU translates guest memory in hardware (EPT on Intel, NPT on AMD; without it KVM falls back to
// shadow page tables, which cost memory and CPU per guest), and the transparent hugepage mode
// (THP-backed guest memory cannot be merged by KSM until it is split).
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <memtide/core/result.hpp>

namespace memtide::collectors {

struct VirtFacts {
  // "ept" or "npt" when the KVM module has hardware-assisted paging on, "shadow" when the module
  // is loaded with it off; nullopt when neither kvm_intel nor kvm_amd is loaded.
  std::optional<std::string> paging;
  // The bracketed choice of /sys/kernel/mm/transparent_hugepage/enabled: "always", "madvise"
  // or "never"; nullopt without THP.
  std::optional<std::string> thp_mode;
  friend bool operator==(const VirtFacts&, const VirtFacts&) = default;
};

// A KVM module boolean parameter: "Y"/"N" (kvm_intel.ept) or "1"/"0" (older kvm_amd.npt).
Result<bool> parse_module_bool(std::string_view text, std::string_view origin);

// Reads the facts under `sysfs_root`. A file that exists but is malformed is an error.
Result<VirtFacts> read_virt_facts(const std::string& sysfs_root);

}  // namespace memtide::collectors
