// The long-running process: an sd-event loop with a periodic tick, signal handling for
// stop/reload, and the systemd notification protocol (READY, STATUS, RELOADING, STOPPING;
// WATCHDOG pings are sent by sd-event itself when WATCHDOG_USEC is set).
#pragma once

#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <memtide/collectors/virt_facts.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>

#include "alert_delivery.hpp"
#include "collect.hpp"
#include "control_socket.hpp"
#include "http_server.hpp"
#include "huge_page_release.hpp"
#include "log.hpp"
#include "metrics.hpp"
#include "options.hpp"
#include "page_scan_worker.hpp"
#include "trace.hpp"

struct sd_event;
struct sd_event_source;
struct signalfd_siginfo;

namespace memtide::daemon {

class Daemon {
 public:
  // `config` is the configuration already loaded (and validated) by main(); reloads read
  // `options.config_path` again.
  Daemon(Options options, std::shared_ptr<const config::Config> config, Logger& log);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until SIGTERM/SIGINT. Returns the process exit code.
  int run();

 private:
  static int on_signal(sd_event_source* source, const signalfd_siginfo* info, void* self);
  static int on_timer(sd_event_source* source, std::uint64_t usec, void* self);

  void tick();
  void reload();
  // Runs `f`; an exception from it is logged and counted (errors_total{kind="internal"}) rather
  // than allowed through sd-event's C frames.
  template <typename F>
  void guarded(const char* what, F&& f) noexcept;
  // Runs the daemon.on_stop action, then ends the loop.
  void stop();
  void arm_timer(std::uint64_t now_usec);
  void apply(std::shared_ptr<const config::Config> config);
  void notify_status();
  void report_vms(const Snapshot& snapshot);
  // Runs the policy on the last snapshot and carries out its plan (or, in dry-run mode, only
  // logs it).
  void decide_and_act(std::int64_t now_ms);
  // Hands the snapshot's VMs to the page scanner and fills in its figures and estimate.
  void attach_page_scans(Snapshot& snapshot);
  // Writes the plan's KSM settings (unless dry run or paused), logging each file written.
  void act_on_ksm(const policy::Plan& plan);
  // Logs alert transitions and hands them to the configured sinks. `firing` is sorted by
  // (name, subject).
  void report_alerts(const std::vector<policy::Alert>& firing);
  // The plan's alerts plus the daemon's own (libvirt-down, balloon-command-failed).
  std::vector<policy::Alert> all_alerts(const policy::Plan& plan, std::int64_t now_ms,
                                        const std::map<std::string, std::string>& failed);
  // Loads daemon.state_file into policy_state_ (at start), logging what happened.
  void load_state();
  // Saves policy_state_ when it changed materially this tick (`changed`), or a minute after the
  // last save, or when `force`; failures are logged once.
  void save_state(bool changed, bool force);
  // Logs failed alert deliveries with their reason, at most once a minute per sink.
  void report_delivery_failures();
  // (Re)creates the Alertmanager and exec sinks to match the configuration.
  void configure_alert_sinks();
  // Appends the snapshot decide() saw to the trace (daemon.record), logging failures once.
  void record(const Snapshot& decided_on);
  // Starts, moves or stops the /metrics endpoint to match the configuration (a socket passed
  // by systemd takes precedence and is kept for the process's lifetime).
  void serve_metrics();
  // Renders the metrics page from the last tick and hands it to the endpoint.
  void publish_metrics();
  std::shared_ptr<const std::string> render_page();
  // Opens the control socket (daemon.control_socket, --control-socket) on the loop.
  void serve_control();
  // Answers one control request (status, explain, pause, resume, reload).
  nlohmann::json handle_control(const nlohmann::json& request);
  nlohmann::json ksm_status() const;
  nlohmann::json vm_status(const VmSample& vm, const policy::Outcome* outcome) const;
  bool dry_run() const { return options_.dry_run || config_->daemon.dry_run; }
  // Splits the huge pages that this tick's shrunk balloons left partly mapped
  // (host.release_huge_pages), unless memtide only decides (dry run, paused).
  void release_huge_pages(std::int64_t now_ms);
  // Wakes the loop early when /proc/pressure/memory reports a stall (a PSI trigger).
  void watch_pressure();
  static int on_pressure(sd_event_source* source, int fd, std::uint32_t revents, void* self);

