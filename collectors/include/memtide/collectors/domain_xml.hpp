// What memtide reads from a libvirt domain's XML description: balloon device facts, whether the
// operator withheld page sharing, and memtide's own per-VM settings in <metadata>:
//
//   <metadata>
//     <memtide:vm xmlns:memtide="urn:memtide:domain:1"
//                 class="web" floor="1GiB" shares="500" balloon="on" scan="off"/>
//   </metadata>
//
// Pure functions over the XML text.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include <memtide/core/result.hpp>
#include <memtide/core/vm_sample.hpp>

namespace memtide::collectors {

inline constexpr const char* kMetadataNamespace = "urn:memtide:domain:1";
// memtided's record, in a transient domain's live <metadata>, of the sizes its virtio-mem devices
// were first seen with (a transient domain has no inactive XML to take them from):
//   <boot:virtio-mem xmlns:boot="urn:memtide:boot:1" requested="virtiomem0=536870912"/>
// with one ALIAS=BYTES per device, space-separated. It lives as long as the domain, so a
// restarted memtided and the unit's safety net read it after memtided died.
inline constexpr const char* kBootNamespace = "urn:memtide:boot:1";

struct DomainXmlFacts {
  bool has_balloon = true;           // <memballoon model='none'/> or no memballoon: false
  std::uint32_t stats_period_s = 0;  // <memballoon><stats period='N'/>; 0 when absent
  // <memballoon autodeflate='on'>: the guest deflates its balloon itself before it runs out of
  // memory, so a shrunk guest can survive a sudden burst without the host's help.
  bool autodeflate = false;
  // <memballoon freePageReporting='on'>: the guest returns its free pages to the host by itself.
  bool free_page_reporting = false;
  bool sharing_allowed = true;         // false with <memoryBacking><nosharepages/>
  std::vector<MemoryPin> memory_pins;  // what keeps all guest RAM on the host, in enum order
  // The uid QEMU runs as, from the live XML's DAC security label
  // (<seclabel model='dac'><label>+64055:+64055</label>); unset without one.
  std::optional<std::uint32_t> qemu_uid;
  VmMetadata metadata;
  std::vector<std::string> metadata_errors;  // each names the attribute and what is wrong
  // <devices><memory model='virtio-mem'>, in document order (configured_bytes is its
  // requested size here), each with the element as libvirt wrote it: libvirt identifies the
  // device to update by its alias and address, so an update sends the element back whole.
  std::vector<VirtioMemDevice> virtio_mem;
  std::vector<std::string> virtio_mem_xml;
  // The boot record above, by alias (entries that are not ALIAS=BYTES are left out).
  std::map<std::string, std::uint64_t> virtio_mem_boot_bytes;
  // Set when a virtio-mem device's sizes cannot be real or are not whole blocks: why. Such a
  // VM is left alone (VmSample::invalid_sizes).
  std::optional<std::string> virtio_mem_invalid;
};

// At most this many virtio-mem devices are read from one domain (QEMU allows 256 memory slots).
inline constexpr std::size_t kMaxVirtioMemDevices = 256;

// Parses a domain's XML (virDomainGetXMLDesc). Fails only when the XML itself is not
// well-formed; invalid memtide metadata is reported in metadata_errors and otherwise ignored.
Result<DomainXmlFacts> parse_domain_xml(std::string_view xml);

// A virtio-mem device element (DomainXmlFacts::virtio_mem_xml) with its <requested> set to
// `requested_bytes` (written in KiB), for virDomainUpdateDeviceFlags. Fails when the element is
// not a virtio-mem device or `requested_bytes` is not a whole number of KiB.
Result<std::string> with_requested_size(std::string_view device_xml, std::uint64_t requested_bytes);

// The boot record's element for `devices` (their aliases and configured_bytes); devices whose
// alias is not plain ([A-Za-z0-9_-]) are left out.
std::string boot_record_xml(const std::vector<VirtioMemDevice>& devices);

}  // namespace memtide::collectors
