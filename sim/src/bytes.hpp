// Sizes in the simulator are doubles while it computes; whole bytes where they leave it.
#pragma once

#include <cmath>
#include <cstdint>

namespace memtide::sim {

// `v` bytes rounded to whole bytes; 0 for anything not positive.
inline std::uint64_t bytes(double v) {
  return v <= 0 ? 0 : static_cast<std::uint64_t>(std::llround(v));
}

}  // namespace memtide::sim
