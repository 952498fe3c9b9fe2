// The long-running process: an sd-event loop whose tick is collect -> decide -> act -> report,
// signal handling for stop and reload, and the systemd notification protocol (READY, STATUS,
// RELOADING, STOPPING; WATCHDOG pings are sent by sd-event itself when WATCHDOG_USEC is set).
//
// The Daemon coordinates; each step is done by a part of its own: collectors::Collector and
// PageScanWorker (collect), policy::decide (decide), Actions (act), AlertRouter, MetricsEndpoint
// and the control socket (report, all from one report::TickReport), StateStore (the policy's
// memory across restarts).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include <memtide/collectors/collect.hpp>
#include <memtide/collectors/connection_set.hpp>
#include <memtide/collectors/page_scan_worker.hpp>
#include <memtide/collectors/virt_facts.hpp>
#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/policy/engine.hpp>
#include <memtide/report/history.hpp>
#include <memtide/report/tick_report.hpp>

#include "act.hpp"
#include "alerts/router.hpp"
#include "collection_log.hpp"
#include "control_socket.hpp"
#include "hypervisor_claim.hpp"
#include "log.hpp"
#include "metrics_endpoint.hpp"
#include "options.hpp"
#include "pressure_trigger.hpp"
#include "recorder.hpp"
#include "state_store.hpp"
#include "tick_loop.hpp"

namespace memtide::daemon {

class Daemon {
 public:
  // How the Daemon reaches the hypervisor for a configuration: libvirt in the product, an
  // in-memory fake in tests. Called again when a reload changes the libvirt section.
  using HypervisorFactory =
      std::function<std::unique_ptr<collectors::HypervisorWorker>(const config::Config&)>;

  // `config` is the configuration already loaded (and validated) by main(), with the command
  // line's overrides applied; reloads read `options.config_path` again and apply them again.
  Daemon(
      Options options, std::shared_ptr<const config::Config> config, Logger& log,
      HypervisorFactory make_hypervisor = [](const config::Config& c) {
        return collectors::make_libvirt_worker(c, /*daemon=*/true);
      });
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until SIGTERM/SIGINT. Returns the process exit code.
  int run();

  // One tick: collect, decide, act, report. run() calls it from the loop's timer and the PSI
  // trigger; tests call it directly.
  void tick();
  // Answers one control request (status, explain, history, pause, resume, reload).
  nlohmann::json handle_control(const nlohmann::json& request);
  // What the last tick knows, for every output (metrics, status, explain).
  report::TickReport tick_report();

 private:
  void on_pressure(std::uint64_t now_usec);
  // Runs `f`; an exception from it is logged and counted (errors_total{kind="internal"}) rather
  // than allowed through sd-event's C frames.
  template <typename F>
  void guarded(const char* what, F&& f) noexcept;
  void reload();
  // Runs the daemon.on_stop action and saves the policy state.
  void stop();
  void apply(std::shared_ptr<const config::Config> config);
  // Decides on `snapshot` and carries the plan out, sending balloon commands until `deadline`.
  void decide_and_act(const Snapshot& snapshot, std::chrono::steady_clock::time_point deadline);
  void log_reaction(std::uint64_t applied_usec);
  // The control request "history": the entries of the VMs in "vms" (globs; all when absent) since
  // "since_unix_ms" (all when absent).
  nlohmann::json history_reply(const nlohmann::json& request) const;
  // Opens, moves or closes the control socket to match the configuration.
  void serve_control();
  // Renders the metrics page from what the daemon knows now and serves it (see MetricsEndpoint).
  void publish_metrics();
  void notify_status();
  // In a dry run, says once (at start and after each reload) that memtide only decides and how
  // to let it act.
  void announce_dry_run();

  Options options_;
  std::shared_ptr<const config::Config> config_;
  Logger& log_;
  HypervisorFactory make_hypervisor_;
  // First of the parts: it blocks the handled signals before any of the others starts a thread.
  TickLoop loop_;
  PressureTrigger pressure_;
  // CLOCK_MONOTONIC µs of the first pressure event no tick has answered yet.
  std::optional<std::uint64_t> unanswered_pressure_usec_;

  // What the daemon knows, as of its last tick; tick_report() borrows from it.
  struct Known {
    std::optional<Snapshot> snapshot;  // last successful collection
    std::optional<policy::Plan> plan;  // last decision
    policy::PolicyState policy;
    report::DaemonFigures figures;
    std::optional<collectors::VirtFacts> facts;  // read at start and on reload
  } known_;

  // collect
  std::unique_ptr<collectors::Collector> collector_;
  std::unique_ptr<collectors::PageScanWorker> page_scans_;  // null while ksm.scan is off
  std::unique_ptr<HypervisorClaim> claim_;                  // of managed_uris()
  CollectionLog collection_log_;
  // act
  Actions actions_;
  StateStore state_;
  report::History history_;  // what the daemon did, for `memtidectl history`
  Recorder recorder_;
  // report
  AlertRouter alerts_;
  MetricsEndpoint metrics_;
  sd_event_source* render_source_ = nullptr;  // metrics_.render_requests() in loop_
  struct Control {
    std::unique_ptr<ControlServer> server;
    std::string path;  // served ("" while off)
  } control_;
};

}  // namespace memtide::daemon
