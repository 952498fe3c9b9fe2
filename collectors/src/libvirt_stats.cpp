#include "libvirt_stats.hpp"

#include <algorithm>
#include <cstring>

#include <libvirt/libvirt.h>

namespace memtide::collectors {

namespace {

const virTypedParameter* typed(const void* params) {
  return static_cast<const virTypedParameter*>(params);
}

std::optional<std::uint64_t> times(std::optional<std::uint64_t> v, std::uint64_t factor) {
  if (!v) {
    return std::nullopt;
  }
  std::uint64_t r = 0;
  return __builtin_mul_overflow(*v, factor, &r) ? std::nullopt : std::optional(r);
}

// A guest statistics' last-update time (Unix seconds) as the policy may compute with it: one past
// 2^40 s (34,000 years) is damage, not a time, and is dropped rather than overflow later sums.
std::optional<std::int64_t> unix_seconds(std::uint64_t v) {
  return v <= (std::uint64_t{1} << 40) ? std::optional(static_cast<std::int64_t>(v)) : std::nullopt;
}

}  // namespace

VmState to_vm_state(int libvirt_state) {
  switch (libvirt_state) {
    case VIR_DOMAIN_RUNNING:
      return VmState::running;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
      return VmState::paused;
    case VIR_DOMAIN_SHUTOFF:
    case VIR_DOMAIN_SHUTDOWN:
      return VmState::shutoff;
    case VIR_DOMAIN_CRASHED:
      return VmState::crashed;
    default:
      return VmState::other;
  }
}

std::optional<std::uint64_t> param_u64(const void* params, int n, const char* name) {
  const auto* p = typed(params);
  for (int i = 0; i < n; ++i) {
    if (std::strcmp(p[i].field, name) != 0) {
      continue;
    }
    switch (p[i].type) {
      case VIR_TYPED_PARAM_ULLONG:
        return p[i].value.ul;
      case VIR_TYPED_PARAM_LLONG:
        return p[i].value.l >= 0 ? std::optional<std::uint64_t>(p[i].value.l) : std::nullopt;
      case VIR_TYPED_PARAM_UINT:
        return p[i].value.ui;
      case VIR_TYPED_PARAM_INT:
        return p[i].value.i >= 0 ? std::optional<std::uint64_t>(p[i].value.i) : std::nullopt;
      default:
        return std::nullopt;
    }
  }
  return std::nullopt;
}

std::optional<std::uint64_t> disk_read_bytes(const void* params, int n) {
  const auto count = param_u64(params, n, "block.count");
  if (!count) {
    return std::nullopt;
  }
  std::uint64_t total = 0;
  for (std::uint64_t i = 0; i < std::min<std::uint64_t>(*count, 4096); ++i) {
    const std::string field = "block." + std::to_string(i) + ".rd.bytes";
    const auto read = param_u64(params, n, field.c_str()).value_or(0);
    if (read > UINT64_MAX - total) {
      return std::nullopt;
    }
    total += read;
  }
  return total;
}

std::optional<BalloonFigures> bulk_balloon_figures(const void* b, int n) {
  const auto current = param_u64(b, n, "balloon.current");
  if (!current) {
    return std::nullopt;
  }
  BalloonFigures f;
  const auto current_bytes = times(current, KiB);
  const auto max_bytes = times(param_u64(b, n, "balloon.maximum").value_or(0), KiB);
  if (!current_bytes || !max_bytes) {
    f.invalid_sizes = "a size in KiB overflows in bytes";
  }
  f.current_bytes = current_bytes.value_or(0);
  f.max_bytes = max_bytes.value_or(0);
  auto& g = f.guest;
  g.swap_in_bytes_total = times(param_u64(b, n, "balloon.swap_in"), KiB);
  g.swap_out_bytes_total = times(param_u64(b, n, "balloon.swap_out"), KiB);
  g.major_faults_total = param_u64(b, n, "balloon.major_fault");
  g.minor_faults_total = param_u64(b, n, "balloon.minor_fault");
  g.unused_bytes = times(param_u64(b, n, "balloon.unused"), KiB);
  g.total_bytes = times(param_u64(b, n, "balloon.available"), KiB);
  g.usable_bytes = times(param_u64(b, n, "balloon.usable"), KiB);
  g.disk_caches_bytes = times(param_u64(b, n, "balloon.disk_caches"), KiB);
  if (auto t = param_u64(b, n, "balloon.last-update")) {
    g.last_update_unix_s = unix_seconds(*t);
  }
  f.host_rss_bytes = times(param_u64(b, n, "balloon.rss"), KiB);
  return f;
}

namespace {

void add_memory_stat(BalloonFigures& f, const virDomainMemoryStatStruct& stat) {
  const auto v = static_cast<std::uint64_t>(stat.val);
  auto& g = f.guest;
  switch (stat.tag) {
    case VIR_DOMAIN_MEMORY_STAT_SWAP_IN:
      g.swap_in_bytes_total = times(v, KiB);
      break;
    case VIR_DOMAIN_MEMORY_STAT_SWAP_OUT:
      g.swap_out_bytes_total = times(v, KiB);
      break;
    case VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT:
      g.major_faults_total = v;
      break;
    case VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT:
      g.minor_faults_total = v;
      break;
    case VIR_DOMAIN_MEMORY_STAT_UNUSED:
      g.unused_bytes = times(v, KiB);
      break;
    case VIR_DOMAIN_MEMORY_STAT_AVAILABLE:
      g.total_bytes = times(v, KiB);
      break;
    case VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON:
      f.current_bytes = times(v, KiB).value_or(kMaxPlausibleBytes + 1);
      break;
    case VIR_DOMAIN_MEMORY_STAT_RSS:
      f.host_rss_bytes = times(v, KiB);
      break;
    case VIR_DOMAIN_MEMORY_STAT_USABLE:
      g.usable_bytes = times(v, KiB);
      break;
    case VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE:
      g.last_update_unix_s = unix_seconds(v);
      break;
    case VIR_DOMAIN_MEMORY_STAT_DISK_CACHES:
      g.disk_caches_bytes = times(v, KiB);
      break;
    default:
      break;
  }
}

}  // namespace

BalloonFigures figures_from_domain_calls(virDomainPtr dom, std::optional<unsigned long>& max_kib,
                                         bool ask_info, VmState* state) {
  // The maximum is asked for when the caller says (the domain's XML was read: first seen, or an
  // event since) and when it is not known: a running domain's maximum changes only with its
  // definition, and commands check it again anyway. The balloon's size comes from the
  // actual-balloon statistic when the guest reports it, so virDomainGetInfo, a second call into
  // the driver per domain and tick, is made only when something is not known otherwise.
  virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
  const int n = virDomainMemoryStats(dom, stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  const bool actual_reported =
      std::any_of(stats, stats + std::max(n, 0), [](const virDomainMemoryStatStruct& s) {
        return s.tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON;
      });
  BalloonFigures f;
  f.from_domain_calls = true;
  if (ask_info || !max_kib || !actual_reported || state != nullptr) {
    virDomainInfo info{};
    if (virDomainGetInfo(dom, &info) == 0) {
      max_kib = info.maxMem;
      const auto current = times(info.memory, KiB);
      if (!current) {
        f.invalid_sizes = "a size in KiB overflows in bytes";
      }
      f.current_bytes = current.value_or(0);
      if (state != nullptr) {
        *state = to_vm_state(info.state);
      }
    } else {
      max_kib.reset();
    }
  }
  if (max_kib) {
    const auto max = times(*max_kib, KiB);
    if (!max) {
      f.invalid_sizes = "a size in KiB overflows in bytes";
    }
    f.max_bytes = max.value_or(0);
  }
  for (int i = 0; i < n; ++i) {
    add_memory_stat(f, stats[i]);
  }
  return f;
}

}  // namespace memtide::collectors