  Options options_;
  std::shared_ptr<const config::Config> config_;
  Logger& log_;
  std::unique_ptr<Collector> collector_;
  std::unique_ptr<PageScanWorker> page_scans_;  // null while ksm.scan.enabled is false
  std::unique_ptr<HugePageRelease> huge_pages_;
  std::string last_huge_page_error_;               // to log a failing release once
  std::string last_ksm_error_;                     // to log a failing KSM write once
  std::optional<KsmSettings> ksm_not_applied_;     // last settings logged as not applied
  std::unique_ptr<TraceWriter> trace_;             // null while daemon.record.path is empty
  std::unique_ptr<MetricsServer> metrics_server_;  // null while metrics are off
  std::string metrics_listen_;                     // address served ("" while off)
  bool metrics_socket_activated_ = false;
  DaemonFigures figures_;
  std::unique_ptr<ControlServer> control_;
  std::string control_path_;  // path served ("" while off)
  // The last balloon commands (newest last), for `memtidectl status`.
  struct Command {
    std::int64_t unix_ms = 0;
    policy::BalloonChange change;
    std::string outcome;  // "applied", "failed: ...", "dry run", "paused"
  };
  std::deque<Command> recent_commands_;
  static constexpr std::size_t kRecentCommands = 50;
  std::optional<collectors::VirtFacts> facts_;  // read at start and on reload
  std::string last_trace_error_;                // to log a failing trace once, not every tick
  std::string state_path_;                      // daemon.state_file resolved; "" off
  std::uint64_t state_saved_usec_ = 0;          // CLOCK_MONOTONIC of the last save
  std::string last_state_error_;                // to log a failing save once

  sd_event* event_ = nullptr;
  sd_event_source* timer_ = nullptr;

  std::uint64_t ticks_ = 0;
  policy::PolicyState policy_state_;
  std::optional<policy::Plan> last_plan_;
  std::vector<policy::Alert> firing_alerts_;  // everything firing, sorted by (name, subject)
  std::map<std::pair<std::string, std::string>, std::int64_t> alert_started_unix_ms_;
  std::unique_ptr<AlertmanagerSink> alertmanager_;
  std::unique_ptr<ExecSink> exec_hook_;
  std::int64_t alertmanager_sent_unix_ms_ = 0;
  struct DeliveryFailuresLogged {
    std::uint64_t failed_attempts = 0;  // the sink's count when last logged
    std::uint64_t at_usec = 0;          // CLOCK_MONOTONIC of that line; 0 before the first
  };
  std::map<std::string, DeliveryFailuresLogged> delivery_failures_logged_;  // by sink name
  std::string hostname_;
  std::int64_t libvirt_down_since_ms_ = -1;  // monotonic ms; -1 while up
  // VMs whose last balloon command failed -> (message, consecutive ticks without a failure).
  std::map<std::string, std::pair<std::string, int>> failing_vms_;
  int psi_fd_ = -1;
  sd_event_source* psi_source_ = nullptr;
  std::uint64_t pressure_event_usec_ = 0;  // CLOCK_MONOTONIC of an unanswered pressure event
  std::uint64_t last_tick_usec_ = 0;
  // When this tick's time is up (tick_budget from its start): balloon commands not sent by
  // then are carried over to the next tick.
  std::chrono::steady_clock::time_point tick_deadline_{};
  std::uint64_t watchdog_usec_ = 0;  // WATCHDOG_USEC from systemd, read once at start; 0: none
  std::optional<double> last_reaction_ms_;  // pressure event -> first balloon command
  std::optional<Snapshot> last_snapshot_;   // last successful collection
  std::string last_collect_error_;          // to log a failure once, not every tick
  std::string last_reload_error_;           // shown in STATUS= until the next good reload
  std::string last_hypervisor_error_;       // to log libvirt going down and up once each
  std::map<std::string, std::string> reported_metadata_errors_;  // uuid -> errors logged
  std::map<std::string, std::string> reported_process_claims_;   // uuid -> reason logged
};

}  // namespace memtide::daemon
