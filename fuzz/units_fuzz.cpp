// Sizes, percentages and durations as operators write them (config values, domain metadata).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <memtide/config/units.hpp>

#include "fuzz_check.hpp"

namespace {

template <typename R>
void check(const R& r) {
  if (!r) {
    memtide::fuzz::require_valid_utf8(r.error().message, "a units error");
    memtide::fuzz::require(r.error().message.size() < 400, "a units error quotes an excerpt");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace memtide::config;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  check(parse_size(text));
  check(parse_percent(text));
  check(parse_duration(text));
  check(parse_size_or_percent(text));
  if (const auto s = parse_size(text)) {
    // What format_size prints parses back (rounded for display, never an error).
    memtide::fuzz::require(parse_size(format_size(*s)).ok(), "format_size parses back");
  }
  return 0;
}
