// Sizes in bytes, for tests. One definition for every test file: a unity build compiles several
// files as one, where a constant each file defined for itself would be defined twice.
#pragma once

#include <cstdint>

namespace memtide::test_sizes {

inline constexpr std::uint64_t KiB = 1ULL << 10;
inline constexpr std::uint64_t MiB = 1ULL << 20;
inline constexpr std::uint64_t GiB = 1ULL << 30;

}  // namespace memtide::test_sizes
