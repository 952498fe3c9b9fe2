#include <cerrno>
#include <cstdlib>
#include <functional>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/procfs_parsers.hpp>
#include <memtide/collectors/sysfs_parsers.hpp>
#include <memtide/core/vm_sample.hpp>

#include "text.hpp"

namespace memtide::collectors {

std::uint64_t system_page_size() {
  const long size = ::sysconf(_SC_PAGESIZE);
  return size > 0 ? static_cast<std::uint64_t>(size) : 4096;
}

KsmdCpu::KsmdCpu(std::string procfs) : procfs_(std::move(procfs)) {}

std::optional<double> KsmdCpu::read() {
  // ksmd's own stat stays open (files_); the others are read once while searching for it.
  auto stat_of = [&](int pid, bool keep) -> std::optional<ProcessCpu> {
    const std::string path = procfs_ + "/" + std::to_string(pid) + "/stat";
    auto text = keep ? files_.read(path) : read_file(path);
    if (!text) {
      return std::nullopt;
    }
    auto parsed = parse_process_stat(*text, path);
    return parsed ? std::optional<ProcessCpu>(*parsed) : std::nullopt;
  };
  std::optional<ProcessCpu> found = pid_ > 0 ? stat_of(pid_, true) : std::nullopt;
  if (!found || found->comm != "ksmd") {
    pid_ = -1;
    found.reset();
    // A search reads every process's stat: after one that failed, wait 60 calls for the next.
    if (searches_missed_ > 0 && ++searches_missed_ <= 60) {
      return std::nullopt;
    }
    searches_missed_ = 0;
    DIR* dir = opendir(procfs_.c_str());
    if (dir == nullptr) {
      return std::nullopt;
    }
    while (const dirent* e = readdir(dir)) {
      char* end = nullptr;
      const long pid = std::strtol(e->d_name, &end, 10);
      if (pid <= 0 || *end != '\0') {
        continue;
      }
      auto s = stat_of(static_cast<int>(pid), false);
      if (s && s->comm == "ksmd") {
        pid_ = static_cast<int>(pid);
        found = std::move(s);
        break;
      }
    }
    closedir(dir);
  }
  if (!found) {
    searches_missed_ = 1;
    return std::nullopt;
  }
  const long ticks_per_second = sysconf(_SC_CLK_TCK);
  return static_cast<double>(found->cpu_ticks) /
         static_cast<double>(ticks_per_second > 0 ? ticks_per_second : 100);
}

HostSource::HostSource(HostRoots roots, std::uint64_t page_size_bytes)
    : roots_(std::move(roots)),
      page_size_bytes_(page_size_bytes),
      thp_counters_(find_thp_counters(roots_.sysfs)) {}

Result<HostSample> HostSource::read() const {
  HostSample sample;
  const auto& proc = roots_.procfs;

  auto meminfo_path = proc + "/meminfo";
  auto meminfo_text = files_.read(meminfo_path);
  if (!meminfo_text) {
    return meminfo_text.error();
  }
  auto meminfo = parse_meminfo(*meminfo_text, meminfo_path);
  if (!meminfo) {
    return meminfo.error();
  }
  sample.meminfo = *meminfo;

  auto vmstat_path = proc + "/vmstat";
  auto vmstat_text = files_.read(vmstat_path);
  if (!vmstat_text) {
    return vmstat_text.error();
  }
  auto vmstat = parse_vmstat(*vmstat_text, page_size_bytes_, vmstat_path);
  if (!vmstat) {
    return vmstat.error();
  }
  sample.vmstat = *vmstat;

  const std::pair<const char*, std::optional<Pressure>*> psi_files[] = {
      {"memory", &sample.psi_memory}, {"io", &sample.psi_io}, {"cpu", &sample.psi_cpu}};
  for (const auto& [name, dest] : psi_files) {
    const auto path = proc + "/pressure/" + name;
    auto text = files_.read_optional(path);
    if (!text) {
      return text.error();
    }
    if (!text->has_value()) {
      continue;  // no PSI on this kernel
    }
    auto pressure = parse_pressure(**text, path);
    if (!pressure) {
      return pressure.error();
    }
    *dest = *pressure;
  }

  const auto swaps_path = proc + "/swaps";
  auto swaps_text = files_.read_optional(swaps_path);
  if (!swaps_text) {
    return swaps_text.error();
  }
  if (swaps_text->has_value()) {
    auto swaps = parse_swaps(**swaps_text, swaps_path);
    if (!swaps) {
      return swaps.error();
    }
    sample.swaps = std::move(*swaps);
  }
  auto partial = read_thp_partially_mapped(thp_counters_, &files_);
  if (!partial) {
    return partial.error();
  }
  sample.thp_partially_mapped_bytes = *partial;
  return sample;
}

std::vector<ThpCounter> find_thp_counters(const std::string& sysfs) {
  const std::string dir = sysfs + "/kernel/mm/transparent_hugepage";
  std::vector<ThpCounter> counters;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return counters;  // no transparent huge pages on this kernel
  }
  while (const dirent* e = readdir(d)) {
    const std::string_view name = e->d_name;
    if (!name.starts_with("hugepages-") || !name.ends_with("kB")) {
      continue;
    }
    const auto kib = detail::to_u64(name.substr(10, name.size() - 12));
    const auto page_bytes = kib ? detail::checked_mul(*kib, 1024) : std::nullopt;
    std::string path = dir;
    path.append("/").append(name).append("/stats/nr_anon_partially_mapped");
    if (page_bytes && access(path.c_str(), F_OK) == 0) {  // a kernel before 6.12 has none
      counters.push_back({std::move(path), *page_bytes});
    }
  }
  closedir(d);
  return counters;
}

