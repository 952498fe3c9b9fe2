// Pure parsers for the /proc files memtide reads. No I/O: each takes the file's whole text and
// the origin to name in errors (normally the path it was read from). Errors carry that origin
// and the 1-based line. Unknown keys are ignored (kernels add fields); malformed values, missing
// required keys and values that overflow 64 bits after unit conversion are errors.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include <memtide/core/host_sample.hpp>
#include <memtide/core/result.hpp>

namespace memtide::collectors {

Result<MemInfo> parse_meminfo(std::string_view text, std::string_view origin = "/proc/meminfo");

// `page_size_bytes` converts the page counters (pswpin, pgscan_*, ...) to bytes.
Result<VmStat> parse_vmstat(std::string_view text, std::uint64_t page_size_bytes,
                            std::string_view origin = "/proc/vmstat");

// One of /proc/pressure/{memory,io,cpu}. A "some" line is required; "full" is optional.
Result<Pressure> parse_pressure(std::string_view text, std::string_view origin);

// /proc/swaps: a header line, then one row per active swap area.
Result<std::vector<SwapDevice>> parse_swaps(std::string_view text,
                                            std::string_view origin = "/proc/swaps");

// /proc/PID/stat: the command name (between the first '(' and the last ')', spaces allowed) and
// utime + stime, in clock ticks.
struct ProcessCpu {
  std::string comm;
  std::uint64_t cpu_ticks = 0;  // utime + stime, in clock ticks
  // Fields 22-24 (older or truncated stat lines may lack them): start time in clock ticks since
  // boot, virtual memory in bytes, resident pages.
  std::optional<std::uint64_t> start_ticks;
  std::optional<std::uint64_t> virtual_bytes;
  std::optional<std::uint64_t> resident_pages;
};
Result<ProcessCpu> parse_process_stat(std::string_view text, std::string_view origin);

}  // namespace memtide::collectors
