#include <array>
#include <string>

#include <memtide/collectors/procfs_parsers.hpp>
#include <memtide/core/text.hpp>

#include "text.hpp"

namespace memtide::collectors {

using detail::checked_mul;
using detail::content_error;
using detail::Lines;
using detail::quote;
using detail::to_u64;
using detail::trim;

namespace {

// One /proc/meminfo key: either a required or an optional destination, in KiB or a plain count.
struct MeminfoField {
  std::string_view key;
  std::uint64_t MemInfo::*required = nullptr;
  std::optional<std::uint64_t> MemInfo::*optional = nullptr;
  bool in_kib = true;
};

constexpr std::array kMeminfoFields{
    MeminfoField{"MemTotal", &MemInfo::total_bytes},
    MeminfoField{"MemFree", &MemInfo::free_bytes},
    MeminfoField{"MemAvailable", &MemInfo::available_bytes},
    MeminfoField{"Buffers", &MemInfo::buffers_bytes},
    MeminfoField{"Cached", &MemInfo::cached_bytes},
    MeminfoField{"SwapCached", &MemInfo::swap_cached_bytes},
    MeminfoField{"SwapTotal", &MemInfo::swap_total_bytes},
    MeminfoField{"SwapFree", &MemInfo::swap_free_bytes},
    MeminfoField{"Active(anon)", nullptr, &MemInfo::active_anon_bytes},
    MeminfoField{"Inactive(anon)", nullptr, &MemInfo::inactive_anon_bytes},
    MeminfoField{"Active(file)", nullptr, &MemInfo::active_file_bytes},
    MeminfoField{"Inactive(file)", nullptr, &MemInfo::inactive_file_bytes},
    MeminfoField{"Unevictable", nullptr, &MemInfo::unevictable_bytes},
    MeminfoField{"Mlocked", nullptr, &MemInfo::mlocked_bytes},
    MeminfoField{"Dirty", nullptr, &MemInfo::dirty_bytes},
    MeminfoField{"Writeback", nullptr, &MemInfo::writeback_bytes},
    MeminfoField{"AnonPages", nullptr, &MemInfo::anon_pages_bytes},
    MeminfoField{"Mapped", nullptr, &MemInfo::mapped_bytes},
    MeminfoField{"Shmem", nullptr, &MemInfo::shmem_bytes},
    MeminfoField{"SReclaimable", nullptr, &MemInfo::slab_reclaimable_bytes},
    MeminfoField{"SUnreclaim", nullptr, &MemInfo::slab_unreclaimable_bytes},
    MeminfoField{"PageTables", nullptr, &MemInfo::page_tables_bytes},
    MeminfoField{"CommitLimit", nullptr, &MemInfo::commit_limit_bytes},
    MeminfoField{"Committed_AS", nullptr, &MemInfo::committed_as_bytes},
    MeminfoField{"AnonHugePages", nullptr, &MemInfo::anon_huge_pages_bytes},
    MeminfoField{"HugePages_Total", nullptr, &MemInfo::hugepages_total, false},
    MeminfoField{"HugePages_Free", nullptr, &MemInfo::hugepages_free, false},
    MeminfoField{"Hugepagesize", nullptr, &MemInfo::hugepage_size_bytes},
    MeminfoField{"Hugetlb", nullptr, &MemInfo::hugetlb_bytes},
};

constexpr std::size_t kRequiredMeminfoFields = 8;  // the leading entries of kMeminfoFields

}  // namespace

Result<MemInfo> parse_meminfo(std::string_view text, std::string_view origin) {
  MemInfo info;
  std::array<int, kMeminfoFields.size()> seen_at_line{};
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    if (trim(line).empty()) {
      continue;
    }
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) {
      return content_error(origin, lines.number(), "expected 'Key: value', got " + quote(line));
    }
    const auto key = line.substr(0, colon);
    std::size_t index = 0;
    while (index < kMeminfoFields.size() && kMeminfoFields[index].key != key) {
      ++index;
    }
    if (index == kMeminfoFields.size()) {
      continue;  // a field memtide does not use
    }
    const auto& field = kMeminfoFields[index];
    if (seen_at_line[index] != 0) {
      return content_error(origin, lines.number(),
                           shorten_utf8(key, 40) + " appears twice (first on line " +
                               std::to_string(seen_at_line[index]) + ")");
    }
    seen_at_line[index] = lines.number();

