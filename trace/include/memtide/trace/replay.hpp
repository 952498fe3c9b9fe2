// Replay of recorded snapshots through the policy: what `memtidectl simulate` runs.
//
// A replay is open-loop: the balloon sizes in the trace are what really happened under the
// daemon's configuration at the time, and each tick's decisions are what `config` would have
// asked for given exactly those figures. With the configuration that was in force, the
// decisions are the daemon's own (decide() is deterministic and the trace is exact).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>
#include <memtide/policy/service_alerts.hpp>

namespace memtide::trace {

// Something a tick's decision did that an operator would see in the journal.
struct ReplayEvent {
  enum class Kind { balloon, alert_firing, alert_resolved };
  std::int64_t unix_ms = 0;  // the snapshot's collection time
  Kind kind = Kind::balloon;
  std::string subject;  // VM name, or alert name[/subject]
  std::string text;     // the balloon command with its reason, or the alert summary
};

struct ReplaySummary {
  std::size_t ticks = 0;
  std::int64_t first_unix_ms = 0;
  std::int64_t last_unix_ms = 0;
  std::size_t max_vms = 0;
  std::size_t grows = 0;
  std::size_t shrinks = 0;
  std::uint64_t grown_bytes = 0;   // sum of the growth the commands asked for
  std::uint64_t shrunk_bytes = 0;  // sum of the memory the commands took back
  struct AlertFigures {
    std::size_t fired = 0;
    std::int64_t firing_ms = 0;  // time between ticks while firing, summed
  };
  std::map<std::string, AlertFigures> alerts;  // by alert name
  std::optional<std::uint64_t> min_available_bytes;
  std::optional<double> min_seconds_to_swap;  // the shortest forecast seen
};

class Replay {
 public:
  explicit Replay(std::shared_ptr<const config::Config> config);

  // Runs decide() on the next snapshot (snapshots must come in recorded order; the policy's
  // clock is the snapshot's monotonic_ms) and returns what it did.
  std::vector<ReplayEvent> feed(const Snapshot& snapshot);
  const ReplaySummary& summary() const { return summary_; }
  // After feed(): that tick's plan, the policy's state after it and the alerts firing then.
  const policy::Plan& last_plan() const { return last_plan_; }
  const policy::PolicyState& state() const { return state_; }
  const std::vector<policy::Alert>& firing() const { return firing_; }

 private:
  std::shared_ptr<const config::Config> config_;
  policy::PolicyState state_;
  policy::ServiceAlerts service_alerts_;
  std::vector<policy::Alert> firing_;  // sorted by (name, subject)
  policy::Plan last_plan_;
  std::optional<std::int64_t> previous_monotonic_ms_;
  ReplaySummary summary_;
};

std::string describe(const ReplayEvent& event);
std::string describe(const ReplaySummary& summary);
nlohmann::ordered_json to_json(const ReplayEvent& event);
nlohmann::ordered_json to_json(const ReplaySummary& summary);

}  // namespace memtide::trace
