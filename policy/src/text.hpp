// Formatting shared by the policy's reasons (internal to policy/).
#pragma once

#include <cmath>
#include <string>

namespace memtide::policy {

// "38%" for 0.38: whole percent, as operators read reasons.
inline std::string percent(double ratio) {
  return std::to_string(std::llround(ratio * 100)) + "%";
}

}  // namespace memtide::policy
