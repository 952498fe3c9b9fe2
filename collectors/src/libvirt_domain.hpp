// What memtide reads from one libvirt domain's definition (its XML facts, with the virtio-mem
// sizes a restore returns to) and how it sets the domain's memory size. No inventory, no
// connection state: the caller holds both.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <memtide/collectors/domain_xml.hpp>
#include <memtide/core/result.hpp>

typedef struct _virDomain* virDomainPtr;  // NOLINT(bugprone-reserved-identifier)

namespace memtide::collectors {

// A transient domain's virtio-mem boot sizes as memtide learnt them (see
// LibvirtOptions::record_boot_sizes), kept by the caller across readings of its XML.
struct BootSizes {
  // The devices' requested sizes when first seen, by alias: what a restore returns to.
  std::map<std::string, std::uint64_t> first_requested;
  bool record_tried = false;  // memtide's boot record was written (or tried) for it
};

// `dom`'s facts from its live XML; nullopt when it is gone meanwhile. An unreadable XML gives
// facts holding the error in metadata_errors. With `record_boot_sizes`, a transient domain's
// virtio-mem sizes first seen are recorded in its live metadata (once per domain).
std::optional<DomainXmlFacts> read_domain_facts(virDomainPtr dom, BootSizes& boot,
                                                bool record_boot_sizes);

// Sets `dom`'s memory to `target_kib` (already clamped to [floor, max_kib]) through its balloon
// and, where `facts` has them, its virtio-mem devices (split_memory_size says which carries
// what); `facts`' devices are updated to what was requested. Returns the size requested. What
// grows is changed first, so a failure part way leaves the guest more memory, never less.
Result<std::uint64_t> resize_domain(virDomainPtr dom, std::uint64_t max_kib,
                                    std::uint64_t target_kib, DomainXmlFacts* facts);

}  // namespace memtide::collectors
