#include <algorithm>
#include <charconv>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <string_view>
#include <vector>

#include <memtide/collectors/other_managers.hpp>
#include <memtide/core/text.hpp>
#include <memtide/policy/classes.hpp>
#include <memtide/policy/coexist.hpp>
#include <memtide/report/metrics.hpp>

namespace memtide::report {

namespace {

// Label values are UTF-8 in the exposition format; invalid bytes from outside become U+FFFD.
void append_escaped(std::string& out, std::string_view value) {
  // Most values (names, UUIDs, reasons) are plain ASCII with nothing to escape: appended as
  // they are, without the copy to_valid_utf8 makes (a page has about 20 labels per VM).
  if (std::all_of(value.begin(), value.end(), [](char c) {
        return static_cast<unsigned char>(c) < 0x80 && c != '\\' && c != '"' && c != '\n';
      })) {
    out += value;
    return;
  }
  for (const char c : to_valid_utf8(value)) {
    if (c == '\\' || c == '"') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  append_escaped(out, value);
  return out;
}

namespace {

using Label = std::pair<std::string_view, std::string_view>;

// Appends families and samples in the text format. Values: integers exactly, other numbers in
// the shortest form that reads back the same, infinities as +Inf/-Inf.
class Exposition {
 public:
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  void sample(std::string_view name, std::initializer_list<Label> labels, double value) {
    head(name, labels);
    if (std::isinf(value)) {
      out_ += value > 0 ? "+Inf" : "-Inf";
    } else if (std::isnan(value)) {
      out_ += "NaN";
    } else {
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, value);
      out_.append(buf, r.ptr);
    }
    out_ += '\n';
  }
  void sample(std::string_view name, std::initializer_list<Label> labels, std::uint64_t value) {
    head(name, labels);
    char buf[24];
    const auto r = std::to_chars(buf, buf + sizeof buf, value);
    out_.append(buf, r.ptr);
    out_ += '\n';
  }
  // One family with a single unlabelled sample.
  void gauge(std::string_view name, std::string_view help, double value) {
    family(name, "gauge", help);
    sample(name, {}, value);
  }
  void counter(std::string_view name, std::string_view help, std::uint64_t value) {
    family(name, "counter", help);
    sample(name, {}, value);
  }
  std::string take() { return std::move(out_); }
  void reserve(std::size_t n) { out_.reserve(n); }

 private:
  void head(std::string_view name, std::initializer_list<Label> labels) {
    out_ += name;
    if (labels.size() > 0) {
      out_ += '{';
      bool first = true;
      for (const auto& [key, value] : labels) {
        if (value.empty() && key == "connection") {
          continue;  // a VM of the single libvirt.uri: Prometheus reads an empty label as none
        }
        if (!first) {
          out_ += ',';
        }
        first = false;
        out_ += key;
        out_ += "=\"";
        append_escaped(out_, value);
        out_ += '"';
      }
      out_ += '}';
    }
    out_ += ' ';
  }
  std::string out_;
};

double as_double(std::uint64_t v) {
  return static_cast<double>(v);
}

void host_metrics(Exposition& e, const Snapshot& s) {
  const auto& m = s.host.meminfo;
  // One quantity per name, as node_exporter's node_memory_*_bytes: a sum over a label of
  // unrelated fields would mean nothing.
  e.gauge("memtide_host_memory_total_bytes", "Host RAM (MemTotal).", as_double(m.total_bytes));
  e.gauge("memtide_host_memory_available_bytes",
          "Host memory available without swapping (MemAvailable).", as_double(m.available_bytes));
  e.gauge("memtide_host_memory_free_bytes", "Host memory unused (MemFree).",
          as_double(m.free_bytes));
  e.gauge("memtide_host_memory_cached_bytes", "Host page cache (Cached).",
          as_double(m.cached_bytes));
  e.gauge("memtide_host_swap_total_bytes", "Host swap space (SwapTotal).",
          as_double(m.swap_total_bytes));
  e.gauge("memtide_host_swap_free_bytes", "Host swap space unused (SwapFree).",
          as_double(m.swap_free_bytes));
  e.counter("memtide_host_swap_in_bytes_total", "Bytes the host swapped in (pswpin).",
            s.host.vmstat.swap_in_bytes_total);
  e.counter("memtide_host_swap_out_bytes_total", "Bytes the host swapped out (pswpout).",
            s.host.vmstat.swap_out_bytes_total);
  e.counter("memtide_host_major_faults_total", "Major page faults on the host (pgmajfault).",
            s.host.vmstat.major_faults_total);
  e.family("memtide_host_thp_partially_mapped_bytes", "gauge",
           "Transparent huge pages only partly mapped (Linux 6.12+), in bytes of whole pages: "
           "memory a balloon freed in them reaches the host only when they are split.");
  if (s.host.thp_partially_mapped_bytes) {
    e.sample("memtide_host_thp_partially_mapped_bytes", {}, *s.host.thp_partially_mapped_bytes);
  }
  if (const auto& p = s.host.psi_memory) {
    // The kernel's stall totals, as node_exporter's node_pressure_memory_*_seconds_total: any
    // window is a rate() away. (The kernel's own moving averages are not exported.)
    // "some" and "full" are two names: full time is part of some time, so their sum would count
    // it twice.
    e.family("memtide_host_memory_stall_some_seconds_total", "counter",
             "Time at least one task stalled on memory since boot (PSI some total).");
    e.sample("memtide_host_memory_stall_some_seconds_total", {}, p->some.total_seconds);
    e.family("memtide_host_memory_stall_full_seconds_total", "counter",
             "Time all non-idle tasks stalled on memory at once since boot (PSI full total).");
    if (p->full) {
      e.sample("memtide_host_memory_stall_full_seconds_total", {}, p->full->total_seconds);
    }
  }
}

void ksm_settings_metrics(Exposition& e, const KsmSample& k);

// KSM's run state and page counts.
void ksm_metrics(Exposition& e, const KsmSample& k) {
  e.gauge("memtide_ksm_run", "KSM run mode: 0 stopped, 1 merging, 2 stopped and unmerged.",
          as_double(k.run));
  e.gauge("memtide_ksm_pages_to_scan", "Pages ksmd scans per wake-up.", as_double(k.pages_to_scan));
  e.gauge("memtide_ksm_sleep_seconds", "Sleep of ksmd between wake-ups.",
          as_double(k.sleep_ms) / 1000.0);
  // One quantity per name: these four are different things, not parts of one whole.
  e.gauge("memtide_ksm_shared_bytes",
          "KSM pages in use, each holding merged content (pages_shared).",
          as_double(k.shared_bytes));
  e.gauge("memtide_ksm_sharing_bytes",
          "Memory KSM saves: the sites sharing a KSM page (pages_sharing).",
          as_double(k.sharing_bytes));
  e.gauge("memtide_ksm_unshared_bytes",
          "Pages ksmd checked that have no twin yet (pages_unshared).",
          as_double(k.unshared_bytes));
  e.gauge("memtide_ksm_volatile_bytes", "Pages changing too fast to merge (pages_volatile).",
          as_double(k.volatile_bytes));
  e.counter("memtide_ksm_full_scans_total", "Full scans ksmd completed.", k.full_scans_total);
  e.family("memtide_ksm_zero_pages_bytes", "gauge",
           "Empty pages merged with the zero page (kernel 6.10+).");
  if (k.zero_pages_bytes) {
    e.sample("memtide_ksm_zero_pages_bytes", {}, as_double(*k.zero_pages_bytes));
  }
  e.family("memtide_ksm_profit_bytes", "gauge",
           "What merging saves minus its metadata (general_profit, kernel 6.5+).");
  if (k.general_profit_bytes) {
    e.sample("memtide_ksm_profit_bytes", {}, static_cast<double>(*k.general_profit_bytes));
  }
  e.gauge("memtide_ksm_savings_bytes",
          "Memory KSM saves now: pages_sharing plus ksm_zero_pages, in bytes (compare with "
          "memtide_ksm_estimated_savings_bytes).",
          as_double(k.savings_bytes()));
  const std::tuple<const char*, const char*, const std::optional<std::uint64_t>*> totals[] = {
      {"memtide_ksm_scanned_bytes_total", "Memory ksmd has scanned (pages_scanned, kernel 6.8+).",
       &k.scanned_bytes_total},
      {"memtide_ksm_skipped_bytes_total",
       "Memory ksmd's smart scan skipped (pages_skipped, kernel 6.7+).", &k.skipped_bytes_total}};
  for (const auto& [name, help, value] : totals) {
    e.family(name, "counter", help);
    if (*value) {
      e.sample(name, {}, as_double(**value));
    }
  }
  ksm_settings_metrics(e, k);
}

// KSM's stable nodes, its other settings, the advisor and ksmd's CPU time.
void ksm_settings_metrics(Exposition& e, const KsmSample& k) {
  e.family(
      "memtide_ksm_stable_nodes", "gauge",
      "KSM stable node chains and duplicates (stable_node_chains, stable_node_dups), by kind.");
  if (k.stable_node_chains) {
    e.sample("memtide_ksm_stable_nodes", {{"kind", "chains"}}, as_double(*k.stable_node_chains));
  }
  if (k.stable_node_dups) {
    e.sample("memtide_ksm_stable_nodes", {{"kind", "dups"}}, as_double(*k.stable_node_dups));
  }
  e.family("memtide_ksm_setting", "gauge",
           "Other KSM settings by name (merge_across_nodes, use_zero_pages, max_page_sharing, "
           "smart_scan, advisor_max_cpu, advisor_target_scan_time); absent where the kernel "
           "lacks them.");
  auto flag = [](const std::optional<bool>& b) {
    return b ? std::optional<std::uint64_t>(*b ? 1 : 0) : std::nullopt;
  };
  const std::pair<const char*, std::optional<std::uint64_t>> settings[] = {
      {"merge_across_nodes", flag(k.merge_across_nodes)},
      {"use_zero_pages", flag(k.use_zero_pages)},
      {"max_page_sharing", k.max_page_sharing},
      {"smart_scan", flag(k.smart_scan)},
      {"advisor_max_cpu", k.advisor_max_cpu_percent},
      {"advisor_target_scan_time", k.advisor_target_scan_time_seconds}};
  for (const auto& [name, value] : settings) {
    if (value) {
      e.sample("memtide_ksm_setting", {{"name", name}}, as_double(*value));
    }
  }
  e.family("memtide_ksm_advisor_mode", "gauge",
           "1 for the kernel's KSM advisor mode (none, scan-time; kernel 6.9+).");
  if (k.advisor_mode) {
    e.sample("memtide_ksm_advisor_mode", {{"mode", *k.advisor_mode}}, 1.0);
  }
  e.family("memtide_ksmd_cpu_seconds_total", "counter", "CPU time the ksmd thread has used.");
  if (k.ksmd_cpu_seconds_total) {
    e.sample("memtide_ksmd_cpu_seconds_total", {}, *k.ksmd_cpu_seconds_total);
  }
}

// memtide's own page scanner: its estimate of what merging would save and its work.
void page_scan_metrics(Exposition& e, const std::optional<KsmEstimate>& estimate) {
  const KsmEstimate none;
  const KsmEstimate& k = estimate ? *estimate : none;
  e.family("memtide_ksm_estimated_savings_bytes", "gauge",
           "What merging the scanned guest memory would save, duplicates across VMs included "
           "(memtide's page scan).");
  e.family("memtide_ksm_estimate_memory_bytes", "gauge",
           "Guest memory the estimate covers, by kind (candidate: mergeable mappings, resident: "
           "read, zero: empty pages).");
  if (estimate) {
    e.sample("memtide_ksm_estimated_savings_bytes", {}, as_double(k.savings_bytes));
    e.sample("memtide_ksm_estimate_memory_bytes", {{"kind", "candidate"}},
             as_double(k.candidate_bytes));
    e.sample("memtide_ksm_estimate_memory_bytes", {{"kind", "resident"}},
             as_double(k.resident_bytes));
    e.sample("memtide_ksm_estimate_memory_bytes", {{"kind", "zero"}}, as_double(k.zero_bytes));
  }
  e.gauge("memtide_ksm_estimate_vms", "VMs the estimate covers.", as_double(k.vms));
  e.counter("memtide_page_scan_read_bytes_total",
            "Guest memory the page scanner has read and hashed.", k.read_bytes_total);
  e.family("memtide_page_scan_cpu_seconds_total", "counter",
           "CPU time of the page scanner thread (read_bytes rate / this rate: bytes hashed per "
           "CPU second).");
  e.sample("memtide_page_scan_cpu_seconds_total", {}, k.cpu_seconds_total);
  e.counter("memtide_page_scan_passes_total", "VM passes the page scanner completed.",
            k.passes_total);
  e.counter("memtide_page_scan_probes_total",
            "Probes of converged VMs' sample pages (a few hundred pages re-read to see whether "
            "the content moved).",
            k.probes_total);
  e.family("memtide_page_scan_wakes_total", "counter",
           "Passes over a converged VM brought forward, by reason (restarted: its QEMU process; "
           "resident, resized, ksm: its resident, balloon or KSM-merged memory moved; content: a "
           "probe found its pages changed).");
  for (const char* reason : {"content", "ksm", "resident", "resized", "restarted"}) {
    const auto it = k.wakes_total.find(reason);
    e.sample("memtide_page_scan_wakes_total", {{"reason", reason}},
             as_double(it == k.wakes_total.end() ? 0 : it->second));
  }
}

// One per-VM family: `value` gives the VM's sample, or nullopt to leave the VM out. VMs are
// passed with their index in the snapshot.
struct VmFamily {
  const char* name;
  const char* type;
  const char* help;
  bool decision;  // kept with metrics.per_vm: decisions
  std::function<std::optional<double>(std::size_t index, const VmSample&)> value;
};

std::optional<double> opt(const std::optional<std::uint64_t>& v) {
  return v ? std::optional<double>(as_double(*v)) : std::nullopt;
}

std::optional<double> flag(const std::optional<bool>& v) {
  return v ? std::optional<double>(*v ? 1.0 : 0.0) : std::nullopt;
}

// A VM's virtio-mem devices' `field`, summed; nullopt without devices.
std::optional<double> virtio_mem_sum(const VmSample& vm, std::uint64_t VirtioMemDevice::*field) {
  if (vm.virtio_mem.empty()) {
    return std::nullopt;
  }
  double sum = 0;
  for (const auto& d : vm.virtio_mem) {
    sum += as_double(d.*field);
  }
  return sum;
}

// What the guest and the host say about each VM.
std::vector<VmFamily> guest_families() {
  return {
      {"memtide_vm_memory_maximum_bytes", "gauge",
       "The most memory the VM may have: its balloon's maximum plus its virtio-mem devices' sizes.",
       true, [](std::size_t, const VmSample& vm) { return as_double(vm.max_bytes); }},
      {"memtide_vm_balloon_bytes", "gauge",
       "The VM's current memory: its balloon's size plus what its virtio-mem devices plugged.",
       true, [](std::size_t, const VmSample& vm) { return as_double(vm.current_bytes); }},
      {"memtide_vm_usable_bytes", "gauge",
       "Memory the guest can use without swapping (free plus reclaimable page cache).", true,
       [](std::size_t, const VmSample& vm) { return opt(vm.guest.usable_bytes); }},
      {"memtide_vm_unused_bytes", "gauge", "Free memory inside the guest (MemFree).", false,
       [](std::size_t, const VmSample& vm) { return opt(vm.guest.unused_bytes); }},
      {"memtide_vm_disk_caches_bytes", "gauge", "Page cache inside the guest.", false,
       [](std::size_t, const VmSample& vm) { return opt(vm.guest.disk_caches_bytes); }},
      {"memtide_vm_swap_in_bytes_total", "counter", "Bytes the guest swapped in.", false,
       [](std::size_t, const VmSample& vm) { return opt(vm.guest.swap_in_bytes_total); }},
      {"memtide_vm_swap_out_bytes_total", "counter", "Bytes the guest swapped out.", false,
       [](std::size_t, const VmSample& vm) { return opt(vm.guest.swap_out_bytes_total); }},
      {"memtide_vm_major_faults_total", "counter", "Major page faults inside the guest.", false,
       [](std::size_t, const VmSample& vm) { return opt(vm.guest.major_faults_total); }},
      {"memtide_vm_disk_read_bytes_total", "counter",
       "Bytes the guest read from its disks, as last asked with its balloon statistics (re-reads "
       "through read() show here, not as major faults); absent without bulk block statistics.",
       false, [](std::size_t, const VmSample& vm) { return opt(vm.disk_read_bytes_total); }},
      {"memtide_vm_host_resident_bytes", "gauge",
       "Guest memory resident on the host (VmRSS of the QEMU process).", false,
       [](std::size_t, const VmSample& vm) {
         return vm.process ? opt(vm.process->rss_bytes) : std::optional<double>();
       }},
      {"memtide_vm_host_swap_bytes", "gauge",
       "Guest memory the host swapped out (VmSwap of the QEMU process).", false,
       [](std::size_t, const VmSample& vm) {
         return vm.process ? opt(vm.process->swap_bytes) : std::optional<double>();
       }},
      {"memtide_vm_balloon_autodeflate", "gauge",
       "1 when the VM's balloon deflates itself before the guest runs out of memory "
       "(<memballoon autodeflate='on'>); absent without a balloon.",
       false, [](std::size_t, const VmSample& vm) { return flag(vm.balloon_autodeflate); }},
      {"memtide_vm_balloon_free_page_reporting", "gauge",
       "1 when the guest hands its free pages back to the host itself (<memballoon "
       "freePageReporting='on'>); absent without a balloon.",
       false, [](std::size_t, const VmSample& vm) { return flag(vm.balloon_free_page_reporting); }},
      {"memtide_vm_virtio_mem_maximum_bytes", "gauge",
       "The most the VM's virtio-mem devices can plug, summed; absent without such devices.", false,
       [](std::size_t, const VmSample& vm) {
         return virtio_mem_sum(vm, &VirtioMemDevice::max_bytes);
       }},
      {"memtide_vm_virtio_mem_requested_bytes", "gauge",
       "What the host asked the VM's virtio-mem devices to plug, summed; absent without such "
       "devices.",
       true,
       [](std::size_t, const VmSample& vm) {
         return virtio_mem_sum(vm, &VirtioMemDevice::requested_bytes);
       }},
      {"memtide_vm_virtio_mem_plugged_bytes", "gauge",
       "What the guest has plugged of its virtio-mem devices, summed (above the requested size: "
       "an unplug it has not finished or cannot finish); absent without such devices.",
       true,
       [](std::size_t, const VmSample& vm) {
         return virtio_mem_sum(vm, &VirtioMemDevice::plugged_bytes);
       }},
      {"memtide_vm_memory_pinned", "gauge",
       "1 when all of the VM's memory stays on the host whatever its balloon (hugepages, locked, "
       "passed-through devices, preallocation, launchSecurity): memtide never shrinks it.",
       false,
       [](std::size_t, const VmSample& vm) -> std::optional<double> {
         return vm.memory_pins.empty() ? 0.0 : 1.0;
       }},
  };
}

// What memtide makes of each VM: its target, floor, management and page scan. `settings` holds
// each VM's effective balloon settings in snapshot order (empty without a configuration).
std::vector<VmFamily> memtide_families(const TickReport& report,
                                       const std::vector<policy::EffectiveBalloon>& settings) {
  // Figures of a VM's last successful scan (kept while a later pass failed).
  auto scanned = [](const VmSample& vm) {
    return vm.page_scan && vm.page_scan->resident_bytes > 0;
  };
  return {
      {"memtide_vm_balloon_target_bytes", "gauge", "The size memtide last asked the balloon for.",
       true, [&](std::size_t, const VmSample& vm) { return opt(balloon_target_of(report, vm)); }},
      {"memtide_vm_balloon_floor_bytes", "gauge",
       "The least memory memtide leaves the VM (class or metadata floor).", true,
       [&](std::size_t index, const VmSample&) -> std::optional<double> {
         return settings.empty() ? std::nullopt
                                 : std::optional<double>(as_double(settings[index].floor_bytes));
       }},
      {"memtide_vm_page_scan_resident_bytes", "gauge",
       "Guest RAM resident on the host that the last page scan read.", false,
       [&](std::size_t, const VmSample& vm) -> std::optional<double> {
         return scanned(vm) ? std::optional<double>(as_double(vm.page_scan->resident_bytes))
                            : std::nullopt;
       }},
      {"memtide_vm_page_scan_zero_ratio", "gauge",
       "Share of the scanned guest pages that are all zero.", false,
       [&](std::size_t, const VmSample& vm) {
         return vm.page_scan ? vm.page_scan->share_of_resident(vm.page_scan->zero_bytes)
                             : std::nullopt;
       }},
      {"memtide_vm_page_scan_duplicate_ratio", "gauge",
       "Share of the scanned guest pages with an identical twin in the same VM (would merge).",
       false,
       [&](std::size_t, const VmSample& vm) {
         return vm.page_scan ? vm.page_scan->share_of_resident(vm.page_scan->duplicate_bytes)
                             : std::nullopt;
       }},
      {"memtide_vm_page_scan_volatile_ratio", "gauge",
       "Share of a fixed sample of guest pages whose contents changed between the last two scans.",
       false,
       [&](std::size_t, const VmSample& vm) {
         return scanned(vm) ? vm.page_scan->volatile_ratio : std::nullopt;
       }},
      {"memtide_vm_balloon_commands_total", "counter",
       "Balloon commands memtided carried out for the VM (for annotations: its changes() mark "
       "when memtide acted on it).",
       true,
       [&](std::size_t, const VmSample& vm) -> std::optional<double> {
         if (report.daemon == nullptr) {
           return std::nullopt;
         }
         const auto& counts = report.daemon->vm_balloon_commands_total;
         const auto it = counts.find(vm.key());
         return as_double(it == counts.end() ? 0 : it->second);
       }},
      {"memtide_vm_managed", "gauge", "1 when memtide may resize the VM's balloon.", true,
       [&](std::size_t index, const VmSample&) -> std::optional<double> {
         return settings.empty() ? std::nullopt
                                 : std::optional<double>(settings[index].managed ? 1 : 0);
       }},
  };
}

void page_scan_status_metrics(Exposition& e, const Snapshot& s) {
  e.family("memtide_vm_page_scan_status", "gauge",
           "1 for the state of memtide's page scan of the VM (scanned, pending, failed, opted-out: "
           "nosharepages, scan-disabled: metadata, off: ksm.scan.enabled false).");
  for (const auto& vm : s.vms) {
    if (vm.page_scan) {
      e.sample("memtide_vm_page_scan_status",
               {{"domain", vm.name},
                {"uuid", vm.uuid},
                {"connection", vm.connection},
                {"status", vm.page_scan->status}},
               1.0);
    }
  }
  e.family("memtide_vm_page_scan_schedule", "gauge",
           "1 for the page scanner's schedule for the VM: converging (passes every "
           "ksm.scan.interval), converged (every converged_interval, probed between), rescanning "
           "(a pass brought forward).");
  for (const auto& vm : s.vms) {
    if (vm.page_scan && !vm.page_scan->schedule.empty()) {
      e.sample("memtide_vm_page_scan_schedule",
               {{"domain", vm.name},
                {"uuid", vm.uuid},
                {"connection", vm.connection},
                {"schedule", vm.page_scan->schedule}},
               1.0);
    }
  }
}

// Per-VM families (those metrics.per_vm asks for): each is written for every VM in turn, as the
// format requires.
void vm_metrics(Exposition& e, const TickReport& report) {
  const Snapshot& s = *report.snapshot;
  const auto per_vm =
      report.config != nullptr ? report.config->metrics.per_vm : config::PerVmMetrics::full;
  if (s.vms.empty() || per_vm == config::PerVmMetrics::off) {
    return;
  }
  const bool full = per_vm == config::PerVmMetrics::full;
  std::vector<policy::EffectiveBalloon> settings;
  if (report.config != nullptr) {
    settings.reserve(s.vms.size());
    const auto owner =
        policy::yielding_to(s.other_managers, policy::Controls::balloons, *report.config);
    for (const auto& vm : s.vms) {
      settings.push_back(policy::effective_balloon(vm, *report.config, owner));
    }
  }
  for (const auto& families : {guest_families(), memtide_families(report, settings)}) {
    for (const auto& f : families) {
      if (!full && !f.decision) {
        continue;
      }
      e.family(f.name, f.type, f.help);
      for (std::size_t index = 0; index < s.vms.size(); ++index) {
        const VmSample& vm = s.vms[index];
        if (const auto v = f.value(index, vm)) {
          e.sample(f.name, {{"domain", vm.name}, {"uuid", vm.uuid}, {"connection", vm.connection}},
                   *v);
        }
      }
    }
  }
  if (full) {
    page_scan_status_metrics(e, s);
  }
  e.family("memtide_vm_stats_status", "gauge",
           "1 for the state of the guest's balloon statistics (ok, disabled, no-driver, stale, "
           "no-balloon).");
  for (const auto& vm : s.vms) {
    e.sample("memtide_vm_stats_status",
             {{"domain", vm.name},
              {"uuid", vm.uuid},
              {"connection", vm.connection},
              {"status", to_string(vm.stats_status)}},
             1.0);
  }
}

// With several libvirt daemons (libvirt.connections, libvirt.discover): each connection's state.
void connection_metrics(Exposition& e, const Snapshot& s) {
  if (s.connections.empty()) {
    return;
  }
  using Status = ConnectionState::Status;
  e.family("memtide_libvirt_connection_up", "gauge",
           "1 when the libvirt connection answered the last collection (its guests' figures are "
           "fresh); 0 while it is down and its guests' last figures stand.");
  for (const auto& c : s.connections) {
    if (c.status != Status::refused) {
      e.sample("memtide_libvirt_connection_up", {{"connection", c.name}},
               c.status == Status::up ? 1.0 : 0.0);
    }
  }
  e.family("memtide_libvirt_connection_guests", "gauge",
           "Guests the libvirt connection reported at its last good collection.");
  for (const auto& c : s.connections) {
    if (c.status != Status::refused) {
      e.sample("memtide_libvirt_connection_guests", {{"connection", c.name}}, c.vms);
    }
  }
  const auto refused = std::count_if(s.connections.begin(), s.connections.end(),
                                     [](const auto& c) { return c.status == Status::refused; });
  e.gauge("memtide_libvirt_sockets_refused",
          "Sockets the discovery globs matched but memtide does not use (not a socket, an "
          "untrusted owner, past libvirt.max_connections); memtidectl status names them.",
          static_cast<double>(refused));
}

void overcommit_metrics(Exposition& e, const Snapshot& s) {
  std::uint64_t maxima = 0;
  std::uint64_t current = 0;
  for (const auto& vm : s.vms) {
    maxima += vm.max_bytes;
    current += vm.current_bytes;
  }
  const double ram = as_double(s.host.meminfo.total_bytes);
  e.family("memtide_host_overcommit_ratio", "gauge",
           "Guest memory over host RAM: the sum of the running VMs' maxima (basis=maximum) or of "
           "their current balloon sizes (basis=current).");
  e.sample("memtide_host_overcommit_ratio", {{"basis", "maximum"}},
           ram > 0 ? as_double(maxima) / ram : 0.0);
  e.sample("memtide_host_overcommit_ratio", {{"basis", "current"}},
           ram > 0 ? as_double(current) / ram : 0.0);
  e.gauge("memtide_vms", "Running VMs in the last collection.", as_double(s.vms.size()));
  e.family("memtide_other_memory_managers", "gauge",
           "Processes of another memory manager running on the host, by name (ksmtuned, momd, "
           "vdsm, pvestatd, memtided for the same hypervisor).");
  for (const std::string_view name : collectors::known_manager_names()) {
    const auto running = std::count_if(s.other_managers.begin(), s.other_managers.end(),
                                       [name](const OtherManager& m) { return m.name == name; });
    e.sample("memtide_other_memory_managers", {{"name", std::string(name)}},
             static_cast<double>(running));
  }
  e.family("memtide_vms_memory_pinned", "gauge",
           "VMs whose memory stays on the host whatever their balloon, by what pins it "
           "(hugepages, locked, hostdev, preallocated, launch-security); a VM may count under "
           "several kinds.");
  for (const MemoryPin pin : kAllMemoryPins) {
    const auto pinned = std::count_if(s.vms.begin(), s.vms.end(), [pin](const VmSample& vm) {
      return std::find(vm.memory_pins.begin(), vm.memory_pins.end(), pin) != vm.memory_pins.end();
    });
    e.sample("memtide_vms_memory_pinned", {{"kind", to_string(pin)}}, static_cast<double>(pinned));
  }
  e.gauge("memtide_vms_virtio_mem", "Running VMs with at least one virtio-mem device.",
          static_cast<double>(std::count_if(s.vms.begin(), s.vms.end(), [](const VmSample& vm) {
            return !vm.virtio_mem.empty();
          })));
  e.gauge("memtide_vms_virtio_mem_unplug_pending",
          "Running VMs with a virtio-mem device that holds more than it was asked to: the guest "
          "is still unplugging, or cannot (it uses the memory).",
          static_cast<double>(std::count_if(s.vms.begin(), s.vms.end(), [](const VmSample& vm) {
            return virtio_mem_unplug_pending_bytes(vm) > 0;
          })));
}

void facts_metrics(Exposition& e, const collectors::VirtFacts& f) {
  e.family("memtide_host_paging_info", "gauge",
           "1, labelled with how KVM translates guest memory: ept or npt (hardware-assisted), "
           "shadow (software), or none (no KVM module loaded).");
  e.sample("memtide_host_paging_info", {{"paging", f.paging.value_or("none")}}, 1.0);
  if (f.thp_mode) {
    e.family("memtide_host_transparent_hugepage_info", "gauge",
             "1, labelled with the transparent hugepage mode (always, madvise, never).");
    e.sample("memtide_host_transparent_hugepage_info", {{"mode", *f.thp_mode}}, 1.0);
  }
}

void plan_metrics(Exposition& e, const policy::Plan& p, const std::vector<policy::Alert>& alerts) {
  e.gauge("memtide_host_under_pressure",
          "1 while the host is under memory pressure (below reserve, PSI over limits or "
          "swapping).",
          p.host_pressure ? 1 : 0);
  e.gauge("memtide_host_pressure_level",
          "How bad the host's memory situation is: 0 ok, 1 heading for swap (forecast), 2 tight "
          "(below the reserve or PSI some high), 3 critical (swapping at host.pressure.swap_rate, "
          "a full stall, or at the swap point).",
          static_cast<double>(static_cast<int>(p.host_level)));
  e.gauge("memtide_host_paying_back_swap",
          "1 while the host swaps in at host.pressure.swap_rate or more with swap in use: no "
          "growth is funded from the host except for guests in distress.",
          p.host_paying_back ? 1 : 0);
  e.gauge("memtide_forecast_seconds_to_swap",
          "Estimated time until the host must swap, from the MemAvailable trend; +Inf when "
          "MemAvailable is not falling.",
          p.forecast.seconds_to_swap ? *p.forecast.seconds_to_swap
                                     : std::numeric_limits<double>::infinity());
  e.family("memtide_host_headroom_bytes", "gauge",
           "Memory a scheduler may still place on this host: above_reserve (MemAvailable above "
           "host.reserve) and reclaimable (what the policy could take from guests above their "
           "needs and floors without pressing them).");
  e.sample("memtide_host_headroom_bytes", {{"kind", "above_reserve"}},
           as_double(p.headroom_above_reserve_bytes));
  e.sample("memtide_host_headroom_bytes", {{"kind", "reclaimable"}},
           as_double(p.reclaimable_bytes));
  e.gauge("memtide_forecast_available_slope_bytes_per_second",
          "Trend of host MemAvailable (Theil-Sen slope over the forecast window).",
          p.forecast.available_slope_bytes_per_second);
  e.family("memtide_alert_firing", "gauge",
           "1 for every alert firing, by alert, severity and (guest alerts) domain.");
  for (const auto& a : alerts) {
    const char* severity = policy::to_string(a.severity);
    if (a.subject.empty()) {
      e.sample("memtide_alert_firing", {{"alert", a.name}, {"severity", severity}}, 1.0);
    } else {
      e.sample("memtide_alert_firing",
               {{"alert", a.name}, {"domain", a.subject}, {"severity", severity}}, 1.0);
    }
  }
}

// The process_* families every Prometheus client library exports, under their usual names.
void process_metrics(Exposition& e, const std::optional<collectors::SelfProcess>& p) {
  if (!p) {
    return;
  }
  e.family("process_cpu_seconds_total", "counter", "User and system CPU time memtided used.");
  e.sample("process_cpu_seconds_total", {}, p->cpu_seconds);
  e.gauge("process_resident_memory_bytes", "Resident memory of memtided.",
          as_double(p->resident_bytes));
  e.gauge("process_virtual_memory_bytes", "Virtual memory of memtided.",
          as_double(p->virtual_bytes));
  e.gauge("process_open_fds", "File descriptors memtided has open.", as_double(p->open_fds));
  e.gauge("process_max_fds", "The most file descriptors memtided may open (RLIMIT_NOFILE).",
          as_double(p->max_fds));
  e.gauge("process_start_time_seconds", "When memtided started, in seconds since the epoch.",
          p->start_time_seconds);
}

void daemon_metrics(Exposition& e, const DaemonFigures& d) {
  e.family("memtide_build_info", "gauge", "1, labelled with the running version.");
  e.sample("memtide_build_info", {{"version", MEMTIDE_VERSION}}, 1.0);
  e.gauge("memtide_start_time_seconds", "When memtided started, in seconds since the epoch.",
          static_cast<double>(d.started_unix_s));
  e.counter("memtide_ticks_total", "Collect/decide/act ticks run.", d.ticks_total);
  e.family("memtide_tick_seconds_total", "counter", "Time spent in ticks.");
  e.sample("memtide_tick_seconds_total", {}, d.tick_seconds_total);
  e.gauge("memtide_last_tick_seconds", "Duration of the last tick.", d.last_tick_seconds);
  e.counter("memtide_metrics_renders_total", "Pages of these metrics rendered (on demand).",
            d.metrics_renders_total);
  e.family("memtide_errors_total", "counter",
           "Errors by kind: collect (host or VM figures), balloon (a command failed), ksm (a "
           "KSM setting could not be written), record (trace), reload (configuration rejected), "
           "tick-budget (balloon commands carried over: libvirt too slow), internal (a tick, "
           "reload or stop failed unexpectedly; the daemon went on), state (the policy state "
           "could not be saved).");
  for (const char* kind :
       {"collect", "balloon", "ksm", "record", "reload", "tick-budget", "internal", "state"}) {
    const auto it = d.errors_total.find(kind);
    e.sample("memtide_errors_total", {{"kind", kind}},
             it != d.errors_total.end() ? it->second : std::uint64_t{0});
  }
  // Every labelled counter has a sample for each label value from the start, so rate() and
  // increase() see the first event rather than a series that appears with it.
  e.family("memtide_balloon_actions_total", "counter",
           "Balloon commands carried out, by direction (grow, shrink) and cause.");
  for (const char* direction : {"grow", "shrink"}) {
    for (const policy::Cause cause : policy::kAllCauses) {
      const auto it = d.balloon_actions_total.find({direction, policy::to_string(cause)});
      e.sample("memtide_balloon_actions_total",
               {{"direction", direction}, {"cause", policy::to_string(cause)}},
               it != d.balloon_actions_total.end() ? it->second : std::uint64_t{0});
    }
  }
  e.counter("memtide_pressure_events_total", "Wake-ups by the memory PSI trigger.",
            d.pressure_events_total);
  e.family("memtide_ksm_writes_total", "counter", "KSM settings memtide wrote, by file.");
  for (const char* file : kKsmSettingFiles) {
    const auto it = d.ksm_writes_total.find(file);
    e.sample("memtide_ksm_writes_total", {{"file", file}},
             it != d.ksm_writes_total.end() ? it->second : std::uint64_t{0});
  }
  e.family("memtide_huge_page_releases_total", "counter",
           "Splits of the huge pages a shrunk balloon left partly mapped, by result (done, "
           "failed).");
  for (const char* result : {"done", "failed"}) {
    const auto it = d.huge_page_releases_total.find(result);
    e.sample("memtide_huge_page_releases_total", {{"result", result}},
             it != d.huge_page_releases_total.end() ? it->second : std::uint64_t{0});
  }
  e.family("memtide_alert_deliveries_total", "counter",
           "Alert deliveries by sink (alertmanager, exec) and result (delivered, failed: an "
           "attempt failed, dropped: given up or pushed out of the queue).");
  for (const char* sink : {"alertmanager", "exec"}) {
    for (const char* result : {"delivered", "failed", "dropped"}) {
      const auto it = d.alert_deliveries_total.find({sink, result});
      e.sample("memtide_alert_deliveries_total", {{"sink", sink}, {"result", result}},
               it != d.alert_deliveries_total.end() ? it->second : std::uint64_t{0});
    }
  }
  // Families whose value may be unknown keep their HELP and TYPE, so dashboards and rules find
  // them from the first scrape.
  e.family("memtide_pressure_reaction_seconds", "gauge",
           "Time from the last answered pressure event to its first balloon command.");
  if (d.last_reaction_seconds) {
    e.sample("memtide_pressure_reaction_seconds", {}, *d.last_reaction_seconds);
  }
  e.gauge("memtide_actions_paused", "1 while balloon actions are paused (memtidectl pause).",
          d.paused ? 1 : 0);
  e.gauge("memtide_dry_run", "1 when memtide decides but never acts.", d.dry_run ? 1 : 0);
  e.gauge("memtide_config_last_reload_success", "0 when the last reload was rejected.",
          d.last_reload_ok ? 1 : 0);
  e.family("memtide_host_info", "gauge",
           "1, labelled with the host's name, kernel release and machine (uname).");
  e.sample("memtide_host_info",
           {{"hostname", d.host.hostname}, {"kernel", d.host.kernel}, {"machine", d.host.machine}},
           1.0);
  process_metrics(e, d.process);
}

}  // namespace

std::string render_metrics(const TickReport& in) {
  Exposition e;
  e.reserve(4096 + (in.snapshot != nullptr ? in.snapshot->vms.size() * 2400 : 0));
  if (in.daemon != nullptr) {
    daemon_metrics(e, *in.daemon);
  }
  if (in.snapshot != nullptr) {
    const Snapshot& s = *in.snapshot;
    e.gauge("memtide_libvirt_up", "1 when the VM figures come from a live libvirt connection.",
            s.hypervisor_up ? 1 : 0);
    connection_metrics(e, s);
    e.gauge("memtide_last_collection_time_seconds",
            "When the figures below were collected, in seconds since the epoch.",
            static_cast<double>(s.collected_at_unix_ms) / 1000.0);
    host_metrics(e, s);
    overcommit_metrics(e, s);
    if (s.ksm) {
      ksm_metrics(e, *s.ksm);
    }
    page_scan_metrics(e, s.ksm_estimate);
    vm_metrics(e, in);
  }
  if (in.facts != nullptr) {
    facts_metrics(e, *in.facts);
  }
  if (in.plan != nullptr) {
    plan_metrics(e, *in.plan, firing_alerts(in));
  }
  return e.take();
}

}  // namespace memtide::report
