// A memory amount given either absolutely or as a share of a reference amount (a VM's maximum,
// say): what operators write as "1GiB" or "30%".
#pragma once

#include <cstdint>
#include <variant>

namespace memtide {

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

}  // namespace memtide
