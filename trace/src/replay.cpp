#include <algorithm>
#include <cstdio>

#include <memtide/config/units.hpp>
#include <memtide/report/snapshot_json.hpp>
#include <memtide/trace/replay.hpp>

namespace memtide::trace {

using config::format_size;

Replay::Replay(std::shared_ptr<const config::Config> config) : config_(std::move(config)) {}

std::vector<ReplayEvent> Replay::feed(const Snapshot& snapshot) {
  std::vector<ReplayEvent> events;
  auto decision = policy::decide(snapshot, std::move(state_), *config_, snapshot.monotonic_ms);
  state_ = std::move(decision.state);
  const policy::Plan& plan = decision.plan;
  const std::int64_t at = snapshot.collected_at_unix_ms;

  auto& s = summary_;
  if (s.ticks++ == 0) {
    s.first_unix_ms = at;
  }
  s.last_unix_ms = at;
  s.max_vms = std::max(s.max_vms, snapshot.vms.size());
  const std::uint64_t available = snapshot.host.meminfo.available_bytes;
  s.min_available_bytes = std::min(s.min_available_bytes.value_or(available), available);
  if (const auto& t = plan.forecast.seconds_to_swap) {
    s.min_seconds_to_swap = std::min(s.min_seconds_to_swap.value_or(*t), *t);
  }

  for (const auto& change : plan.balloons) {
    if (change.to_bytes > change.from_bytes) {
      ++s.grows;
      s.grown_bytes += change.to_bytes - change.from_bytes;
    } else {
      ++s.shrinks;
      s.shrunk_bytes += change.from_bytes - change.to_bytes;
    }
    events.push_back({at, ReplayEvent::Kind::balloon, change.vm,
                      format_size(change.from_bytes) + " -> " + format_size(change.to_bytes) +
                          ": " + change.reason});
  }

  // Alert transitions, and time spent firing (the interval since the previous tick counts
  // toward every alert firing now).
  const std::int64_t elapsed_ms =
      previous_monotonic_ms_
          ? std::max<std::int64_t>(0, snapshot.monotonic_ms - *previous_monotonic_ms_)
          : 0;
  previous_monotonic_ms_ = snapshot.monotonic_ms;
  // memtide's own alerts as the daemon raised them: libvirt-down and libvirt-connection-down
  // from the snapshot (a recorded tick without libvirt, or with a connection down, says so);
  // balloon commands were not sent, so none failed.
  auto now_firing =
      service_alerts_.update(plan.alerts, snapshot.hypervisor_up, snapshot.hypervisor_error,
                             snapshot.connections, {}, snapshot.monotonic_ms);
  const auto changes = policy::alert_changes(firing_, now_firing);
  for (const auto& alert : now_firing) {
    s.alerts[alert.name].firing_ms += elapsed_ms;
  }
  for (const auto& alert : changes.fired) {
    auto& figures = s.alerts[alert.name];
    ++figures.fired;
    figures.firing_ms -= elapsed_ms;  // it was not firing before this tick
    events.push_back({at, ReplayEvent::Kind::alert_firing,
                      alert.subject.empty() ? alert.name : alert.name + "/" + alert.subject,
                      std::string(policy::to_string(alert.severity)) + ": " + alert.summary});
  }
  for (const auto& alert : changes.resolved) {
    events.push_back({at, ReplayEvent::Kind::alert_resolved,
                      alert.subject.empty() ? alert.name : alert.name + "/" + alert.subject,
                      "resolved"});
  }
  firing_ = std::move(now_firing);
  last_plan_ = std::move(decision.plan);
  return events;
}

namespace {

const char* kind_name(ReplayEvent::Kind kind) {
  switch (kind) {
    case ReplayEvent::Kind::balloon:
      return "balloon";
    case ReplayEvent::Kind::alert_firing:
      return "alert-firing";
    case ReplayEvent::Kind::alert_resolved:
      return "alert-resolved";
  }
  return "?";
}

// "850 ms", "42.5 s", "7.1 min", "3.2 h": a span for humans, not for parsing.
std::string duration_text(std::int64_t ms) {
  char buf[32];
  const double s = static_cast<double>(ms) / 1000.0;
  if (ms < 1000) {
    std::snprintf(buf, sizeof buf, "%lld ms", static_cast<long long>(ms));
  } else if (s < 120) {
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  } else if (s < 7200) {
    std::snprintf(buf, sizeof buf, "%.1f min", s / 60);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f h", s / 3600);
  }
  return buf;
}

}  // namespace

std::string describe(const ReplayEvent& event) {
  return report::format_utc(event.unix_ms) + "  " + kind_name(event.kind) + " " + event.subject +
         ": " + event.text;
}

std::string describe(const ReplaySummary& s) {
  std::string out;
  out += "ticks: " + std::to_string(s.ticks);
  if (s.ticks > 0) {
    out += " from " + report::format_utc(s.first_unix_ms) + " to " +
           report::format_utc(s.last_unix_ms) + " (" +
           duration_text(s.last_unix_ms - s.first_unix_ms) + "), up to " +
           std::to_string(s.max_vms) + " VMs";
  }
  out += "\nballoon commands: " + std::to_string(s.grows + s.shrinks) + " (" +
         std::to_string(s.grows) + " grow, " + std::to_string(s.shrinks) +
         " shrink); memory given " + format_size(s.grown_bytes) + ", reclaimed " +
         format_size(s.shrunk_bytes) + "\n";
  out += "host: lowest MemAvailable " +
         (s.min_available_bytes ? format_size(*s.min_available_bytes) : std::string("-")) +
         "; shortest time to swap forecast " +
         (s.min_seconds_to_swap
              ? duration_text(static_cast<std::int64_t>(*s.min_seconds_to_swap * 1000))
              : std::string("none (MemAvailable never falling)")) +
         "\n";
  if (s.alerts.empty()) {
    out += "alerts: none\n";
  }
  for (const auto& [name, figures] : s.alerts) {
    out += "alert " + name + ": fired " + std::to_string(figures.fired) + " time" +
           (figures.fired == 1 ? "" : "s") + ", firing for " + duration_text(figures.firing_ms) +
           "\n";
  }
  return out;
}

nlohmann::ordered_json to_json(const ReplayEvent& event) {
  return {{"at", report::format_utc(event.unix_ms)},
          {"at_unix_ms", event.unix_ms},
          {"kind", kind_name(event.kind)},
          {"subject", event.subject},
          {"text", event.text}};
}

nlohmann::ordered_json to_json(const ReplaySummary& s) {
  nlohmann::ordered_json alerts = nlohmann::ordered_json::object();
  for (const auto& [name, figures] : s.alerts) {
    alerts[name] = {{"fired", figures.fired},
                    {"firing_seconds", static_cast<double>(figures.firing_ms) / 1000.0}};
  }
  return {{"ticks", s.ticks},
          {"first_unix_ms", s.first_unix_ms},
          {"last_unix_ms", s.last_unix_ms},
          {"max_vms", s.max_vms},
          {"balloon_grows", s.grows},
          {"balloon_shrinks", s.shrinks},
          {"grown_bytes", s.grown_bytes},
          {"reclaimed_bytes", s.shrunk_bytes},
          {"min_available_bytes",
           s.min_available_bytes ? nlohmann::ordered_json(*s.min_available_bytes) : nullptr},
          {"min_seconds_to_swap",
           s.min_seconds_to_swap ? nlohmann::ordered_json(*s.min_seconds_to_swap) : nullptr},
          {"alerts", alerts}};
}

}  // namespace memtide::trace
