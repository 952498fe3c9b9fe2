// Parsing of the units operators write in memtide.yaml. Pure functions; on failure the Error's
// message says what was expected (the loader adds file:line:column and the key path).
//
//   sizes      "512MiB", "2GiB", "1.5TiB", "4096B", "0"   (binary prefixes only: KiB MiB GiB TiB)
//   percent    "20%", "12.5%"                              (0..100, returned as a ratio 0..1)
//   durations  "250ms", "5s", "1m", "1h", "1.5s"
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <memtide/core/result.hpp>
#include <memtide/core/size_or_ratio.hpp>

namespace memtide::config {

using memtide::SizeOrRatio;

Result<std::uint64_t> parse_size(std::string_view text);
// A rate in bytes per second: a size followed by "/s" ("256MiB/s"); a bare size is read as per
// second too (the loader warns about that spelling).
Result<std::uint64_t> parse_rate(std::string_view text);

// Returns the ratio: "20%" -> 0.2. The percent sign is required.
Result<double> parse_percent(std::string_view text);

Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// "30%" or "1GiB".
Result<SizeOrRatio> parse_size_or_percent(std::string_view text);

// Human-readable forms used in messages and docs: "2 GiB", "1.5 GiB", "20%", "90s".
std::string format_size(std::uint64_t bytes);
std::string format_duration(std::chrono::milliseconds d);

}  // namespace memtide::config
