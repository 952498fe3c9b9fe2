#include <algorithm>

#include <fnmatch.h>

#include <memtide/policy/classes.hpp>

namespace memtide::policy {

const config::VmClass* match_class(const VmSample& vm, const config::Config& config) {
  for (const auto& cls : config.classes) {
    // "*" (the default class's pattern) matches every name: fnmatch is not asked per VM and tick.
    if (cls.match_name && *cls.match_name != "*" &&
        fnmatch(cls.match_name->c_str(), vm.name.c_str(), 0) != 0) {
      continue;
    }
    if (cls.match_class && vm.metadata.class_name != cls.match_class) {
      continue;
    }
    return &cls;
  }
  return nullptr;
}

EffectiveBalloon effective_balloon(const VmSample& vm, const config::Config& config,
                                   std::string_view balloons_owned_by) {
  EffectiveBalloon s;
  s.max_bytes = vm.max_bytes;
  const config::VmClass* cls = match_class(vm, config);
  if (cls == nullptr) {
    s.unmanaged_reason = "no class matches";
    s.floor_bytes = vm.max_bytes;
    return s;
  }
  s.class_name = cls->name;
  const auto& b = cls->balloon;
  s.shares = vm.metadata.shares.value_or(b.shares);
  s.guest_free_ratio = b.guest_free_ratio;
  s.max_step_bytes = b.max_step.resolve(vm.max_bytes);
  s.deadband_bytes = b.deadband_bytes;
  s.hysteresis = b.hysteresis;
  s.grow_when_host_idle = b.grow_when_host_idle;
  s.cache_protection = b.cache_protection;
  s.floor_bytes = std::min(vm.metadata.floor.value_or(b.floor).resolve(vm.max_bytes), vm.max_bytes);
  const bool enabled = vm.metadata.balloon_enabled.value_or(b.enabled);
  // Checked here too, not only by the collector: a replayed or hand-written snapshot reaches the
  // policy without it, and the engine's signed arithmetic relies on sizes below 2^52.
  const std::string impossible = vm.invalid_sizes ? *vm.invalid_sizes : implausible_sizes(vm);
  if (!impossible.empty()) {
    s.unmanaged_reason = "impossible sizes from libvirt: " + impossible;
    s.floor_bytes = vm.max_bytes;
  } else if (!enabled) {
    s.unmanaged_reason = vm.metadata.balloon_enabled.has_value()
                             ? "balloon turned off in domain metadata"
                             : "balloon turned off for class " + cls->name;
  } else if (vm.stats_status == GuestStatsStatus::no_balloon) {
    s.unmanaged_reason = "no balloon device";
  } else if (!balloons_owned_by.empty()) {
    s.unmanaged_reason = std::string(balloons_owned_by) +
                         " resizes balloons on this host: memtide leaves them to it "
                         "(daemon.coexist: force overrides)";
  } else {
    s.managed = true;
  }
  s.pinned_by = pinned_text(vm.memory_pins);
  if (!s.pinned_by.empty()) {
    s.floor_bytes = vm.max_bytes;
  }
  return s;
}

std::string pinned_text(const std::vector<MemoryPin>& pins) {
  std::string text;
  for (std::size_t i = 0; i < pins.size(); ++i) {
    text += i == 0 ? "" : i + 1 == pins.size() ? " and " : ", ";
    text += describe(pins[i]);
  }
  return text;
}

}  // namespace memtide::policy
