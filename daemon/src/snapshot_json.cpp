#include "snapshot_json.hpp"

#include <ctime>

namespace memtide::daemon {

using nlohmann::ordered_json;

namespace {

template <typename T>
ordered_json opt(const std::optional<T>& v) {
  return v ? ordered_json(*v) : ordered_json(nullptr);
}

std::string iso8601_utc(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

ordered_json to_json(const MemInfo& m) {
  return {
      {"total_bytes", m.total_bytes},
      {"free_bytes", m.free_bytes},
      {"available_bytes", m.available_bytes},
      {"buffers_bytes", m.buffers_bytes},
      {"cached_bytes", m.cached_bytes},
      {"swap_cached_bytes", m.swap_cached_bytes},
      {"swap_total_bytes", m.swap_total_bytes},
      {"swap_free_bytes", m.swap_free_bytes},
      {"active_anon_bytes", opt(m.active_anon_bytes)},
      {"inactive_anon_bytes", opt(m.inactive_anon_bytes)},
      {"active_file_bytes", opt(m.active_file_bytes)},
      {"inactive_file_bytes", opt(m.inactive_file_bytes)},
      {"unevictable_bytes", opt(m.unevictable_bytes)},
      {"mlocked_bytes", opt(m.mlocked_bytes)},
      {"dirty_bytes", opt(m.dirty_bytes)},
      {"writeback_bytes", opt(m.writeback_bytes)},
      {"anon_pages_bytes", opt(m.anon_pages_bytes)},
      {"mapped_bytes", opt(m.mapped_bytes)},
      {"shmem_bytes", opt(m.shmem_bytes)},
      {"slab_reclaimable_bytes", opt(m.slab_reclaimable_bytes)},
      {"slab_unreclaimable_bytes", opt(m.slab_unreclaimable_bytes)},
      {"page_tables_bytes", opt(m.page_tables_bytes)},
      {"commit_limit_bytes", opt(m.commit_limit_bytes)},
      {"committed_as_bytes", opt(m.committed_as_bytes)},
      {"anon_huge_pages_bytes", opt(m.anon_huge_pages_bytes)},
      {"hugepages_total", opt(m.hugepages_total)},
      {"hugepages_free", opt(m.hugepages_free)},
      {"hugepage_size_bytes", opt(m.hugepage_size_bytes)},
      {"hugetlb_bytes", opt(m.hugetlb_bytes)},
  };
}

ordered_json to_json(const VmStat& v) {
  return {
      {"page_faults_total", v.page_faults_total},
      {"major_faults_total", v.major_faults_total},
      {"swap_in_bytes_total", v.swap_in_bytes_total},
      {"swap_out_bytes_total", v.swap_out_bytes_total},
      {"scan_kswapd_bytes_total", opt(v.scan_kswapd_bytes_total)},
      {"scan_direct_bytes_total", opt(v.scan_direct_bytes_total)},
      {"steal_kswapd_bytes_total", opt(v.steal_kswapd_bytes_total)},
      {"steal_direct_bytes_total", opt(v.steal_direct_bytes_total)},
      {"allocstall_total", opt(v.allocstall_total)},
      {"workingset_refault_bytes_total", opt(v.workingset_refault_bytes_total)},
      {"oom_kills_total", opt(v.oom_kills_total)},
  };
}

ordered_json to_json(const PressureLine& p) {
  return {{"avg10_ratio", p.avg10_ratio},
          {"avg60_ratio", p.avg60_ratio},
          {"avg300_ratio", p.avg300_ratio},
          {"total_seconds", p.total_seconds}};
}

ordered_json to_json(const std::optional<Pressure>& p) {
  if (!p) {
    return nullptr;
  }
  return {{"some", to_json(p->some)}, {"full", p->full ? to_json(*p->full) : ordered_json()}};
}

ordered_json to_json(const KsmSample& k) {
  return {
      {"run", k.run},
      {"pages_to_scan", k.pages_to_scan},
      {"sleep_ms", k.sleep_ms},
      {"merge_across_nodes", opt(k.merge_across_nodes)},
      {"use_zero_pages", opt(k.use_zero_pages)},
      {"max_page_sharing", opt(k.max_page_sharing)},
      {"stable_node_chains_prune_ms", opt(k.stable_node_chains_prune_ms)},
      {"smart_scan", opt(k.smart_scan)},
      {"advisor_mode", opt(k.advisor_mode)},
      {"advisor_max_cpu_percent", opt(k.advisor_max_cpu_percent)},
      {"advisor_min_pages_to_scan", opt(k.advisor_min_pages_to_scan)},
      {"advisor_max_pages_to_scan", opt(k.advisor_max_pages_to_scan)},
      {"advisor_target_scan_time_seconds", opt(k.advisor_target_scan_time_seconds)},
      {"shared_bytes", k.shared_bytes},
      {"sharing_bytes", k.sharing_bytes},
      {"unshared_bytes", k.unshared_bytes},
      {"volatile_bytes", k.volatile_bytes},
      {"full_scans_total", k.full_scans_total},
      {"stable_node_chains", opt(k.stable_node_chains)},
      {"stable_node_dups", opt(k.stable_node_dups)},
      {"zero_pages_bytes", opt(k.zero_pages_bytes)},
      {"general_profit_bytes", opt(k.general_profit_bytes)},
      {"scanned_bytes_total", opt(k.scanned_bytes_total)},
      {"skipped_bytes_total", opt(k.skipped_bytes_total)},
  };
}

ordered_json to_json(const SizeOrRatio& v) {
  if (v.is_ratio()) {
    return {{"ratio", std::get<1>(v.value)}};
  }
  return {{"bytes", std::get<0>(v.value)}};
}

ordered_json to_json(const VmSample& vm) {
  const auto& g = vm.guest;
  const auto& md = vm.metadata;
  ordered_json process = nullptr;
  if (vm.process) {
    const auto& p = *vm.process;
    ordered_json ksm = nullptr;
    if (p.ksm) {
      ksm = {{"rmap_items", p.ksm->rmap_items},
             {"zero_pages_bytes", opt(p.ksm->zero_pages_bytes)},
             {"merging_bytes", opt(p.ksm->merging_bytes)},
             {"profit_bytes", opt(p.ksm->profit_bytes)}};
    }
    process = {{"pid", p.pid},
               {"rss_bytes", opt(p.rss_bytes)},
               {"swap_bytes", opt(p.swap_bytes)},
               {"ksm", ksm}};
  }
  return {
      {"name", vm.name},
      {"uuid", vm.uuid},
      {"state", to_string(vm.state)},
      {"max_bytes", vm.max_bytes},
      {"current_bytes", vm.current_bytes},
      {"host_rss_bytes", opt(vm.host_rss_bytes)},
      {"stats_status", to_string(vm.stats_status)},
      {"stats_period_seconds", vm.stats_period_s},
      {"guest",
       {{"total_bytes", opt(g.total_bytes)},
        {"usable_bytes", opt(g.usable_bytes)},
        {"unused_bytes", opt(g.unused_bytes)},
        {"disk_caches_bytes", opt(g.disk_caches_bytes)},
        {"swap_in_bytes_total", opt(g.swap_in_bytes_total)},
        {"swap_out_bytes_total", opt(g.swap_out_bytes_total)},
        {"major_faults_total", opt(g.major_faults_total)},
        {"minor_faults_total", opt(g.minor_faults_total)},
        {"last_update_unix_seconds", opt(g.last_update_unix_s)}}},
      {"metadata",
       {{"class", opt(md.class_name)},
        {"floor", md.floor ? to_json(*md.floor) : ordered_json()},
        {"shares", opt(md.shares)},
        {"balloon", opt(md.balloon_enabled)},
        {"scan", opt(md.scan_enabled)}}},
      {"metadata_errors", vm.metadata_errors},
      {"sharing_allowed", vm.sharing_allowed},
      {"process", process},
  };
}

}  // namespace

ordered_json to_json(const Snapshot& s) {
  ordered_json unavailable = ordered_json::array();
  const std::pair<const char*, bool> sources[] = {
      {"pressure/memory", s.host.psi_memory.has_value()},
      {"pressure/io", s.host.psi_io.has_value()},
      {"pressure/cpu", s.host.psi_cpu.has_value()},
      {"swaps", s.host.swaps.has_value()},
      {"ksm", s.ksm.has_value()},
  };
  for (const auto& [name, present] : sources) {
    if (!present) {
      unavailable.push_back(name);
    }
  }
  ordered_json swaps = nullptr;
  if (s.host.swaps) {
    swaps = ordered_json::array();
    for (const auto& d : *s.host.swaps) {
      swaps.push_back({{"path", d.path},
                       {"type", d.type},
                       {"size_bytes", d.size_bytes},
                       {"used_bytes", d.used_bytes},
                       {"priority", d.priority}});
    }
  }
  ordered_json vms = ordered_json::array();
  for (const auto& vm : s.vms) {
    vms.push_back(to_json(vm));
  }
  return {
      {"collected_at", iso8601_utc(s.collected_at_unix_ms)},
      {"collected_at_unix_ms", s.collected_at_unix_ms},
      {"host",
       {{"meminfo", to_json(s.host.meminfo)},
        {"vmstat", to_json(s.host.vmstat)},
        {"pressure",
         {{"memory", to_json(s.host.psi_memory)},
          {"io", to_json(s.host.psi_io)},
          {"cpu", to_json(s.host.psi_cpu)}}},
        {"swaps", swaps}}},
      {"ksm", s.ksm ? to_json(*s.ksm) : ordered_json()},
      {"hypervisor", {{"up", s.hypervisor_up}, {"error", s.hypervisor_error}}},
      {"vms", vms},
      {"unavailable", unavailable},
  };
}

}  // namespace memtide::daemon