    auto value_text = trim(line.substr(colon + 1));
    if (value_text.empty()) {
      return content_error(origin, lines.number(), shorten_utf8(key, 40) + ": missing value");
    }
    std::uint64_t multiplier = 1;
    if (field.in_kib) {
      if (value_text.size() < 3 || value_text.substr(value_text.size() - 3) != " kB") {
        return content_error(
            origin, lines.number(),
            shorten_utf8(key, 40) + ": expected a value in kB, got " + quote(value_text));
      }
      value_text = trim(value_text.substr(0, value_text.size() - 3));
      multiplier = 1024;
    }
    const auto number = to_u64(value_text);
    if (!number) {
      return content_error(
          origin, lines.number(),
          shorten_utf8(key, 40) + ": not a non-negative integer: " + quote(value_text));
    }
    const auto bytes = checked_mul(*number, multiplier);
    if (!bytes) {
      return content_error(origin, lines.number(),
                           shorten_utf8(key, 40) + ": value too large: " + quote(value_text));
    }
    if (field.required != nullptr) {
      info.*field.required = *bytes;
    } else {
      info.*field.optional = *bytes;
    }
  }
  for (std::size_t i = 0; i < kRequiredMeminfoFields; ++i) {
    if (seen_at_line[i] == 0) {
      return content_error(origin, 0,
                           "required field " + std::string(kMeminfoFields[i].key) + " is missing");
    }
  }
  return info;
}

namespace {

// How one /proc/vmstat counter maps into VmStat. Several kernel keys may add up into one
// destination (allocstall_dma + allocstall_normal + ...).
struct VmstatField {
  std::string_view key;
  std::uint64_t VmStat::*required = nullptr;
  std::optional<std::uint64_t> VmStat::*optional = nullptr;
  bool in_pages = false;
  bool summed = false;  // several keys feed this destination
  bool must_exist = false;
};

constexpr std::array kVmstatFields{
    VmstatField{"pgfault", &VmStat::page_faults_total, nullptr, false, false, true},
    VmstatField{"pgmajfault", &VmStat::major_faults_total, nullptr, false, false, true},
    VmstatField{"pswpin", &VmStat::swap_in_bytes_total, nullptr, true},
    VmstatField{"pswpout", &VmStat::swap_out_bytes_total, nullptr, true},
    VmstatField{"pgscan_kswapd", nullptr, &VmStat::scan_kswapd_bytes_total, true},
    VmstatField{"pgscan_direct", nullptr, &VmStat::scan_direct_bytes_total, true},
    VmstatField{"pgsteal_kswapd", nullptr, &VmStat::steal_kswapd_bytes_total, true},
    VmstatField{"pgsteal_direct", nullptr, &VmStat::steal_direct_bytes_total, true},
    VmstatField{"allocstall", nullptr, &VmStat::allocstall_total, false, true},
    VmstatField{"allocstall_dma", nullptr, &VmStat::allocstall_total, false, true},
    VmstatField{"allocstall_dma32", nullptr, &VmStat::allocstall_total, false, true},
    VmstatField{"allocstall_normal", nullptr, &VmStat::allocstall_total, false, true},
    VmstatField{"allocstall_movable", nullptr, &VmStat::allocstall_total, false, true},
    VmstatField{"allocstall_device", nullptr, &VmStat::allocstall_total, false, true},
    VmstatField{"workingset_refault", nullptr, &VmStat::workingset_refault_bytes_total, true, true},
    VmstatField{"workingset_refault_anon", nullptr, &VmStat::workingset_refault_bytes_total, true,
                true},
    VmstatField{"workingset_refault_file", nullptr, &VmStat::workingset_refault_bytes_total, true,
                true},
    VmstatField{"oom_kill", nullptr, &VmStat::oom_kills_total},
};

}  // namespace

