#include <concepts>
#include <ctime>
#include <limits>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include <memtide/core/text.hpp>
#include <memtide/report/json_text.hpp>
#include <memtide/report/snapshot_json.hpp>

namespace memtide::report {

using nlohmann::json;
using nlohmann::ordered_json;

namespace {

// --- One field list per struct, walked by both the writer and the reader. `f(key, member)`
// visits a member; `f.group(key, fn)` nests the members `fn` visits under one JSON object.
// M is the struct, const for the writer.

template <typename M, typename T>
concept Is = std::same_as<std::remove_const_t<M>, T>;

template <typename F, Is<MemInfo> M>
void fields(F& f, M& m) {
  f("total_bytes", m.total_bytes);
  f("free_bytes", m.free_bytes);
  f("available_bytes", m.available_bytes);
  f("buffers_bytes", m.buffers_bytes);
  f("cached_bytes", m.cached_bytes);
  f("swap_cached_bytes", m.swap_cached_bytes);
  f("swap_total_bytes", m.swap_total_bytes);
  f("swap_free_bytes", m.swap_free_bytes);
  f("active_anon_bytes", m.active_anon_bytes);
  f("inactive_anon_bytes", m.inactive_anon_bytes);
  f("active_file_bytes", m.active_file_bytes);
  f("inactive_file_bytes", m.inactive_file_bytes);
  f("unevictable_bytes", m.unevictable_bytes);
  f("mlocked_bytes", m.mlocked_bytes);
  f("dirty_bytes", m.dirty_bytes);
  f("writeback_bytes", m.writeback_bytes);
  f("anon_pages_bytes", m.anon_pages_bytes);
  f("mapped_bytes", m.mapped_bytes);
  f("shmem_bytes", m.shmem_bytes);
  f("slab_reclaimable_bytes", m.slab_reclaimable_bytes);
  f("slab_unreclaimable_bytes", m.slab_unreclaimable_bytes);
  f("page_tables_bytes", m.page_tables_bytes);
  f("commit_limit_bytes", m.commit_limit_bytes);
  f("committed_as_bytes", m.committed_as_bytes);
  f("anon_huge_pages_bytes", m.anon_huge_pages_bytes);
  f("hugepages_total", m.hugepages_total);
  f("hugepages_free", m.hugepages_free);
  f("hugepage_size_bytes", m.hugepage_size_bytes);
  f("hugetlb_bytes", m.hugetlb_bytes);
}

template <typename F, Is<VmStat> M>
void fields(F& f, M& v) {
  f("page_faults_total", v.page_faults_total);
  f("major_faults_total", v.major_faults_total);
  f("swap_in_bytes_total", v.swap_in_bytes_total);
  f("swap_out_bytes_total", v.swap_out_bytes_total);
  f("scan_kswapd_bytes_total", v.scan_kswapd_bytes_total);
  f("scan_direct_bytes_total", v.scan_direct_bytes_total);
  f("steal_kswapd_bytes_total", v.steal_kswapd_bytes_total);
  f("steal_direct_bytes_total", v.steal_direct_bytes_total);
  f("allocstall_total", v.allocstall_total);
  f("workingset_refault_bytes_total", v.workingset_refault_bytes_total);
  f("oom_kills_total", v.oom_kills_total);
}

template <typename F, Is<PressureLine> M>
void fields(F& f, M& p) {
  f("avg10_ratio", p.avg10_ratio);
  f("avg60_ratio", p.avg60_ratio);
  f("avg300_ratio", p.avg300_ratio);
  f("total_seconds", p.total_seconds);
}

template <typename F, Is<Pressure> M>
void fields(F& f, M& p) {
  f("some", p.some);
  f("full", p.full);
}

template <typename F, Is<SwapDevice> M>
void fields(F& f, M& d) {
  f("path", d.path);
  f("type", d.type);
  f("size_bytes", d.size_bytes);
  f("used_bytes", d.used_bytes);
  f("priority", d.priority);
}

template <typename F, Is<HostSample> M>
void fields(F& f, M& h) {
  f("meminfo", h.meminfo);
  f("vmstat", h.vmstat);
  f.group("pressure", [&](auto& g) {
    g("memory", h.psi_memory);
    g("io", h.psi_io);
    g("cpu", h.psi_cpu);
  });
  f("swaps", h.swaps);
  f("thp_partially_mapped_bytes", h.thp_partially_mapped_bytes);
}

template <typename F, Is<KsmSample> M>
void fields(F& f, M& k) {
  f("run", k.run);
  f("pages_to_scan", k.pages_to_scan);
  f("sleep_ms", k.sleep_ms);
  f("merge_across_nodes", k.merge_across_nodes);
  f("use_zero_pages", k.use_zero_pages);
  f("max_page_sharing", k.max_page_sharing);
  f("stable_node_chains_prune_ms", k.stable_node_chains_prune_ms);
  f("smart_scan", k.smart_scan);
  f("advisor_mode", k.advisor_mode);
  f("advisor_max_cpu_percent", k.advisor_max_cpu_percent);
  f("advisor_min_pages_to_scan", k.advisor_min_pages_to_scan);
  f("advisor_max_pages_to_scan", k.advisor_max_pages_to_scan);
  f("advisor_target_scan_time_seconds", k.advisor_target_scan_time_seconds);
  f("shared_bytes", k.shared_bytes);
  f("sharing_bytes", k.sharing_bytes);
  f("unshared_bytes", k.unshared_bytes);
  f("volatile_bytes", k.volatile_bytes);
  f("full_scans_total", k.full_scans_total);
  f("stable_node_chains", k.stable_node_chains);
  f("stable_node_dups", k.stable_node_dups);
  f("zero_pages_bytes", k.zero_pages_bytes);
  f("general_profit_bytes", k.general_profit_bytes);
  f("scanned_bytes_total", k.scanned_bytes_total);
  f("skipped_bytes_total", k.skipped_bytes_total);
  f("ksmd_cpu_seconds_total", k.ksmd_cpu_seconds_total);
}

template <typename F, Is<VmPageScan> M>
void fields(F& f, M& p) {
  f("status", p.status);
  f("error", p.error);
  f("candidate_bytes", p.candidate_bytes);
  f("resident_bytes", p.resident_bytes);
  f("zero_bytes", p.zero_bytes);
  f("duplicate_bytes", p.duplicate_bytes);
  f("volatile_ratio", p.volatile_ratio);
  f("scanned_unix_ms", p.scanned_unix_ms);
  f("schedule", p.schedule);
  f("schedule_reason", p.schedule_reason);
}

template <typename F, Is<KsmEstimate> M>
void fields(F& f, M& e) {
  f("candidate_bytes", e.candidate_bytes);
  f("resident_bytes", e.resident_bytes);
  f("zero_bytes", e.zero_bytes);
  f("savings_bytes", e.savings_bytes);
  f("vms", e.vms);
  f("page_size_bytes", e.page_size_bytes);
  f("read_bytes_total", e.read_bytes_total);
  f("cpu_seconds_total", e.cpu_seconds_total);
  f("passes_total", e.passes_total);
  f("probes_total", e.probes_total);
  // wakes_total is served as metrics only: a trace replays decisions, which it does not touch.
}

template <typename F, Is<GuestMemory> M>
void fields(F& f, M& g) {
  f("total_bytes", g.total_bytes);
  f("usable_bytes", g.usable_bytes);
  f("unused_bytes", g.unused_bytes);
  f("disk_caches_bytes", g.disk_caches_bytes);
  f("swap_in_bytes_total", g.swap_in_bytes_total);
  f("swap_out_bytes_total", g.swap_out_bytes_total);
  f("major_faults_total", g.major_faults_total);
  f("minor_faults_total", g.minor_faults_total);
  f("last_update_unix_seconds", g.last_update_unix_s);
}

template <typename F, Is<VmMetadata> M>
void fields(F& f, M& md) {
  f("class", md.class_name);
  f("floor", md.floor);
  f("shares", md.shares);
  f("balloon", md.balloon_enabled);
  f("scan", md.scan_enabled);
}

template <typename F, Is<ProcessKsmStat> M>
void fields(F& f, M& k) {
  f("rmap_items", k.rmap_items);
  f("zero_pages_bytes", k.zero_pages_bytes);
  f("merging_bytes", k.merging_bytes);
  f("profit_bytes", k.profit_bytes);
}

template <typename F, Is<QemuProcess> M>
void fields(F& f, M& p) {
  f("pid", p.pid);
  f("rss_bytes", p.rss_bytes);
  f("swap_bytes", p.swap_bytes);
  f("ksm", p.ksm);
}

template <typename F, Is<VirtioMemDevice> M>
void fields(F& f, M& d) {
  f("alias", d.alias);
  f("node", d.node);
  f("block_bytes", d.block_bytes);
  f("max_bytes", d.max_bytes);
  f("requested_bytes", d.requested_bytes);
  f("plugged_bytes", d.plugged_bytes);
  f("configured_bytes", d.configured_bytes);
}

template <typename F, Is<VmSample> M>
void fields(F& f, M& vm) {
  f("name", vm.name);
  f("uuid", vm.uuid);
  f("connection", vm.connection);
  f("state", vm.state);
  f("max_bytes", vm.max_bytes);
  f("current_bytes", vm.current_bytes);
  f("host_rss_bytes", vm.host_rss_bytes);
  f("disk_read_bytes_total", vm.disk_read_bytes_total);
  f("disk_reads_at_ms", vm.disk_reads_at_ms);
  f("stats_status", vm.stats_status);
  f("stats_period_seconds", vm.stats_period_s);
  f("balloon_autodeflate", vm.balloon_autodeflate);
  f("balloon_free_page_reporting", vm.balloon_free_page_reporting);
  f("guest", vm.guest);
  f("metadata", vm.metadata);
  f("metadata_errors", vm.metadata_errors);
  f("sharing_allowed", vm.sharing_allowed);
  f("memory_pins", vm.memory_pins);
  f("virtio_mem", vm.virtio_mem);
  f("process", vm.process);
  f("process_unavailable", vm.process_unavailable);
  f("page_scan", vm.page_scan);
  f("invalid_sizes", vm.invalid_sizes);
}

template <typename F, Is<OtherManager> M>
void fields(F& f, M& m) {
  f("name", m.name);
  f("pid", m.pid);
  f("balloons", m.balloons);
  f("ksm", m.ksm);
}

template <typename F, Is<ConnectionState> M>
void fields(F& f, M& c) {
  f("name", c.name);
  f("uri", c.uri);
  f("discovered", c.discovered);
  f("status", c.status);
  f("vms", c.vms);
  f("error", c.error);
  f("down_since_ms", c.down_since_ms);
}

template <typename F, Is<Snapshot> M>
void fields(F& f, M& s) {
  f("collected_at_unix_ms", s.collected_at_unix_ms);
  f("monotonic_ms", s.monotonic_ms);
  f("host", s.host);
  f("ksm", s.ksm);
  f("ksm_estimate", s.ksm_estimate);
  f.group("hypervisor", [&](auto& g) {
    g("up", s.hypervisor_up);
    g("error", s.hypervisor_error);
  });
  f("vms", s.vms);
  f("connections", s.connections);
  f("other_managers", s.other_managers);
}

template <typename T>
struct IsOptional : std::false_type {};
template <typename T>
struct IsOptional<std::optional<T>> : std::true_type {};
template <typename T>
struct IsVector : std::false_type {};
template <typename T>
struct IsVector<std::vector<T>> : std::true_type {};

// Enums travel as the names to_string() gives them.
template <typename E>
concept NamedEnum = std::same_as<E, VmState> || std::same_as<E, GuestStatsStatus> ||
    std::same_as<E, MemoryPin> || std::same_as<E, ConnectionState::Status>;

template <NamedEnum E>
std::vector<E> all_values() {
  if constexpr (std::same_as<E, VmState>) {
    return {VmState::running, VmState::paused, VmState::shutoff, VmState::crashed, VmState::other};
  } else if constexpr (std::same_as<E, MemoryPin>) {
    return {std::begin(kAllMemoryPins), std::end(kAllMemoryPins)};
  } else if constexpr (std::same_as<E, ConnectionState::Status>) {
    return {ConnectionState::Status::up, ConnectionState::Status::down,
            ConnectionState::Status::refused};
  } else {
    return {GuestStatsStatus::ok, GuestStatsStatus::disabled, GuestStatsStatus::no_driver,
            GuestStatsStatus::stale, GuestStatsStatus::no_balloon};
  }
}

// --- Writing.

template <typename T>
ordered_json write(const T& v);

struct Writer {
  ordered_json& out;
  template <typename T>
  void operator()(const char* key, const T& v) {
    out[key] = write(v);
  }
  template <typename Fn>
  void group(const char* key, Fn fn) {
    ordered_json inner = ordered_json::object();
    Writer w{inner};
    fn(w);
    out[key] = std::move(inner);
  }
};

template <typename T>
ordered_json write(const T& v) {
  if constexpr (IsOptional<T>::value) {
    return v ? write(*v) : ordered_json(nullptr);
  } else if constexpr (IsVector<T>::value) {
    ordered_json a = ordered_json::array();
    for (const auto& e : v) {
      a.push_back(write(e));
    }
    return a;
  } else if constexpr (std::is_arithmetic_v<T> || std::same_as<T, std::string>) {
    return v;
  } else if constexpr (NamedEnum<T>) {
    return to_string(v);
  } else if constexpr (std::same_as<T, SizeOrRatio>) {
    return v.is_ratio() ? ordered_json{{"ratio", std::get<1>(v.value)}}
                        : ordered_json{{"bytes", std::get<0>(v.value)}};
  } else {
    ordered_json o = ordered_json::object();
    Writer w{o};
    fields(w, v);
    return o;
  }
}

}  // namespace

std::string format_utc(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(unix_ms % 1000));
  return buf;
}

