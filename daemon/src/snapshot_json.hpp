// The JSON form of a Snapshot, as printed by `memtided --once` and written to traces. Figures
// keep the struct's units (bytes, seconds, ratios); anything the kernel does not provide is null,
// and `unavailable` lists the sources that were missing so a reader need not guess why.
#pragma once

#include <nlohmann/json.hpp>

#include <memtide/core/snapshot.hpp>

namespace memtide::daemon {

nlohmann::ordered_json to_json(const Snapshot& snapshot);

}  // namespace memtide::daemon
