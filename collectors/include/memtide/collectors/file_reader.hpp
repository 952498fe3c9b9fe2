// Reading procfs/sysfs files. Separate from the parsers so they stay pure.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include <memtide/core/result.hpp>

namespace memtide::collectors {

// Pseudo-files are small; anything larger than this is treated as an error rather than read
// into memory without bound.
inline constexpr std::size_t kMaxPseudoFileBytes = std::size_t{4} << 20;

// Reads the whole file. Returns std::nullopt when the file does not exist (ENOENT, ENOTDIR) or
// the kernel has the feature compiled in but switched off (EOPNOTSUPP, as PSI does with psi=0):
// that is "unavailable", which callers report but do not treat as a failure. Any other failure
// is an Error carrying the path and errno.
Result<std::optional<std::string>> read_optional_file(const std::string& path,
                                                      std::size_t max_bytes = kMaxPseudoFileBytes);

// Like read_optional_file, but a missing file is an error too.
Result<std::string> read_file(const std::string& path, std::size_t max_bytes = kMaxPseudoFileBytes);

}  // namespace memtide::collectors