namespace {

// --- Reading. A failure unwinds to from_json as a ReadError naming the key path.

struct ReadError {
  std::string path;
  std::string message;
};

template <typename T>
void read(const json& j, T& v, const std::string& path);

struct Reader {
  const json& in;
  std::string path;  // of `in`; "" at the top

  std::string child(const char* key) const { return path.empty() ? key : path + "." + key; }
  template <typename T>
  void operator()(const char* key, T& v) {
    const auto it = in.find(key);
    if (it == in.end()) {
      // Optional fields and lists added to format 1 later (ksm_estimate, page_scan,
      // memory_pins, virtio_mem, ...) may be absent from older traces.
      if constexpr (IsOptional<T>::value) {
        v.reset();
        return;
      } else if constexpr (IsVector<T>::value) {
        v.clear();
        return;
      } else if constexpr (std::same_as<T, std::string>) {
        // Scalars added later, with their value in older traces: a VM's connection (none,
        // the single libvirt.uri).
        if (std::string_view(key) == "connection") {
          v.clear();
          return;
        }
      }
      throw ReadError{child(key), "missing"};
    }
    read(*it, v, child(key));
  }
  template <typename Fn>
  void group(const char* key, Fn fn) {
    const auto it = in.find(key);
    if (it == in.end() || !it->is_object()) {
      throw ReadError{child(key), "expected an object"};
    }
    Reader r{*it, child(key)};
    fn(r);
  }
};

template <typename T>
void read_integer(const json& j, T& v, const std::string& path) {
  if (!j.is_number_integer()) {
    throw ReadError{path, "expected a whole number"};
  }
  if (j.is_number_unsigned()) {
    const auto u = j.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<T>::max())) {
      throw ReadError{path, "out of range"};
    }
    v = static_cast<T>(u);
    return;
  }
  const auto s = j.get<std::int64_t>();
  if constexpr (std::is_unsigned_v<T>) {
    if (s < 0) {
      throw ReadError{path, "must not be negative"};
    }
    if (static_cast<std::uint64_t>(s) > std::numeric_limits<T>::max()) {
      throw ReadError{path, "out of range"};
    }
  } else if (s < std::numeric_limits<T>::min() || s > std::numeric_limits<T>::max()) {
    throw ReadError{path, "out of range"};
  }
  v = static_cast<T>(s);
}