Result<std::optional<std::uint64_t>> read_thp_partially_mapped(
    const std::vector<ThpCounter>& counters, OpenFiles* files) {
  std::optional<std::uint64_t> total;
  for (const auto& counter : counters) {
    auto text = files != nullptr ? files->read(counter.path) : read_file(counter.path);
    if (!text) {
      return text.error();
    }
    auto count = parse_sysfs_u64(*text, counter.path);
    if (!count) {
      return count.error();
    }
    const auto bytes = detail::checked_mul(*count, counter.page_bytes);
    if (!bytes || *bytes > kMaxPlausibleBytes) {
      return detail::content_error(counter.path, 1, "partially mapped huge pages beyond any host");
    }
    total = total.value_or(0) + *bytes;
  }
  return total;
}

KsmReader::KsmReader(std::string sysfs_root, std::uint64_t page_size_bytes)
    : dir_(std::move(sysfs_root) + "/kernel/mm/ksm"), page_size_bytes_(page_size_bytes) {}

namespace {

// How one KSM file lands in KsmSample: `store` receives the parsed text; `required` files exist
// on every kernel with KSM (2.6.32+).
struct KsmFile {
  const char* name;
  bool required;
  std::function<Status(KsmSample&, std::string_view text, const std::string& path,
                       std::uint64_t page)>
      store;
};

template <typename Member>
KsmFile u64_file(const char* name, bool required, Member member, bool in_pages = false) {
  return {name, required,
          [member, in_pages](KsmSample& s, std::string_view text, const std::string& path,
                             std::uint64_t page) -> Status {
            auto v = parse_sysfs_u64(text, path);
            if (!v) {
              return v.error();
            }
            std::uint64_t value = *v;
            if (in_pages && __builtin_mul_overflow(*v, page, &value)) {
              return Error{path, 1, 0, "page count too large"};
            }
            s.*member = value;
            return Ok{};
          }};
}

KsmFile bool_file(const char* name, std::optional<bool> KsmSample::*member) {
  return {name, false,
          [member](KsmSample& s, std::string_view text, const std::string& path,
                   std::uint64_t) -> Status {
            auto v = parse_sysfs_u64(text, path);
            if (!v) {
              return v.error();
            }
            if (*v > 1) {
              return Error{path, 1, 0, "expected 0 or 1, got " + std::to_string(*v)};
            }
            s.*member = *v == 1;
            return Ok{};
          }};
}

std::vector<KsmFile> ksm_files() {
  using S = KsmSample;
  return {
      u64_file("run", true, &S::run),
      u64_file("pages_to_scan", true, &S::pages_to_scan),
      u64_file("sleep_millisecs", true, &S::sleep_ms),
      bool_file("merge_across_nodes", &S::merge_across_nodes),
      bool_file("use_zero_pages", &S::use_zero_pages),
      u64_file("max_page_sharing", false, &S::max_page_sharing),
      u64_file("stable_node_chains_prune_millisecs", false, &S::stable_node_chains_prune_ms),
      bool_file("smart_scan", &S::smart_scan),
      {"advisor_mode", false,
       [](S& s, std::string_view text, const std::string& path, std::uint64_t) -> Status {
         auto v = parse_sysfs_choice(text, path);
         if (!v) {
           return v.error();
         }
         s.advisor_mode = *v;
         return Ok{};
       }},
      u64_file("advisor_max_cpu", false, &S::advisor_max_cpu_percent),
      u64_file("advisor_min_pages_to_scan", false, &S::advisor_min_pages_to_scan),
      u64_file("advisor_max_pages_to_scan", false, &S::advisor_max_pages_to_scan),
      u64_file("advisor_target_scan_time", false, &S::advisor_target_scan_time_seconds),
      u64_file("pages_shared", true, &S::shared_bytes, true),
      u64_file("pages_sharing", true, &S::sharing_bytes, true),
      u64_file("pages_unshared", true, &S::unshared_bytes, true),
      u64_file("pages_volatile", true, &S::volatile_bytes, true),
      u64_file("full_scans", true, &S::full_scans_total),
      u64_file("stable_node_chains", false, &S::stable_node_chains),
      u64_file("stable_node_dups", false, &S::stable_node_dups),
      u64_file("ksm_zero_pages", false, &S::zero_pages_bytes, true),
      {"general_profit", false,
       [](S& s, std::string_view text, const std::string& path, std::uint64_t) -> Status {
         auto v = parse_sysfs_i64(text, path);
         if (!v) {
           return v.error();
         }
         s.general_profit_bytes = *v;
         return Ok{};
       }},
      u64_file("pages_scanned", false, &S::scanned_bytes_total, true),
      u64_file("pages_skipped", false, &S::skipped_bytes_total, true),
  };
}

}  // namespace

Result<std::optional<KsmSample>> KsmReader::read() const {
  static const std::vector<KsmFile> kFiles = ksm_files();
  KsmSample sample;
  for (const auto& file : kFiles) {
    const std::string path = dir_ + "/" + file.name;
    auto text = files_.read_optional(path);
    if (!text) {
      return text.error();
    }
    if (!text->has_value()) {
      if (std::string_view(file.name) == "run") {
        return std::optional<KsmSample>{};  // no KSM in this kernel
      }
      if (file.required) {
        return Error{path, 0, 0, "missing although KSM is present"};
      }
      continue;
    }
    if (auto stored = file.store(sample, **text, path, page_size_bytes_); !stored) {
      return stored.error();
    }
  }
  return std::optional<KsmSample>{std::move(sample)};
}

}  // namespace memtide::collectors
