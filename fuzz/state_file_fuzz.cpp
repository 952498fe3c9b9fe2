// The policy state file read back at start: the state or an error, never a crash, and a state
// that survives saving again.
#include <cstddef>
#include <cstdint>
#include <string>

#include "fuzz_check.hpp"
#include "state_file.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace memtide::daemon;
  const std::string text(reinterpret_cast<const char*>(data), size);
  constexpr std::int64_t kMono = 1'000'000'000;
  constexpr std::int64_t kUnix = 1'780'000'000'000;
  const auto state = state_from_json(text, kMono, kUnix);
  if (!state) {
    memtide::fuzz::require_valid_utf8(state.error().message, "a state error");
    return 0;
  }
  const auto again = state_from_json(state_to_json(*state, kMono, kUnix), kMono, kUnix);
  memtide::fuzz::require(again.ok(), "a state read back can be saved and read again");
  return 0;
}
