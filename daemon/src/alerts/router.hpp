// Where alerts go once a tick has decided what fires: the journal (one line per transition),
// the exec hook (every transition) and Alertmanager (on any change, and again every
// alerts.alertmanager_resend_interval while something fires). The router owns the sinks and
// rebuilds them when the configuration changes; delivery runs on each sink's own thread.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>
#include <memtide/policy/service_alerts.hpp>
#include <memtide/report/tick_report.hpp>

#include "alerts/delivery.hpp"
#include "log.hpp"

namespace memtide::daemon {

class AlertRouter {
 public:
  explicit AlertRouter(Logger& log);

  // (Re)creates the Alertmanager and exec sinks to match `alerts`; `metrics_listen` (the
  // metrics section's HOST:PORT) gives the default instance label (alert_target_labels).
  void configure(const config::AlertsSection& alerts, const std::string& metrics_listen);

  // This tick's alerts: the plan's plus memtide's own (policy::ServiceAlerts) from `snapshot`
  // and the balloon commands that `failed` (VM -> why). Logs and delivers the transitions.
  void route(const policy::Plan& plan, const Snapshot& snapshot,
             const std::map<std::string, std::string>& failed, std::int64_t now_ms);

  // Logs failed deliveries with their reason, at most once a minute per sink (`now_usec` on
  // CLOCK_MONOTONIC).
  void report_delivery_failures(std::uint64_t now_usec);

  // The sinks' delivery counters, into `figures`.
  void count_deliveries(report::DaemonFigures& figures) const;

  // Everything firing, sorted by (name, subject).
  const std::vector<policy::Alert>& firing() const { return firing_; }

 private:
  using Key = std::pair<std::string, std::string>;  // (name, subject)
  // Each sink by its name in metrics and logs; null while not configured.
  std::array<std::pair<const char*, const DeliveryQueue*>, 2> sinks() const {
    return {{{"alertmanager", alertmanager_.get()}, {"exec", exec_hook_.get()}}};
  }
  void deliver(const std::vector<AlertNotice>& changed, const std::vector<AlertNotice>& resolved,
               std::int64_t now_unix_ms);

  Logger& log_;
  std::int64_t resend_ms_ = 0;
  policy::ServiceAlerts service_alerts_;
  std::vector<policy::Alert> firing_;
  std::map<Key, std::int64_t> started_unix_ms_;
  std::unique_ptr<AlertmanagerSink> alertmanager_;
  std::unique_ptr<ExecSink> exec_hook_;
  std::int64_t alertmanager_sent_unix_ms_ = 0;
  struct FailuresLogged {
    std::uint64_t failed_attempts = 0;  // the sink's count when last logged
    std::uint64_t at_usec = 0;          // CLOCK_MONOTONIC of that line; 0 before the first
  };
  std::map<std::string, FailuresLogged> failures_logged_;  // by sink name
  std::string hostname_;
  std::map<std::string, std::string> target_labels_;  // on every alert sent to Alertmanager
  std::string runbook_base_;                          // alerts.runbook_base
};

}  // namespace memtide::daemon
