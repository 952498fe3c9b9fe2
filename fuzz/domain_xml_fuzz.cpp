// Domain XML with memtide metadata: operator-written, so any bytes; the facts or an error, and
// every metadata error printable.
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
  return 0;
}
