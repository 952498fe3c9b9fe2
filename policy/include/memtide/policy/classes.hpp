// Which class a VM belongs to and the balloon settings in force for it once its domain
// metadata has overridden the class. Pure functions of (VmSample, Config).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

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
  std::uint64_t max_bytes = 0;    // never above this (the VM's maximum)
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
// matches, its class or metadata turns the balloon off, or it has no balloon device.
EffectiveBalloon effective_balloon(const VmSample& vm, const config::Config& config);

}  // namespace memtide::policy
