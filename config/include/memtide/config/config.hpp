// The validated, typed configuration. A Config is immutable once built: the daemon holds a
// std::shared_ptr<const Config> and a reload swaps the pointer whole, so nothing ever sees a
// half-applied file. Every field documented here is documented for operators in
// config/memtide.yaml and docs/configuration.md; defaults below are the defaults of an empty file.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <memtide/config/units.hpp>

namespace memtide::config {

using namespace std::chrono_literals;

enum class LogLevel { debug, info, notice, warning, error };

// What happens to the balloons of managed VMs when memtided stops.
enum class OnStop {
  restore,  // give every managed VM its maximum back, so no guest stays starved
  keep,     // leave balloons as they are (e.g. for quick restarts on a tight host)
};

// Recording of every tick's snapshot as JSON lines, for `memtidectl simulate` and post-mortems.
// The file is rotated when it exceeds max_size: PATH -> PATH.1 -> ... -> PATH.<files - 1>, the
// oldest dropped, so the trace never uses more than about max_size * files on disk.
struct RecordSection {
  std::string path;                            // "" (default): recording off
  std::uint64_t max_size_bytes = 64ULL << 20;  // size at which the current file is rotated
  std::uint32_t files = 4;                     // files kept, the current one included
  friend bool operator==(const RecordSection&, const RecordSection&) = default;
};

// What memtided does while another memory manager runs on the host (ksmtuned, oVirt MOM,
// Proxmox's pvestatd, a second memtided for the same hypervisor).
enum class Coexist {
  yield,  // "auto": leave what the other manager controls (balloons, KSM) to it
  force,  // act anyway; the other manager and memtide will undo each other's changes
};

struct DaemonSection {
  std::chrono::milliseconds interval = 10s;  // period of the collect/decide/act tick
  std::string procfs = "/proc";              // root of procfs (fixture trees in tests)
  std::string sysfs = "/sys";                // root of sysfs
  LogLevel log_level = LogLevel::info;       // least severe message that is logged
  OnStop on_stop = OnStop::restore;
  bool dry_run = false;  // decide and report every tick, but never change a balloon or KSM
  Coexist coexist = Coexist::yield;
  RecordSection record;
  // Unix socket memtidectl talks to (mode 0600); "" turns it off. --control-socket overrides.
  std::string control_socket = "/run/memtide/control.sock";
  // Where the policy's memory (hysteresis, commands in flight, alert state, the KSM hold-off)
  // is kept across restarts. "auto": $STATE_DIRECTORY/policy-state.json when systemd sets
  // STATE_DIRECTORY (the unit's StateDirectory=memtide), else off; "" off; or an absolute path.
  std::string state_file = "auto";
  friend bool operator==(const DaemonSection&, const DaemonSection&) = default;
};

// One libvirt daemon among several (libvirt.connections).
struct LibvirtConnectionSpec {
  std::string name;  // in logs, metrics, status, the trace and VM keys: [A-Za-z0-9._-], <= 64
  std::string uri;
  friend bool operator==(const LibvirtConnectionSpec&, const LibvirtConnectionSpec&) = default;
};

// Daemons found by their sockets (libvirt.discover): each socket matching `socket` (a glob) is
// a connection to `uri` with {socket} replaced by its path, named `name`-<what the glob's
// wildcards matched>. Only sockets owned by root or one of `owners` are used.
struct LibvirtDiscovery {
  std::string name;
  std::string socket;
  std::string uri = "qemu+unix:///session?socket={socket}";
  std::vector<std::uint32_t> owners;  // user IDs trusted besides root
  friend bool operator==(const LibvirtDiscovery&, const LibvirtDiscovery&) = default;
};

struct LibvirtSection {
  std::string uri = "qemu:///system";  // libvirt connection URI; --connect overrides it
  // Several daemons at once, instead of `uri`: named connections and discovered sockets. Each
  // has its own thread, reconnection and share of `timeout`; one policy decides across all.
  std::vector<LibvirtConnectionSpec> connections;
  std::vector<LibvirtDiscovery> discover;
  std::uint32_t max_connections = 64;                 // configured and discovered together
  std::chrono::milliseconds discover_interval = 10s;  // how often the socket globs are read
  std::chrono::milliseconds timeout = 5s;  // longest a tick waits for libvirt before going on
                                           // with the VM figures it has
  std::chrono::milliseconds keepalive_interval = 5s;  // keepalive probe period on remote drivers
  std::uint32_t keepalive_count = 3;  // unanswered probes before the connection counts as dead
  std::chrono::milliseconds reconnect_max_backoff = 60s;  // cap of the doubling reconnect delay
  std::chrono::milliseconds relist_interval = 60s;  // full domain listing that heals missed events
  std::chrono::seconds stats_period = 5s;  // set on guests whose balloon statistics are disabled;
                                           // 0: leave them disabled
  friend bool operator==(const LibvirtSection&, const LibvirtSection&) = default;
};

struct SwapForecastSection {
  std::chrono::milliseconds horizon = 120s;  // warn when swapping is predicted within this
  std::chrono::milliseconds window = 60s;    // history the trend is fitted over
  friend bool operator==(const SwapForecastSection&, const SwapForecastSection&) = default;
};

struct PressureSection {
  double psi_some_avg10_ratio = 0.10;  // host memory PSI "some" avg10 that counts as pressure
  double psi_full_avg10_ratio = 0.02;  // host memory PSI "full" avg10 that counts as pressure
  // Swap-out per second that counts as the host swapping (and swap-in per second that counts as
  // paying swap back). A trickle below it (swappiness, cgroup limits of other services) is
  // reported, never acted on; swap-out above it counts only while MemAvailable is below the
  // reserve, swap is forecast or memory PSI is high, since a cgroup at its own limit swaps
  // while the host has plenty.
  std::uint64_t swap_rate_bytes_per_second = 1ULL << 20;
  friend bool operator==(const PressureSection&, const PressureSection&) = default;
};

struct HostSection {
  std::uint64_t reserve_bytes = 2ULL << 30;  // MemAvailable the host keeps for itself
  SwapForecastSection swap_forecast;
  PressureSection pressure;
  // Split the transparent huge pages a balloon shrink left partly mapped (process_madvise
  // MADV_COLD over the shrunk guest's RAM), so the memory it gave reaches the host at once
  // rather than at the kernel's next reclaim.
  bool release_huge_pages = true;
  friend bool operator==(const HostSection&, const HostSection&) = default;
};

// off, on, auto: memtide sets ksmd (see policy/ksm.hpp). unmanaged: memtide never writes a KSM
// setting (another tool such as ksmtuned owns them); it still scans and reports.
enum class KsmMode { off, on, automatic, unmanaged };  // "auto" in YAML

// Who sets ksmd's pace: memtide (pages_to_scan from the candidate memory and ksmd's measured
// CPU), or the kernel's scan-time advisor (6.9+, advisor_mode) given the same target and budget.
enum class KsmAdvisor { none, scan_time };  // "none", "scan-time" in YAML

// memtide's own page scanner, which reads guest memory to estimate what KSM would save.
struct KsmScanSection {
  bool enabled = true;
  double cpu_ratio = 0.03;  // scanner thread's CPU budget, share of a core
  std::uint64_t read_bytes_per_second = 256ULL << 20;  // guest memory read per second at most
  // Between two passes over a VM whose figures are still moving (young, or changed).
  std::chrono::milliseconds interval = 1min;
  // Between two passes over a VM whose figures converged: the last kConvergePasses passes'
  // zero and duplicate shares of its resident memory each within `converged_width` (a share).
  std::chrono::milliseconds converged_interval = 30min;
  double converged_width = 0.02;
  // A converged VM's sample pages are re-read this often; a change in more of them than
  // `converged_width` (or twice its measured volatility) rescans it at once.
  std::chrono::milliseconds probe_interval = 1min;
  // A converged VM is also rescanned at once when its resident memory, its size (balloon or
  // virtio-mem) or its KSM-merged memory moved by more than this share of its resident memory
  // since its last pass.
  double wake_on_change = 0.10;
  // Page hashes a pass may hold (8 bytes each); a larger guest is counted from a hash-value
  // sample of this size.
  std::uint64_t max_memory_bytes = 4ULL << 20;
  friend bool operator==(const KsmScanSection&, const KsmScanSection&) = default;
};

struct KsmSection {
  KsmMode mode = KsmMode::automatic;
  double min_savings_ratio = 0.05;  // estimated savings (share of guest RAM) needed to merge
  double max_cpu_ratio = 0.20;      // ksmd CPU budget, share of one core
  std::chrono::milliseconds full_scan_time = 2min;  // one ksmd pass over the candidate memory
  std::chrono::milliseconds sleep = 20ms;           // sleep_millisecs between ksmd wake-ups
  KsmAdvisor advisor = KsmAdvisor::none;
  bool unmerge = false;  // stopping writes run=2 (unmerge everything) instead of run=0
  std::optional<bool> merge_across_nodes;  // unset: left as the kernel has it
  KsmScanSection scan;
  friend bool operator==(const KsmSection&, const KsmSection&) = default;
};

struct BalloonSettings {
  bool enabled = true;
  SizeOrRatio floor{0.30};         // bytes, or share of the VM's maximum ("min" before)
  double guest_free_ratio = 0.15;  // usable memory the guest should keep, share of its current size
  std::uint32_t shares = 1000;     // weight when memory is divided between VMs
  SizeOrRatio max_step{0.10};      // largest change per tick: bytes, or share of the VM's maximum
  std::uint64_t deadband_bytes = 32ULL << 20;  // changes smaller than this are not made
  std::chrono::milliseconds hysteresis = 60s;  // least time before a VM's balloon may move in
                                               // the opposite direction to its last change
  bool grow_when_host_idle = true;  // give memory back toward the maximum, paced and in share
                                    // order, while the host has room, not only to guests in need
  // After a shrink, a guest whose major faults rise (its file working set was evicted) is not
  // shrunk again for this long, except when the host is critical. 0: off.
  std::chrono::milliseconds cache_protection = 10min;
  friend bool operator==(const BalloonSettings&, const BalloonSettings&) = default;
};

// A class of VMs. A VM belongs to the first class whose `match` fits it.
struct VmClass {
  std::string name;
  std::optional<std::string> match_name;   // glob over the libvirt domain name
  std::optional<std::string> match_class;  // class named in the domain's memtide metadata
  BalloonSettings balloon;
  friend bool operator==(const VmClass&, const VmClass&) = default;
};

// Which per-VM series /metrics carries: on a host with a thousand VMs the full set (about 20
// series per VM) makes a page of well over a megabyte.
enum class PerVmMetrics {
  full,       // every per-VM family
  decisions,  // what memtide decides on and decides: balloon, maximum, usable, target, floor,
              // managed, statistics state
  off,        // none: host and memtide figures only
};

struct MetricsSection {
  // HOST:PORT of the Prometheus endpoint (IP literal; IPv6 in brackets); "" turns it off.
  // --metrics-listen overrides it; a socket passed by systemd (memtided.socket) replaces it.
  std::string listen = "127.0.0.1:9847";
  PerVmMetrics per_vm = PerVmMetrics::full;
  friend bool operator==(const MetricsSection&, const MetricsSection&) = default;
};

// Where alerts go besides the journal (which always gets them).
struct AlertsSection {
  // Prometheus Alertmanager base URL (http://host:9093); "" off. Alerts are POSTed to
  // URL/api/v2/alerts when they fire or resolve and re-sent every resend_interval while firing.
  std::string alertmanager_url;
  std::chrono::milliseconds alertmanager_resend_interval = 60s;
  std::chrono::milliseconds alertmanager_timeout = 5s;
  // Labels added to every alert sent to Alertmanager; they replace the defaults instance
  // ("<hostname>:<metrics port>", or the host name without metrics) and job ("memtide"), so they
  // can be set to what Prometheus calls this host and the shipped rules' alerts deduplicate
  // with memtided's. Names are Prometheus label names; alertname, severity and domain are
  // memtided's own.
  std::map<std::string, std::string> alertmanager_labels;
  // An executable run once per alert transition with the alert as JSON on stdin; "" off.
  std::string exec_command;
  std::chrono::milliseconds exec_timeout = 10s;  // killed after this
  // Where the runbooks are: each alert sent to Alertmanager links RUNBOOK_BASE#<alertname in
  // lower case>. The default is the page the package installs; a site that serves the runbooks
  // (docs/runbooks.md) elsewhere sets its URL here and in the shipped rules.
  std::string runbook_base = "file:///usr/share/doc/memtide/runbooks.md";
  friend bool operator==(const AlertsSection&, const AlertsSection&) = default;
};

struct Config {
  std::string source;                // file it was loaded from ("" for built-in defaults)
  std::vector<std::string> dropins;  // drop-in files applied after it, in order
  bool source_has_settings = false;  // `source` held at least one key (not only comments)
  DaemonSection daemon;
  LibvirtSection libvirt;
  HostSection host;
  KsmSection ksm;
  MetricsSection metrics;
  AlertsSection alerts;
  std::vector<VmClass> classes;  // empty file: one class "default" matching every VM
  friend bool operator==(const Config&, const Config&) = default;
};

const char* to_string(LogLevel level);
const char* to_string(KsmMode mode);
const char* to_string(KsmAdvisor advisor);
const char* to_string(OnStop on_stop);
const char* to_string(Coexist coexist);      // "auto", "force"
const char* to_string(PerVmMetrics per_vm);  // "full", "decisions", "off"

}  // namespace memtide::config
