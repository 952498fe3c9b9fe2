// Which class a VM belongs to and the balloon settings in force for it once its domain
// metadata has overridden the class. Pure functions of (VmSample, Config).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <memtide/config/config.hpp>
#include <memtide/core/vm_sample.hpp>

namespace memtide::policy {

// The first class in config.classes whose `match` fits: `match.name` is a shell glob over the
// domain name, `match.class` must equal the class named in the domain's metadata; a class with
// both needs both. nullptr when none fits.
const config::VmClass* match_class(const VmSample& vm, const config::Config& config);

struct EffectiveBalloon {
  std::string class_name;         // "" when no class matched
  bool managed = false;           // memtide may resize this VM's balloon
  std::string unmanaged_reason;   // why not, when !managed
  std::uint64_t floor_bytes = 0;  // never below this; at most max_bytes
  // What keeps all of the VM's RAM on the host whatever its balloon ("hugepage backing and a
  // passed-through device"), or "": a shrink would take memory from the guest and give the host
  // nothing, so the floor of such a VM is its maximum.
  std::string pinned_by;
  std::uint64_t max_bytes = 0;  // never above this (the VM's maximum)
  std::uint32_t shares = 0;
  double guest_free_ratio = 0;
  std::uint64_t max_step_bytes = 0;
  std::uint64_t deadband_bytes = 0;
  std::chrono::milliseconds hysteresis{0};
  bool grow_when_host_idle = true;
  std::chrono::milliseconds cache_protection{0};
  friend bool operator==(const EffectiveBalloon&, const EffectiveBalloon&) = default;
};

// Settings for `vm`: the matched class's, with metadata floor, shares and balloon on/off taking
// precedence. Percentages resolve against the VM's maximum. A VM is unmanaged when no class
// matches, its class or metadata turns the balloon off, it has no balloon device, or another
// memory manager resizes balloons on the host (`balloons_owned_by`, from yielding_to(): "momd
// (pid 812)"; "" for none). A VM whose memory is pinned (VmSample::memory_pins) has its maximum
// as its floor.
EffectiveBalloon effective_balloon(const VmSample& vm, const config::Config& config,
                                   std::string_view balloons_owned_by = {});

// "hugepage backing", "locked memory and a passed-through device", ...; "" for no pins.
std::string pinned_text(const std::vector<MemoryPin>& pins);

}  // namespace memtide::policy