Result<VmStat> parse_vmstat(std::string_view text, std::uint64_t page_size_bytes,
                            std::string_view origin) {
  VmStat stat;
  std::array<int, kVmstatFields.size()> seen_at_line{};
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    if (trim(line).empty()) {
      continue;
    }
    const auto space = line.find(' ');
    if (space == std::string_view::npos || space == 0) {
      return content_error(origin, lines.number(), "expected 'key value', got " + quote(line));
    }
    const auto key = line.substr(0, space);
    std::size_t index = 0;
    while (index < kVmstatFields.size() && kVmstatFields[index].key != key) {
      ++index;
    }
    if (index == kVmstatFields.size()) {
      continue;
    }
    const auto& field = kVmstatFields[index];
    if (seen_at_line[index] != 0) {
      return content_error(origin, lines.number(),
                           shorten_utf8(key, 40) + " appears twice (first on line " +
                               std::to_string(seen_at_line[index]) + ")");
    }
    seen_at_line[index] = lines.number();
    const auto value_text = trim(line.substr(space + 1));
    if (value_text.empty()) {
      return content_error(origin, lines.number(), shorten_utf8(key, 40) + ": missing value");
    }
    const auto number = to_u64(value_text);
    if (!number) {
      return content_error(
          origin, lines.number(),
          shorten_utf8(key, 40) + ": not a non-negative integer: " + quote(value_text));
    }
    auto value = field.in_pages ? checked_mul(*number, page_size_bytes) : number;
    if (!value) {
      return content_error(origin, lines.number(),
                           shorten_utf8(key, 40) + ": value too large: " + quote(value_text));
    }
    if (field.required != nullptr) {
      stat.*field.required = *value;
      continue;
    }
    auto& dest = stat.*field.optional;
    if (field.summed && dest.has_value()) {
      std::uint64_t sum = 0;
      if (__builtin_add_overflow(*dest, *value, &sum)) {
        return content_error(origin, lines.number(),
                             shorten_utf8(key, 40) + ": sum with related counters overflows");
      }
      dest = sum;
    } else {
      dest = *value;
    }
  }
  for (std::size_t i = 0; i < kVmstatFields.size(); ++i) {
    if (kVmstatFields[i].must_exist && seen_at_line[i] == 0) {
      return content_error(origin, 0,
                           "required counter " + std::string(kVmstatFields[i].key) + " is missing");
    }
  }
  return stat;
}

namespace {

// Parses "avg10=0.01 avg60=1.60 avg300=1.04 total=4533649" (the part after "some "/"full ").
Result<PressureLine> parse_pressure_fields(std::string_view rest, std::string_view origin,
                                           int line_number) {
  PressureLine out;
  bool have[4] = {false, false, false, false};
  static constexpr std::string_view kNames[4] = {"avg10", "avg60", "avg300", "total"};
  while (!rest.empty()) {
    const auto sp = rest.find(' ');
    const auto token = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
    if (token.empty()) {
      continue;
    }
    const auto eq = token.find('=');
    if (eq == std::string_view::npos) {
      return content_error(origin, line_number, "expected 'name=value', got " + quote(token));
    }
    const auto name = token.substr(0, eq);
    const auto value = token.substr(eq + 1);
    int which = -1;
    for (int i = 0; i < 4; ++i) {
      if (kNames[i] == name) {
        which = i;
      }
    }
    if (which < 0) {
      continue;  // a field a future kernel may add
    }
    if (have[which]) {
      return content_error(origin, line_number, shorten_utf8(name, 40) + " appears twice");
    }
    have[which] = true;
    if (which == 3) {
      const auto us = to_u64(value);
      if (!us) {
        return content_error(origin, line_number,
                             "total: not a non-negative integer: " + quote(value));
      }
      out.total_seconds = static_cast<double>(*us) / 1e6;
      continue;
    }
    const auto percent = detail::to_decimal(value);
    if (!percent || *percent > 100.0) {
      return content_error(
          origin, line_number,
          shorten_utf8(name, 40) + ": not a percentage in [0, 100]: " + quote(value));
    }
    const double ratio = *percent / 100.0;
    (which == 0 ? out.avg10_ratio : which == 1 ? out.avg60_ratio : out.avg300_ratio) = ratio;
  }
  for (int i = 0; i < 4; ++i) {
    if (!have[i]) {
      return content_error(origin, line_number, std::string(kNames[i]) + " is missing");
    }
  }
  return out;
}

}  // namespace

Result<Pressure> parse_pressure(std::string_view text, std::string_view origin) {
  Pressure pressure;
  int some_line = 0;
  int full_line = 0;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    if (trim(line).empty()) {
      continue;
    }
    const auto sp = line.find(' ');
    const auto kind = line.substr(0, sp);
    const auto rest = sp == std::string_view::npos ? std::string_view{} : line.substr(sp + 1);
    int& seen = kind == "some" ? some_line : full_line;
    if (kind != "some" && kind != "full") {
      return content_error(origin, lines.number(),
                           "expected a line starting with 'some' or 'full', got " + quote(line));
    }
    if (seen != 0) {
      return content_error(
          origin, lines.number(),
          std::string(kind) + " appears twice (first on line " + std::to_string(seen) + ")");
    }
    seen = lines.number();
    auto fields = parse_pressure_fields(rest, origin, lines.number());
    if (!fields) {
      return fields.error();
    }
    if (kind == "some") {
      pressure.some = *fields;
    } else {
      pressure.full = *fields;
    }
  }
  if (some_line == 0) {
    return content_error(origin, 0, "the 'some' line is missing");
  }
  return pressure;
}

