#include "alerts/router.hpp"

#include <unistd.h>

#include <memtide/report/json_text.hpp>

namespace memtide::daemon {

namespace {

std::string this_hostname() {
  char name[256] = {};
  gethostname(name, sizeof name - 1);
  return name;
}

}  // namespace

AlertRouter::AlertRouter(Logger& log) : log_(log), hostname_(this_hostname()) {}

void AlertRouter::configure(const config::AlertsSection& a, const std::string& metrics_listen) {
  resend_ms_ = a.alertmanager_resend_interval.count();
  target_labels_ = alert_target_labels(hostname_, metrics_listen, a.alertmanager_labels);
  runbook_base_ = a.runbook_base;
  if (a.alertmanager_url.empty()) {
    alertmanager_.reset();
  } else if (!alertmanager_ || alertmanager_->url() != a.alertmanager_url + "/api/v2/alerts") {
    alertmanager_ = std::make_unique<AlertmanagerSink>(a.alertmanager_url, a.alertmanager_timeout);
    alertmanager_sent_unix_ms_ = 0;  // send what is firing at the next tick
  }
  if (a.exec_command.empty()) {
    exec_hook_.reset();
  } else if (!exec_hook_ || exec_hook_->command() != a.exec_command) {
    exec_hook_ = std::make_unique<ExecSink>(a.exec_command, a.exec_timeout);
  }
}

void AlertRouter::route(const policy::Plan& plan, const Snapshot& snapshot,
                        const std::map<std::string, std::string>& failed, std::int64_t now_ms) {
  auto firing =
      service_alerts_.update(plan.alerts, snapshot.hypervisor_up, snapshot.hypervisor_error,
                             snapshot.connections, failed, now_ms);
  const std::int64_t now = snapshot.collected_at_unix_ms;
  const auto changes = policy::alert_changes(firing_, firing);
  std::vector<AlertNotice> changed;   // transitions, for the exec hook
  std::vector<AlertNotice> resolved;  // for Alertmanager
  for (const auto& a : changes.fired) {
    started_unix_ms_[Key(a.name, a.subject)] = now;
    log_.log(a.severity == policy::Severity::critical ? Priority::err : Priority::warning,
             "alert " + a.name + " firing: " + a.summary,
             {{"MEMTIDE_EVENT", "alert-firing"},
              {"MEMTIDE_ALERT", a.name},
              {"MEMTIDE_SEVERITY", policy::to_string(a.severity)},
              {"MEMTIDE_DOMAIN", a.subject}});
    changed.push_back({a, false, now, 0});
  }
  for (const auto& a : changes.resolved) {
    log_.notice("alert " + a.name + " resolved" + (a.subject.empty() ? "" : " for " + a.subject),
                {{"MEMTIDE_EVENT", "alert-resolved"},
                 {"MEMTIDE_ALERT", a.name},
                 {"MEMTIDE_DOMAIN", a.subject}});
    const auto started = started_unix_ms_.extract(Key(a.name, a.subject));
    AlertNotice n{a, true, started ? started.mapped() : now, now};
    changed.push_back(n);
    resolved.push_back(n);
  }
  firing_ = std::move(firing);
  deliver(changed, resolved, now);
}

void AlertRouter::deliver(const std::vector<AlertNotice>& changed,
                          const std::vector<AlertNotice>& resolved, std::int64_t now) {
  if (exec_hook_) {
    for (const auto& n : changed) {
      exec_hook_->submit(report::dump_json(exec_body(n, hostname_)));
    }
  }
  // Alertmanager: on any change, and again every resend_interval while alerts fire. A firing
  // alert is sent with endsAt three intervals ahead, so if memtided dies Alertmanager resolves
  // it by itself rather than keep it forever.
  if (alertmanager_ &&
      (!changed.empty() || (!firing_.empty() && now - alertmanager_sent_unix_ms_ >= resend_ms_))) {
    std::vector<AlertNotice> batch = resolved;
    for (const auto& a : firing_) {
      batch.push_back({a, false, started_unix_ms_[Key(a.name, a.subject)], now + 3 * resend_ms_});
    }
    alertmanager_->submit(
        report::dump_json(alertmanager_body(batch, target_labels_, runbook_base_)));
    alertmanager_sent_unix_ms_ = now;
  }
}

void AlertRouter::report_delivery_failures(std::uint64_t now_usec) {
  for (const auto& [name, sink] : sinks()) {
    if (sink == nullptr) {
      continue;
    }
    auto& logged = failures_logged_[name];
    const auto f = sink->figures();
    // A sink replaced by a reload starts counting again.
    if (f.failed_attempts < logged.failed_attempts) {
      logged = {};
    }
    constexpr std::uint64_t kEveryUsec = 60'000'000;
    if (f.failed_attempts == logged.failed_attempts ||
        (logged.at_usec != 0 && now_usec - logged.at_usec < kEveryUsec)) {
      continue;
    }
    log_.warning(std::string("alert delivery to ") + name + " failed " +
                     std::to_string(f.failed_attempts - logged.failed_attempts) +
                     " time(s) since the last report (" + std::to_string(f.dropped) +
                     " alert(s) dropped in all): " + sink->last_error(),
                 {{"MEMTIDE_EVENT", "alert-delivery-failed"}, {"MEMTIDE_SINK", name}});
    logged = {f.failed_attempts, now_usec};
  }
}

void AlertRouter::count_deliveries(report::DaemonFigures& figures) const {
  for (const auto& [name, sink] : sinks()) {
    if (sink != nullptr) {
      const auto f = sink->figures();
      figures.alert_deliveries_total[{name, "delivered"}] = f.delivered;
      figures.alert_deliveries_total[{name, "failed"}] = f.failed_attempts;
      figures.alert_deliveries_total[{name, "dropped"}] = f.dropped;
    }
  }
}

}  // namespace memtide::daemon
