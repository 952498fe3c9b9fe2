// Times for people in memtidectl's output.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>

namespace memtide::ctl {

// Seconds since the epoch of an RFC 3339 UTC time as the daemon writes it
// ("2026-11-28T04:07:32.521Z"), or nullopt.
std::optional<std::time_t> parse_utc(const std::string& text);

// "3 s ago", "5 min ago", "2 h ago", "4 d ago" ("in 2 s" when the daemon's clock is ahead).
std::string age_text(std::time_t at, std::time_t now);

// A time from the daemon for people: as sent (RFC 3339 UTC) with `utc`, else local time (the
// date too when not today) and its age: "14:02:11 (3 s ago)".
std::string time_text(const std::string& utc_text, bool utc);

// HH:MM:SS of `unix_ms` (local time, or UTC with `utc` and a "Z"), with the date when it is not
// today's.
std::string clock_text(std::int64_t unix_ms, bool utc);

}  // namespace memtide::ctl
