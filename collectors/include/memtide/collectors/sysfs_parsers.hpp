// Pure parsers for single-value sysfs attributes such as /sys/kernel/mm/ksm/*.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <memtide/core/result.hpp>

namespace memtide::collectors {

// A file holding one unsigned decimal number and an optional trailing newline.
Result<std::uint64_t> parse_sysfs_u64(std::string_view text, std::string_view origin);

// A file holding one signed decimal number (e.g. ksm/general_profit).
Result<std::int64_t> parse_sysfs_i64(std::string_view text, std::string_view origin);

// A selection file such as "[none] scan-time": returns the bracketed choice ("none").
Result<std::string> parse_sysfs_choice(std::string_view text, std::string_view origin);

}  // namespace memtide::collectors
