// What libvirt's statistics say about a domain's memory, read from its typed parameters (bulk
// statistics records) or from the per-domain calls of drivers without the bulk balloon group.
// Pure reading: no state, no connection.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <memtide/core/vm_sample.hpp>

typedef struct _virDomain* virDomainPtr;  // NOLINT(bugprone-reserved-identifier)

namespace memtide::collectors {

// libvirt gives memory sizes in KiB.
inline constexpr std::uint64_t KiB = 1024;

// What a domain's balloon statistics said when they were last asked for.
struct BalloonFigures {
  std::uint64_t current_bytes = 0;
  std::uint64_t max_bytes = 0;
  std::optional<std::uint64_t> host_rss_bytes;
  std::int64_t asked_ms = 0;  // the collector's clock
  GuestMemory guest;
  std::optional<std::string> invalid_sizes;
  // Answered per domain (no bulk balloon group): the actual-balloon statistic, which leaves
  // out what virtio-mem devices plug.
  bool from_domain_calls = false;
};

VmState to_vm_state(int libvirt_state);

// A typed parameter `name` as an unsigned count; nullopt when absent, negative or not a number.
// `params` is a virTypedParameterPtr.
std::optional<std::uint64_t> param_u64(const void* params, int n, const char* name);

// The balloon group of a bulk statistics record; nullopt when it has none (the driver does not
// offer the group).
std::optional<BalloonFigures> bulk_balloon_figures(const void* params, int n);

// What the guest read from all its disks (block.N.rd.bytes summed over block.count) in a bulk
// statistics record; nullopt without the block group, or when a sum overflows (a counter no
// disk could reach).
std::optional<std::uint64_t> disk_read_bytes(const void* params, int n);

// The same from per-domain calls (virDomainMemoryStats, and virDomainGetInfo when something is
// not known otherwise). `max_kib`: the domain's maximum as last asked, updated here when asked
// again; `ask_info`: ask virDomainGetInfo whatever is known. `state`, when not null, is
// unknown otherwise: virDomainGetInfo is asked and it receives the domain's state.
BalloonFigures figures_from_domain_calls(virDomainPtr dom, std::optional<unsigned long>& max_kib,
                                         bool ask_info, VmState* state);

}  // namespace memtide::collectors
