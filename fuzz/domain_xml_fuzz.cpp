// Domain XML with memtide metadata: operator-written, so any bytes; the facts or an error, and
// every metadata error printable. Each virtio-mem device read is sent back with a new requested
// size: the element stays a device that reads back with that size, or the update is refused.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <memtide/collectors/domain_xml.hpp>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view xml(reinterpret_cast<const char*>(data), size);
  const auto r = memtide::collectors::parse_domain_xml(xml);
  if (!r) {
    return 0;
  }
  for (const auto& e : r->metadata_errors) {
    memtide::fuzz::require_valid_utf8(e, "a metadata error");
  }
  for (std::size_t i = 0; i < r->virtio_mem_xml.size(); ++i) {
    const std::uint64_t requested = r->virtio_mem[i].block_bytes / 1024 * 1024;
    const auto update = memtide::collectors::with_requested_size(r->virtio_mem_xml[i], requested);
    if (!update) {
      continue;
    }
    const auto back = memtide::collectors::parse_domain_xml("<domain><devices>" + *update +
                                                            "</devices></domain>");
    memtide::fuzz::require(back.ok() && back->virtio_mem.size() == 1 &&
                               (back->virtio_mem_invalid.has_value() ||
                                back->virtio_mem[0].requested_bytes == requested),
                           "a virtio-mem update reads back with the requested size");
  }
  return 0;
}
