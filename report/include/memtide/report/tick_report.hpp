// TickReport: everything memtided knows after a tick, in one place. Every output renders from
// it and from nothing else: the metrics page (metrics.hpp), the control protocol's status and
// explain answers (status.hpp) and the snapshot JSON of --once and traces (snapshot_json.hpp).
// So a figure shown in two places is the same figure, and a new field is added once, here, then
// shown where it belongs.
//
// A report borrows: its pointers stay valid until the daemon's next tick (the loop builds one
// after each tick and renders from it at once; a control request is answered between ticks).
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <memtide/collectors/self_process.hpp>
#include <memtide/collectors/virt_facts.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>

namespace memtide::report {

// What the daemon counts about itself.
struct DaemonFigures {
  std::uint64_t ticks_total = 0;
  double tick_seconds_total = 0;  // wall time spent in ticks
  double last_tick_seconds = 0;
  // /metrics pages rendered (on demand: when a scrape finds the page older than the last
  // tick), this one included.
  std::uint64_t metrics_renders_total = 0;
  std::map<std::string, std::uint64_t> errors_total;  // by kind: collect, balloon, record, reload
  // Balloon commands carried out, by (direction "grow"/"shrink", cause).
  std::map<std::pair<std::string, std::string>, std::uint64_t> balloon_actions_total;
  // Balloon commands carried out, by VM UUID; VMs gone from the snapshot are dropped.
  std::map<std::string, std::uint64_t> vm_balloon_commands_total;
  std::uint64_t pressure_events_total = 0;      // PSI trigger wake-ups
  std::optional<double> last_reaction_seconds;  // pressure event to first balloon command
  bool paused = false;                          // actions paused from the control socket
  bool dry_run = false;
  bool last_reload_ok = true;
  std::string last_reload_error;  // why the last reload was refused; "" after a good one
  std::string collect_error;      // why the last collection failed; "" after a good one
  std::string metrics_endpoint;   // where /metrics is served ("" while off)
  std::int64_t started_unix_s = 0;
  // Alert deliveries by (sink "alertmanager"/"exec", result "delivered"/"failed"/"dropped").
  std::map<std::pair<std::string, std::string>, std::uint64_t> alert_deliveries_total;
  std::map<std::string, std::uint64_t> ksm_writes_total;  // KSM files written, by file name
  // Releases of partly mapped huge pages in shrunk guests, by result ("done", "failed").
  std::map<std::string, std::uint64_t> huge_page_releases_total;
  std::optional<collectors::SelfProcess> process;  // memtided itself, read for each page
  collectors::HostIdentity host;
};

// One balloon command and what became of it, for `memtidectl status`.
struct RecentCommand {
  std::int64_t unix_ms = 0;  // collection time of the snapshot it was decided on
  policy::BalloonChange change;
  std::string outcome;  // "applied", "failed: ...", "dry run", "paused", "carried over"
};

struct TickReport {
  const Snapshot* snapshot = nullptr;  // null before the first successful collection
  const policy::Plan* plan = nullptr;  // null before the first decision
  const policy::PolicyState* state = nullptr;
  const collectors::VirtFacts* facts = nullptr;  // null when they could not be read
  const config::Config* config = nullptr;
  const DaemonFigures* daemon = nullptr;
  // Every alert firing (the plan's and the daemon's own), sorted by (name, subject); null: the
  // plan's alone.
  const std::vector<policy::Alert>* alerts = nullptr;
  const std::deque<RecentCommand>* recent_commands = nullptr;  // oldest first; null: none
};

// The alerts firing: report.alerts, else the plan's, else none.
const std::vector<policy::Alert>& firing_alerts(const TickReport& report);

// The policy's outcome for the snapshot's VM at `index`; null when the plan does not cover the
// snapshot's VMs (no plan yet, or libvirt down: the plan was made on the host alone).
const policy::Outcome* outcome_of(const TickReport& report, std::size_t index);

// The balloon size memtide last asked for the VM with key `key` (VmSample::key()), or for `vm`;
// nullopt when it never did.
std::optional<std::uint64_t> balloon_target_of(const TickReport& report, const std::string& key);
std::optional<std::uint64_t> balloon_target_of(const TickReport& report, const VmSample& vm);

}  // namespace memtide::report
