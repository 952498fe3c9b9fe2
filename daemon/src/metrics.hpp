// The /metrics page: everything memtide knows, in the Prometheus text exposition format 0.0.4.
// Rendered on the loop thread once per tick from plain inputs (render_metrics is a pure function
// of them); the HTTP server only hands out the last rendered page, so a scrape never waits on the
// loop and never sees a half-updated tick. Every metric is documented in README.md.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <memtide/collectors/virt_facts.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>

namespace memtide::daemon {

// What the daemon counts about itself.
struct DaemonFigures {
  std::uint64_t ticks_total = 0;
  double tick_seconds_total = 0;  // wall time spent in ticks
  double last_tick_seconds = 0;
  std::map<std::string, std::uint64_t> errors_total;  // by kind: collect, balloon, record, reload
  // Balloon commands carried out, by (direction "grow"/"shrink", cause).
  std::map<std::pair<std::string, std::string>, std::uint64_t> balloon_actions_total;
  std::uint64_t pressure_events_total = 0;      // PSI trigger wake-ups
  std::optional<double> last_reaction_seconds;  // pressure event to first balloon command
  bool paused = false;                          // actions paused from the control socket
  bool dry_run = false;
  bool last_reload_ok = true;
  std::int64_t started_unix_s = 0;
  // Alert deliveries by (sink "alertmanager"/"exec", result "delivered"/"failed"/"dropped").
  std::map<std::pair<std::string, std::string>, std::uint64_t> alert_deliveries_total;
  std::map<std::string, std::uint64_t> ksm_writes_total;  // KSM files written, by file name
  // Releases of partly mapped huge pages in shrunk guests, by result ("done", "failed").
  std::map<std::string, std::uint64_t> huge_page_releases_total;
};

struct MetricsInput {
  const Snapshot* snapshot = nullptr;  // null before the first successful collection
  const policy::Plan* plan = nullptr;  // null before the first decision
  const policy::PolicyState* state = nullptr;
  const collectors::VirtFacts* facts = nullptr;  // null when they could not be read
  const config::Config* config = nullptr;
  const DaemonFigures* daemon = nullptr;
  // Every alert firing (the plan's and the daemon's own); null: the plan's alone.
  const std::vector<policy::Alert>* alerts = nullptr;
};

std::string render_metrics(const MetricsInput& input);

// A label value escaped for the text format (backslash, double quote and newline).
std::string escape_label_value(std::string_view value);

}  // namespace memtide::daemon
