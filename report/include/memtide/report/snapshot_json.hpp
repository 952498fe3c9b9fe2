// The JSON form of a Snapshot, as printed by `memtided --once` and written to traces (one
// snapshot per line). Figures keep the struct's units (bytes, seconds, ratios); anything the
// kernel does not provide is null, and `unavailable` lists the sources that were missing so a
// reader need not guess why.
//
// The form is exact: from_json(to_json(s)) == s for every Snapshot, so a replayed trace gives
// decide() the very values the daemon saw. Both directions are generated from one field list.
#pragma once

#include <string_view>

#include <nlohmann/json.hpp>

#include <memtide/core/result.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::report {

// Version of the form, written as "format": readers refuse other versions rather than guess.
inline constexpr int kSnapshotFormat = 1;

nlohmann::ordered_json to_json(const Snapshot& snapshot);

// "2026-11-28T04:07:32.521Z" for a wall-clock time in milliseconds since the epoch.
std::string format_utc(std::int64_t unix_ms);

// The Snapshot in `j`; an error names the first missing or mistyped key by its path
// ("vms[3].guest.usable_bytes: expected a number").
Result<Snapshot> from_json(const nlohmann::json& j);

}  // namespace memtide::report
