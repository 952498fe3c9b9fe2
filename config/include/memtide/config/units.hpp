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
#include <variant>

#include <memtide/core/result.hpp>

namespace memtide::config {

Result<std::uint64_t> parse_size(std::string_view text);

// Returns the ratio: "20%" -> 0.2. The percent sign is required.
Result<double> parse_percent(std::string_view text);

Result<std::chrono::milliseconds> parse_duration(std::string_view text);

// A memory amount given either absolutely or as a share of some reference (e.g. a VM's maximum).
struct SizeOrRatio {
  std::variant<std::uint64_t, double> value;  // bytes, or a ratio in [0, 1]

  bool is_ratio() const { return value.index() == 1; }
  // Bytes this amounts to against `reference_bytes`.
  std::uint64_t resolve(std::uint64_t reference_bytes) const {
    if (is_ratio()) {
      return static_cast<std::uint64_t>(std::get<1>(value) * static_cast<double>(reference_bytes));
    }
    return std::get<0>(value);
  }
  friend bool operator==(const SizeOrRatio&, const SizeOrRatio&) = default;
};

// "30%" or "1GiB".
Result<SizeOrRatio> parse_size_or_percent(std::string_view text);

// Human-readable forms used in messages and docs: "2 GiB", "1.5 GiB", "20%", "90s".
std::string format_size(std::uint64_t bytes);
std::string format_duration(std::chrono::milliseconds d);

}  // namespace memtide::config