template <typename T>
void read(const json& j, T& v, const std::string& path) {
  if constexpr (IsOptional<T>::value) {
    if (j.is_null()) {
      v.reset();
      return;
    }
    typename T::value_type inner{};
    read(j, inner, path);
    v = std::move(inner);
  } else if constexpr (IsVector<T>::value) {
    if (!j.is_array()) {
      throw ReadError{path, "expected an array"};
    }
    v.clear();
    v.resize(j.size());
    for (std::size_t i = 0; i < j.size(); ++i) {
      read(j[i], v[i], path + "[" + std::to_string(i) + "]");
    }
  } else if constexpr (std::same_as<T, bool>) {
    if (!j.is_boolean()) {
      throw ReadError{path, "expected true or false"};
    }
    v = j.get<bool>();
  } else if constexpr (std::is_integral_v<T>) {
    read_integer(j, v, path);
  } else if constexpr (std::is_floating_point_v<T>) {
    if (!j.is_number()) {
      throw ReadError{path, "expected a number"};
    }
    v = j.get<T>();
  } else if constexpr (std::same_as<T, std::string>) {
    if (!j.is_string()) {
      throw ReadError{path, "expected a string"};
    }
    v = j.get<std::string>();
  } else if constexpr (NamedEnum<T>) {
    if (j.is_string()) {
      for (const T candidate : all_values<T>()) {
        if (j.get<std::string>() == to_string(candidate)) {
          v = candidate;
          return;
        }
      }
    }
    throw ReadError{path, "unknown value " + shorten_utf8(dump_json(j), 40)};
  } else if constexpr (std::same_as<T, SizeOrRatio>) {
    if (j.is_object() && j.size() == 1 && j.contains("bytes")) {
      std::uint64_t bytes = 0;
      read(j["bytes"], bytes, path + ".bytes");
      v.value = bytes;
    } else if (j.is_object() && j.size() == 1 && j.contains("ratio")) {
      double ratio = 0;
      read(j["ratio"], ratio, path + ".ratio");
      v.value = ratio;
    } else {
      throw ReadError{path, "expected {\"bytes\": N} or {\"ratio\": R}"};
    }
  } else {
    if (!j.is_object()) {
      throw ReadError{path, "expected an object"};
    }
    Reader r{j, path};
    fields(r, v);
  }
}

}  // namespace

ordered_json to_json(const Snapshot& s) {
  ordered_json out = ordered_json::object();
  out["format"] = kSnapshotFormat;
  out["collected_at"] = format_utc(s.collected_at_unix_ms);
  Writer writer{out};
  fields(writer, s);
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
  out["unavailable"] = std::move(unavailable);
  return out;
}

Result<Snapshot> from_json(const json& j) {
  if (!j.is_object()) {
    return Error{"", 0, 0, "expected a JSON object (one snapshot)"};
  }
  const auto format = j.find("format");
  if (format == j.end() || !format->is_number_integer() ||
      format->get<std::int64_t>() != kSnapshotFormat) {
    return Error{
        "", 0, 0,
        "format: expected " + std::to_string(kSnapshotFormat) + ", got " +
            (format == j.end() ? std::string("nothing") : shorten_utf8(dump_json(*format), 40))};
  }
  Snapshot s;
  try {
    read(j, s, "");
  } catch (const ReadError& e) {
    return Error{"", 0, 0, e.path + ": " + e.message};
  }
  return s;
}

}  // namespace memtide::report