namespace {

// /proc/swaps escapes space, tab, newline and backslash in paths as \ooo (seq_file's mangle).
std::string unescape_octal(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '3' && s[i + 2] >= '0' &&
        s[i + 2] <= '7' && s[i + 3] >= '0' && s[i + 3] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 + (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

}  // namespace

Result<std::vector<SwapDevice>> parse_swaps(std::string_view text, std::string_view origin) {
  std::vector<SwapDevice> devices;
  Lines lines(text);
  std::string_view line;
  if (!lines.next(line) || trim(line).substr(0, 8) != "Filename") {
    return content_error(origin, 1, "expected the header line starting with 'Filename'");
  }
  while (lines.next(line)) {
    if (trim(line).empty()) {
      continue;
    }
    // Columns are separated by runs of spaces or tabs; the path itself cannot contain either
    // (the kernel escapes them).
    std::vector<std::string_view> columns;
    std::string_view rest = line;
    while (true) {
      const auto b = rest.find_first_not_of(" \t");
      if (b == std::string_view::npos) {
        break;
      }
      rest = rest.substr(b);
      const auto e = rest.find_first_of(" \t");
      columns.push_back(rest.substr(0, e));
      rest = e == std::string_view::npos ? std::string_view{} : rest.substr(e);
    }
    if (columns.size() != 5) {
      return content_error(
          origin, lines.number(),
          "expected 5 columns (Filename Type Size Used Priority), got " + quote(line));
    }
    SwapDevice dev;
    dev.path = unescape_octal(columns[0]);
    dev.type = std::string(columns[1]);
    const auto size_kib = to_u64(columns[2]);
    const auto used_kib = to_u64(columns[3]);
    const auto priority = detail::to_i64(columns[4]);
    if (!size_kib || !used_kib) {
      return content_error(origin, lines.number(),
                           "Size and Used must be non-negative integers (KiB), got " + quote(line));
    }
    if (!priority || *priority < INT32_MIN || *priority > INT32_MAX) {
      return content_error(origin, lines.number(),
                           "Priority must be an integer, got " + quote(columns[4]));
    }
    const auto size = checked_mul(*size_kib, 1024);
    const auto used = checked_mul(*used_kib, 1024);
    if (!size || !used) {
      return content_error(origin, lines.number(), "Size or Used too large: " + quote(line));
    }
    dev.size_bytes = *size;
    dev.used_bytes = *used;
    dev.priority = static_cast<int>(*priority);
    devices.push_back(std::move(dev));
  }
  return devices;
}

Result<ProcessCpu> parse_process_stat(std::string_view text, std::string_view origin) {
  const auto open = text.find('(');
  const auto close = text.rfind(')');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open) {
    return content_error(origin, 1, "expected 'PID (COMM) STATE ...'");
  }
  ProcessCpu out;
  out.comm = to_valid_utf8(text.substr(open + 1, close - open - 1));
  // After the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt
  // utime stime cutime cstime priority nice num_threads itrealvalue starttime vsize rss ...
  std::string_view rest = text.substr(close + 1);
  std::optional<std::uint64_t> utime;
  std::optional<std::uint64_t> stime;
  for (int index = 0; index <= 21; ++index) {
    rest = rest.substr(std::min(rest.size(), rest.find_first_not_of(' ')));
    const auto end = std::min(rest.size(), rest.find_first_of(" \n"));
    const std::string_view field = rest.substr(0, end);
    rest.remove_prefix(end);
    std::optional<std::uint64_t>* into = index == 11   ? &utime
                                         : index == 12 ? &stime
                                         : index == 19 ? &out.start_ticks
                                         : index == 20 ? &out.virtual_bytes
                                         : index == 21 ? &out.resident_pages
                                                       : nullptr;
    if (into != nullptr) {
      *into = to_u64(field);
    }
  }
  if (!utime || !stime) {
    return content_error(origin, 1, "expected utime and stime (fields 14 and 15)");
  }
  out.cpu_ticks = *utime + *stime;
  return out;
}

}  // namespace memtide::collectors
