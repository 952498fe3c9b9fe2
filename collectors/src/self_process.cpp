#include <filesystem>

#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/procfs_parsers.hpp>
#include <memtide/collectors/self_process.hpp>
#include <memtide/core/text.hpp>

#include "text.hpp"

namespace memtide::collectors {

namespace {

// btime from /proc/stat: the boot time in seconds since the epoch.
std::optional<std::uint64_t> boot_time() {
  const auto text = read_file("/proc/stat");
  if (!text) {
    return std::nullopt;
  }
  detail::Lines lines(*text);
  std::string_view line;
  while (lines.next(line)) {
    if (line.rfind("btime ", 0) == 0) {
      return detail::to_u64(detail::trim(line.substr(6)));
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<SelfProcess> read_self_process() {
  const auto text = read_file("/proc/self/stat");
  if (!text) {
    return std::nullopt;
  }
  const auto stat = parse_process_stat(*text, "/proc/self/stat");
  const long ticks = sysconf(_SC_CLK_TCK);
  if (!stat || ticks <= 0) {
    return std::nullopt;
  }
  SelfProcess p;
  p.cpu_seconds = static_cast<double>(stat->cpu_ticks) / static_cast<double>(ticks);
  p.virtual_bytes = stat->virtual_bytes.value_or(0);
  p.resident_bytes =
      stat->resident_pages.value_or(0) * static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  if (const auto btime = boot_time(); btime && stat->start_ticks) {
    p.start_time_seconds = static_cast<double>(*btime) +
                           static_cast<double>(*stat->start_ticks) / static_cast<double>(ticks);
  }
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator("/proc/self/fd", ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    ++p.open_fds;
  }
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    p.max_fds = limit.rlim_cur;
  }
  return p;
}

HostIdentity read_host_identity() {
  utsname u{};
  if (uname(&u) != 0) {
    return {};
  }
  // Label values: valid UTF-8 whatever the kernel holds.
  return {to_valid_utf8(u.nodename), to_valid_utf8(u.release), to_valid_utf8(u.machine)};
}

}  // namespace memtide::collectors
