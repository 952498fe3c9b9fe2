#include "libvirt_domain.hpp"

#include <functional>
#include <vector>

#include <libvirt/libvirt.h>

#include <memtide/collectors/hypervisor.hpp>
#include <memtide/collectors/libvirt_connection.hpp>

#include "libvirt_stats.hpp"

namespace memtide::collectors {

namespace {

void load_configured_virtio_mem(virDomainPtr dom, DomainXmlFacts& facts, BootSizes& boot,
                                bool record_boot_sizes) {
  auto& devices = facts.virtio_mem;
  // A persistent domain's configuration holds the sizes it starts with; its devices carry no
  // alias there, so they are matched by their order, which libvirt keeps.
  if (virDomainIsPersistent(dom) == 1) {
    if (char* xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE)) {
      auto configured = parse_domain_xml(xml);
      free(xml);  // NOLINT: allocated by libvirt
      if (configured && configured->virtio_mem.size() == devices.size()) {
        for (std::size_t i = 0; i < devices.size(); ++i) {
          devices[i].configured_bytes = configured->virtio_mem[i].configured_bytes;
        }
        return;
      }
    }
  }
  // A transient domain (or an unreadable configuration): memtide's boot record, else the sizes
  // first seen (recorded) or, by a client that records nothing, the device's full size.
  bool unrecorded = false;
  for (auto& device : devices) {
    const auto recorded = facts.virtio_mem_boot_bytes.find(device.alias);
    if (recorded != facts.virtio_mem_boot_bytes.end() && recorded->second <= device.max_bytes) {
      device.configured_bytes = recorded->second;
    } else if (record_boot_sizes) {
      device.configured_bytes =
          boot.first_requested.emplace(device.alias, device.requested_bytes).first->second;
      unrecorded = true;
    } else {
      device.configured_bytes = device.max_bytes;
    }
  }
  if (unrecorded && !boot.record_tried) {
    // Once per domain: a failure (an old libvirt, a driver without live metadata) is not
    // retried every time the XML is read. The change's event reads the XML again.
    boot.record_tried = true;
    const std::string record = boot_record_xml(devices);
    virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, record.c_str(), "memtideboot",
                         kBootNamespace, VIR_DOMAIN_AFFECT_LIVE);
  }
}

Status set_virtio_mem(virDomainPtr dom, DomainXmlFacts& facts,
                      const std::vector<std::uint64_t>& requested) {
  auto& devices = facts.virtio_mem;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    auto& device = devices[i];
    if (requested[i] == device.requested_bytes) {
      continue;
    }
    // Guardrail, whatever the split computed: whole blocks, within the device.
    if (device.block_bytes == 0 || requested[i] % device.block_bytes != 0 ||
        requested[i] > device.max_bytes) {
      return Error{"", 0, 0,
                   "refusing virtio-mem size " + std::to_string(requested[i]) + " for " +
                       device.alias + ": not whole blocks within its size"};
    }
    auto xml = with_requested_size(facts.virtio_mem_xml[i], requested[i]);
    if (!xml) {
      return Error{"", 0, 0, device.alias + ": " + xml.error().message};
    }
    if (virDomainUpdateDeviceFlags(dom, xml->c_str(), VIR_DOMAIN_AFFECT_LIVE) != 0) {
      return libvirt_error("cannot resize virtio-mem device " + device.alias + " of " +
                           domain_name(dom));
    }
    device.requested_bytes = requested[i];
    facts.virtio_mem_xml[i] = std::move(*xml);
  }
  return Ok{};
}

Status set_balloon(virDomainPtr dom, std::uint64_t kib) {
  if (virDomainSetMemoryFlags(dom, static_cast<unsigned long>(kib), VIR_DOMAIN_AFFECT_LIVE) != 0) {
    return libvirt_error("cannot set balloon of " + domain_name(dom));
  }
  return Ok{};
}

}  // namespace

std::optional<DomainXmlFacts> read_domain_facts(virDomainPtr dom, BootSizes& boot,
                                                bool record_boot_sizes) {
  char* xml = virDomainGetXMLDesc(dom, 0);
  if (xml == nullptr) {
    return std::nullopt;  // gone meanwhile; the next listing drops it
  }
  auto facts = parse_domain_xml(xml);
  free(xml);  // NOLINT: allocated by libvirt
  if (!facts) {
    DomainXmlFacts unreadable;
    unreadable.metadata_errors.push_back(facts.error().message);
    return unreadable;
  }
  if (!facts->virtio_mem.empty()) {
    load_configured_virtio_mem(dom, *facts, boot, record_boot_sizes);
  }
  return std::move(*facts);
}

Result<std::uint64_t> resize_domain(virDomainPtr dom, std::uint64_t max_kib,
                                    std::uint64_t target_kib, DomainXmlFacts* facts) {
  if (facts == nullptr || facts->virtio_mem.empty()) {
    if (auto done = set_balloon(dom, target_kib); !done) {
      return done.error();
    }
    return target_kib * KiB;
  }
  if (facts->virtio_mem_invalid) {
    return Error{"", 0, 0, *facts->virtio_mem_invalid};
  }
  // The balloon's share is below its ceiling: the maximum without the devices' sizes.
  const std::uint64_t ceiling = balloon_ceiling(max_kib * KiB, facts->virtio_mem);
  const auto split = split_memory_size(target_kib * KiB, ceiling, facts->virtio_mem);
  // What grows is changed first, what shrinks second (within the devices' range the balloon
  // moves by less than a block against them), so a failure part way leaves the guest more
  // memory, never less, than both before and after.
  std::uint64_t devices_now = 0;
  for (const auto& device : facts->virtio_mem) {
    devices_now += device.requested_bytes;
  }
  const bool devices_grow = split.total_bytes() - split.balloon_bytes > devices_now;
  auto set_balloon_part = [&] { return set_balloon(dom, split.balloon_bytes / KiB); };
  auto set_devices_part = [&] { return set_virtio_mem(dom, *facts, split.requested_bytes); };
  for (const auto& step :
       devices_grow ? std::vector<std::function<Status()>>{set_devices_part, set_balloon_part}
                    : std::vector<std::function<Status()>>{set_balloon_part, set_devices_part}) {
    if (auto done = step(); !done) {
      return done.error();
    }
  }
  return split.total_bytes() / KiB * KiB;
}

}  // namespace memtide::collectors
