// A trace line, as `memtidectl simulate` reads it: either a Snapshot that survives a round trip
// exactly, or an error naming the key.
#include <cstddef>
#include <cstdint>
#include <string>

#include <memtide/report/json_text.hpp>
#include <memtide/report/snapshot_json.hpp>
#include <memtide/trace/trace.hpp>

#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace memtide::report;
  const std::string line(reinterpret_cast<const char*>(data), size);
  if (json_nesting_exceeds(line, memtide::trace::kMaxTraceNesting)) {
    return 0;  // read_trace refuses these before parsing
  }
  const auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return 0;
  }
  const auto snapshot = from_json(j);
  if (!snapshot) {
    memtide::fuzz::require_valid_utf8(snapshot.error().message, "a snapshot error");
    return 0;
  }
  const std::string text = dump_json(to_json(*snapshot));
  const auto back = from_json(nlohmann::json::parse(text));
  memtide::fuzz::require(back.ok() && *back == *snapshot, "a snapshot round-trips exactly");
  return 0;
}
