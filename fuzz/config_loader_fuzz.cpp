// The YAML loader: any text gives a Config or located errors, with printable messages.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <memtide/config/loader.hpp>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto r = memtide::config::load_config_string(text, "fuzz.yaml");
  memtide::fuzz::require(r.ok() == r.errors.empty(), "a config exactly when there is no error");
  for (const auto& e : r.errors) {
    memtide::fuzz::require_valid_utf8(e.to_string(), "a config error");
  }
  return 0;
}
