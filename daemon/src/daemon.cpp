#include "daemon.hpp"

#include <algorithm>
#include <cstring>
#include <tuple>

#include <fcntl.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/vfs.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include <memtide/config/loader.hpp>
#include <memtide/config/units.hpp>
#include <memtide/policy/classes.hpp>

#include "balloon_commands.hpp"
#include "json_text.hpp"
#include "restore.hpp"
#include "snapshot_json.hpp"
#include "state_file.hpp"

namespace memtide::daemon {

namespace {

std::string errno_text(int negative_errno) {
  return std::strerror(-negative_errno);
}

std::uint64_t to_usec(std::chrono::milliseconds d) {
  return static_cast<std::uint64_t>(d.count()) * 1000;
}

}  // namespace

namespace {

// The signals the loop handles. sd-event receives them through a signalfd, which only sees
// blocked signals, and they must be blocked before any thread starts (the libvirt event loop,
// the hypervisor worker) or the kernel may deliver them to a thread that kills the process.
sigset_t handled_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  return mask;
}

}  // namespace

Daemon::Daemon(Options options, std::shared_ptr<const config::Config> config, Logger& log)
    : options_(std::move(options)), log_(log) {
  const sigset_t mask = handled_signals();
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  figures_.started_unix_s = static_cast<std::int64_t>(time(nullptr));
  apply(std::move(config));
}

Daemon::~Daemon() {
  sd_event_source_unref(psi_source_);
  if (psi_fd_ >= 0) {
    close(psi_fd_);
  }
  sd_event_source_unref(timer_);
  sd_event_unref(event_);
}

void Daemon::apply(std::shared_ptr<const config::Config> config) {
  const bool libvirt_changed = !config_ || config_->libvirt != config->libvirt;
  config_ = std::move(config);
  log_.set_level(config_->daemon.log_level);
  collectors::HostRoots roots{options_.procfs.value_or(config_->daemon.procfs),
                              options_.sysfs.value_or(config_->daemon.sysfs)};
  const std::string procfs = roots.procfs;
  if (!collector_ || libvirt_changed) {
    // A new libvirt section means a new connection: URI, keepalive and backoff are set at
    // connect time.
    collector_ = std::make_unique<Collector>(
        roots, make_libvirt_worker(*config_, options_.connect, roots.procfs),
        config_->libvirt.timeout);
  } else {
    collector_->set_roots(std::move(roots));
  }
  if (auto facts = collectors::read_virt_facts(options_.sysfs.value_or(config_->daemon.sysfs))) {
    facts_ = *facts;
  } else {
    facts_.reset();
    log_.warning("cannot read virtualization facts: " + facts.error().to_string(),
                 {{"MEMTIDE_EVENT", "facts-unavailable"}});
  }
  if (!huge_pages_ || huge_pages_->procfs() != procfs) {
    huge_pages_ =
        std::make_unique<HugePageRelease>(procfs, options_.sysfs.value_or(config_->daemon.sysfs));
  }
  if (!config_->ksm.scan.enabled) {
    page_scans_.reset();
  } else if (!page_scans_) {
    page_scans_ = std::make_unique<PageScanWorker>(procfs, config_->ksm.scan);
  }
  serve_metrics();
  configure_alert_sinks();
  state_path_ = resolve_state_path(config_->daemon.state_file);
  const auto& record = config_->daemon.record;
  if (record.path.empty()) {
    trace_.reset();
  } else if (!trace_ || trace_->settings() != record) {
    trace_ = std::make_unique<TraceWriter>(record);
    last_trace_error_.clear();
  }
}

void Daemon::serve_metrics() {
  if (metrics_socket_activated_) {
    return;
  }
  if (!metrics_server_ && metrics_listen_.empty() && sd_listen_fds(1) >= 1 &&
      sd_is_socket_inet(SD_LISTEN_FDS_START, 0, SOCK_STREAM, 1, 0) > 0) {
    auto server = MetricsServer::start(SD_LISTEN_FDS_START, render_page());
    if (server) {
      metrics_server_ = std::move(*server);
      metrics_socket_activated_ = true;
      log_.notice("serving metrics on " + metrics_server_->description() + " (socket from systemd)",
                  {{"MEMTIDE_EVENT", "metrics-listening"}});
      return;
    }
    log_.error("cannot serve metrics on the socket from systemd: " + server.error().to_string(),
               {{"MEMTIDE_EVENT", "metrics-unavailable"}});
  }
  const std::string want = options_.metrics_listen.value_or(config_->metrics.listen);
  if (want == metrics_listen_ && (metrics_server_ || want.empty())) {
    return;
  }
  metrics_server_.reset();  // frees the old address before binding the new one
  metrics_listen_.clear();
  if (want.empty()) {
    return;
  }
  auto fd = listen_on(want);
  auto server = fd ? MetricsServer::start(*fd, render_page())
                   : Result<std::unique_ptr<MetricsServer>>(fd.error());
  if (!server) {
    // Balloons and alerts matter more than metrics: carry on without them, loudly.
    log_.error("cannot serve metrics on " + want + ": " + server.error().to_string(),
               {{"MEMTIDE_EVENT", "metrics-unavailable"}});
    return;
  }
  metrics_server_ = std::move(*server);
  metrics_listen_ = want;
  log_.notice("serving metrics on " + metrics_server_->description(),
              {{"MEMTIDE_EVENT", "metrics-listening"}});
}

void Daemon::publish_metrics() {
  if (metrics_server_) {
    metrics_server_->publish(render_page());
  }
}

std::shared_ptr<const std::string> Daemon::render_page() {
  figures_.dry_run = dry_run();
  const std::pair<const char*, const DeliveryQueue*> sinks[] = {
      {"alertmanager", alertmanager_.get()}, {"exec", exec_hook_.get()}};
  for (const auto& [name, sink] : sinks) {
    if (sink != nullptr) {
      const auto f = sink->figures();
      figures_.alert_deliveries_total[{name, "delivered"}] = f.delivered;
      figures_.alert_deliveries_total[{name, "failed"}] = f.failed_attempts;
      figures_.alert_deliveries_total[{name, "dropped"}] = f.dropped;
    }
  }
  MetricsInput in;
  in.alerts = &firing_alerts_;
  in.snapshot = last_snapshot_ ? &*last_snapshot_ : nullptr;
  in.plan = last_plan_ ? &*last_plan_ : nullptr;
  in.state = &policy_state_;
  in.facts = facts_ ? &*facts_ : nullptr;
  in.config = config_.get();
  in.daemon = &figures_;
  return std::make_shared<const std::string>(render_metrics(in));
}

void Daemon::serve_control() {
  const std::string want = options_.control_socket.value_or(config_->daemon.control_socket);
  if (want == control_path_ && (control_ || want.empty())) {
    return;
  }
  control_.reset();
  control_path_.clear();
  if (want.empty()) {
    return;
  }
  auto server = ControlServer::start(
      event_, want, [this](const nlohmann::json& request) { return handle_control(request); });
  if (!server) {
    log_.error("cannot open the control socket: " + server.error().to_string(),
               {{"MEMTIDE_EVENT", "control-unavailable"}});
    return;
  }
  control_ = std::move(*server);
  control_path_ = want;
}

nlohmann::json Daemon::vm_status(const VmSample& vm, const policy::Outcome* outcome) const {
  const auto settings = policy::effective_balloon(vm, *config_);
  nlohmann::json j = {
      {"name", vm.name},
      {"uuid", vm.uuid},
      {"state", to_string(vm.state)},
      {"class", settings.class_name},
      {"managed", settings.managed},
      {"balloon_bytes", vm.current_bytes},
      {"max_bytes", vm.max_bytes},
      {"floor_bytes", settings.floor_bytes},
      {"usable_bytes",
       vm.guest.usable_bytes ? nlohmann::json(*vm.guest.usable_bytes) : nlohmann::json()},
      {"stats_status", to_string(vm.stats_status)},
      {"process_unavailable", vm.process_unavailable.value_or("")},
      {"target_bytes", nullptr},
      {"explanation", outcome != nullptr && last_plan_ ? last_plan_->explain(*outcome) : ""},
  };
  j["page_scan"] = nullptr;
  if (vm.page_scan) {
    const auto& p = *vm.page_scan;
    auto ratio = [&p](std::uint64_t bytes) {
      const auto share = p.share_of_resident(bytes);
      return share ? nlohmann::json(*share) : nlohmann::json();
    };
    j["page_scan"] = {
        {"status", p.status},
        {"error", p.error},
        {"resident_bytes", p.resident_bytes},
        {"zero_ratio", ratio(p.zero_bytes)},
        {"duplicate_ratio", ratio(p.duplicate_bytes)},
        {"volatile_ratio", p.volatile_ratio ? nlohmann::json(*p.volatile_ratio) : nlohmann::json()},
    };
  }
  if (const auto it = policy_state_.vms.find(vm.uuid);
      it != policy_state_.vms.end() && it->second.last_target_bytes) {
    j["target_bytes"] = *it->second.last_target_bytes;
  }
  return j;
}

nlohmann::json Daemon::ksm_status() const {
  const Snapshot& s = *last_snapshot_;
  if (!s.ksm) {
    return {{"available", false}, {"mode", config::to_string(config_->ksm.mode)}};
  }
  const KsmSample& k = *s.ksm;
  nlohmann::json j = {
      {"available", true},
      {"mode", config::to_string(config_->ksm.mode)},
      {"run", k.run},
      {"pages_to_scan", k.pages_to_scan},
      {"sleep_ms", k.sleep_ms},
      {"full_scans", k.full_scans_total},
      {"actual_savings_bytes", k.savings_bytes()},
      {"decision", last_plan_ && last_plan_->ksm ? last_plan_->ksm->reason : ""},
      {"ksmd_cpu_ratio", nullptr},
      {"estimate", nullptr},
  };
  if (last_plan_ && last_plan_->ksm && last_plan_->ksm->ksmd_cpu_ratio) {
    j["ksmd_cpu_ratio"] = *last_plan_->ksm->ksmd_cpu_ratio;
  }
  if (s.ksm_estimate) {
    const auto& e = *s.ksm_estimate;
    j["estimate"] = {{"vms", e.vms},
                     {"candidate_bytes", e.candidate_bytes},
                     {"resident_bytes", e.resident_bytes},
                     {"zero_bytes", e.zero_bytes},
                     {"savings_bytes", e.savings_bytes},
                     {"read_bytes_total", e.read_bytes_total},
                     {"cpu_seconds_total", e.cpu_seconds_total}};
  }
  return j;
}

nlohmann::json Daemon::handle_control(const nlohmann::json& request) {
  const std::string command = request["command"].get<std::string>();
  if (command == "status" || command == "explain") {
    if (!last_snapshot_) {
      return {{"ok", false}, {"error", "no collection yet"}};
    }
    const Snapshot& s = *last_snapshot_;
    // Outcomes are in the snapshot's VM order when the plan covered the VMs.
    const bool outcomes_match = last_plan_ && last_plan_->outcomes.size() == s.vms.size();
    if (command == "explain") {
      if (!request.contains("vm") || !request["vm"].is_string()) {
        return {{"ok", false}, {"error", "explain needs \"vm\": a VM name or UUID"}};
      }
      const std::string wanted = request["vm"].get<std::string>();
      for (std::size_t i = 0; i < s.vms.size(); ++i) {
        if (s.vms[i].name == wanted || s.vms[i].uuid == wanted) {
          return {{"ok", true},
                  {"vm", vm_status(s.vms[i], outcomes_match ? &last_plan_->outcomes[i] : nullptr)},
                  {"host", last_plan_ ? last_plan_->host_summary : ""}};
        }
      }
      return {{"ok", false}, {"error", "no running VM named '" + wanted + "'"}};
    }
    nlohmann::json vms = nlohmann::json::array();
    for (std::size_t i = 0; i < s.vms.size(); ++i) {
      vms.push_back(vm_status(s.vms[i], outcomes_match ? &last_plan_->outcomes[i] : nullptr));
    }
    nlohmann::json alerts = nlohmann::json::array();
    nlohmann::json forecast = nullptr;
    if (last_plan_) {
      for (const auto& a : last_plan_->alerts) {
        alerts.push_back({{"name", a.name},
                          {"subject", a.subject},
                          {"severity", policy::to_string(a.severity)},
                          {"summary", a.summary}});
      }
      if (last_plan_->forecast.seconds_to_swap) {
        forecast = *last_plan_->forecast.seconds_to_swap;
      }
    }
    nlohmann::json recent = nlohmann::json::array();
    for (const auto& c : recent_commands_) {
      recent.push_back({{"at", format_utc(c.unix_ms)},
                        {"vm", c.change.vm},
                        {"from_bytes", c.change.from_bytes},
                        {"to_bytes", c.change.to_bytes},
                        {"cause", policy::to_string(c.change.cause)},
                        {"reason", c.change.reason},
                        {"outcome", c.outcome}});
    }
    return {{"ok", true},
            {"daemon",
             {{"version", MEMTIDE_VERSION},
              {"ticks", ticks_},
              {"paused", figures_.paused},
              {"dry_run", dry_run()},
              {"config", config_->source},
              {"last_reload_error", last_reload_error_},
              {"metrics", metrics_server_ ? metrics_server_->description() : ""}}},
            {"host",
             {{"collected_at", format_utc(s.collected_at_unix_ms)},
              {"total_bytes", s.host.meminfo.total_bytes},
              {"available_bytes", s.host.meminfo.available_bytes},
              {"reserve_bytes", config_->host.reserve_bytes},
              {"pressure", last_plan_ && last_plan_->host_pressure},
              {"level", last_plan_ ? policy::to_string(last_plan_->host_level) : "ok"},
              {"paying_back_swap", last_plan_ && last_plan_->host_paying_back},
              {"summary", last_plan_ ? last_plan_->host_summary : ""},
              {"seconds_to_swap", forecast},
              {"libvirt_up", s.hypervisor_up},
              {"libvirt_error", s.hypervisor_error}}},
            {"ksm", ksm_status()},
            {"alerts", alerts},
            {"vms", vms},
            {"recent_commands", recent}};
  }
  if (command == "pause" || command == "resume") {
    const bool pause = command == "pause";
    if (figures_.paused != pause) {
      figures_.paused = pause;
      log_.notice(pause ? "balloon actions paused (memtidectl pause); decisions are still made "
                          "and logged"
                        : "balloon actions resumed (memtidectl resume)",
                  {{"MEMTIDE_EVENT", pause ? "paused" : "resumed"}});
      notify_status();
      publish_metrics();
    }
    return {{"ok", true}, {"paused", figures_.paused}};
  }
  if (command == "reload") {
    reload();
    if (!last_reload_error_.empty()) {
      return {{"ok", false},
              {"error", "reload rejected, previous configuration kept: " + last_reload_error_}};
    }
    return {{"ok", true}, {"config", config_->source}};
  }
  return {{"ok", false},
          {"error",
           "unknown command '" + command + "'; commands: status, explain, pause, resume, reload"}};
}

void Daemon::record(const Snapshot& decided_on) {
  if (!trace_) {
    return;
  }
  if (auto s = trace_->append(decided_on); !s) {
    ++figures_.errors_total["record"];
    const auto message = s.error().to_string();
    if (message != last_trace_error_) {
      log_.warning("cannot record the snapshot: " + message, {{"MEMTIDE_EVENT", "record-failed"}});
      last_trace_error_ = message;
    }
  } else if (!last_trace_error_.empty()) {
    log_.notice("recording works again; torn lines closed off so far: " +
                    std::to_string(trace_->torn_lines()),
                {{"MEMTIDE_EVENT", "record-recovered"}});
    last_trace_error_.clear();
  }
}

int Daemon::run() {
  int r = sd_event_new(&event_);
  if (r < 0) {
    log_.error("cannot create the event loop: " + errno_text(r));
    return kExitFailure;
  }
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    r = sd_event_add_signal(event_, nullptr, sig, &Daemon::on_signal, this);
    if (r < 0) {
      log_.error("cannot watch signal " + std::to_string(sig) + ": " + errno_text(r));
      return kExitFailure;
    }
  }
  // Pings the service manager at a safe fraction of WATCHDOG_USEC for as long as the loop keeps
  // turning; a hung tick therefore stops the pings and lets systemd restart us.
  if (sd_watchdog_enabled(0, &watchdog_usec_) <= 0) {
    watchdog_usec_ = 0;
  }
  r = sd_event_set_watchdog(event_, 1);
  if (r < 0) {
    log_.warning("cannot enable the systemd watchdog: " + errno_text(r));
  }

  std::uint64_t now = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now);
  // Accuracy 1 ms: sd-event's default (0 = 250 ms) lets it coalesce wake-ups that late, which
  // turned daemon.interval 100ms into 4 ticks a second.
  constexpr std::uint64_t kTimerAccuracyUsec = 1000;
  r = sd_event_add_time(event_, &timer_, CLOCK_MONOTONIC, now, kTimerAccuracyUsec,
                        &Daemon::on_timer, this);
  if (r < 0) {
    log_.error("cannot create the tick timer: " + errno_text(r));
    return kExitFailure;
  }

  watch_pressure();
  serve_control();
  load_state();

  log_.notice(
      "memtided " MEMTIDE_VERSION " started",
      {{"MEMTIDE_EVENT", "started"},
       {"MEMTIDE_CONFIG", config_->source.empty() ? "(built-in defaults)" : config_->source},
       {"MEMTIDE_INTERVAL", config::format_duration(config_->daemon.interval)}});
  sd_notify(0, "READY=1\nSTATUS=started, waiting for the first tick");

  r = sd_event_loop(event_);
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  if (r < 0) {
    log_.error("event loop failed: " + errno_text(r));
    return kExitFailure;
  }
  log_.notice("memtided stopped", {{"MEMTIDE_EVENT", "stopped"}});
  return r;  // the code passed to sd_event_exit
}

int Daemon::on_signal(sd_event_source*, const signalfd_siginfo* info, void* self) {
  auto* d = static_cast<Daemon*>(self);
  if (info->ssi_signo == SIGHUP) {
    d->guarded("reload", [d] { d->reload(); });
    return 0;
  }
  d->log_.notice(
      std::string("received ") + strsignal(static_cast<int>(info->ssi_signo)) + ", stopping",
      {{"MEMTIDE_EVENT", "stop-requested"}});
  d->guarded("stop", [d] { d->stop(); });
  sd_event_exit(d->event_, kExitOk);  // also when the restore on the way out failed
  return 0;
}

void Daemon::stop() {
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  auto* hypervisor = collector_->hypervisor();
  if (config_->daemon.on_stop == config::OnStop::restore && hypervisor != nullptr) {
    // Fresh figures (the last tick's may predate a VM's start or stop), after any call still in
    // flight, each VM with its own timeout and retries, all within kRestoreBudget.
    const auto run = restore_within(*hypervisor, *config_, false, config_->libvirt.timeout,
                                    std::chrono::steady_clock::now() + kRestoreBudget,
                                    [](const std::string& what) {
                                      // A stop that takes long must not look hung to the watchdog.
                                      sd_notify(0, ("WATCHDOG=1\nSTATUS=" + what).c_str());
                                    });
    if (run.collect_error) {
      log_.error("cannot restore balloons on stop: " + run.collect_error->to_string() +
                     "; every guest stays at its current size (run memtidectl restore)",
                 {{"MEMTIDE_EVENT", "restore-failed"}});
    }
    for (const auto& o : run.outcomes) {
      if (o.kind == RestoreOutcome::Kind::restored) {
        // The restore was a command to the maximum: the policy's memory says so, or after a
        // restart it would take the old, smaller target for one still in flight.
        if (last_snapshot_) {
          auto& memory = policy_state_.vms[o.uuid];
          memory.last_change_ms = last_snapshot_->monotonic_ms;
          memory.last_direction = 1;
          memory.last_target_bytes = o.to_bytes;
        }
        log_.notice(
            "restored on stop: " + describe(o),
            {{"MEMTIDE_EVENT", "restore"}, {"MEMTIDE_VM", o.vm}, {"MEMTIDE_VM_UUID", o.uuid}});
      } else if (o.kind == RestoreOutcome::Kind::failed) {
        log_.error("restore on stop failed: " + describe(o), {{"MEMTIDE_EVENT", "restore-failed"},
                                                              {"MEMTIDE_VM", o.vm},
                                                              {"MEMTIDE_VM_UUID", o.uuid}});
      } else {
        log_.debug("on stop: " + describe(o), {{"MEMTIDE_EVENT", "restore"}});
      }
    }
  }
  save_state(true, true);
  sd_event_exit(event_, kExitOk);
}

template <typename F>
void Daemon::guarded(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    // Library layers return errors as values, so this is a bug or memory exhaustion. The daemon
    // keeps its last good state and goes on: guests are better served by the next tick than by
    // an exit that leaves every balloon where it is.
    ++figures_.errors_total["internal"];
    log_.error(std::string(what) + " failed, carrying on with the last good state: " + e.what(),
               {{"MEMTIDE_EVENT", "internal-error"}});
  }
}

int Daemon::on_timer(sd_event_source*, std::uint64_t usec, void* self) {
  auto* d = static_cast<Daemon*>(self);
  d->guarded("tick", [d] { d->tick(); });
  d->arm_timer(usec);
  return 0;
}

void Daemon::arm_timer(std::uint64_t previous_usec) {
  // Ticks keep a fixed cadence from the previous deadline, not from when the tick finished; if
  // a tick overran a whole interval, the next starts now instead of trying to catch up.
  std::uint64_t now = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now);
  std::uint64_t next = previous_usec + to_usec(config_->daemon.interval);
  if (next < now) {
    next = now;
  }
  sd_event_source_set_time(timer_, next);
  sd_event_source_set_enabled(timer_, SD_EVENT_ONESHOT);
}

void Daemon::tick() {
  ++ticks_;
  sd_event_now(event_, CLOCK_MONOTONIC, &last_tick_usec_);
  tick_deadline_ = std::chrono::steady_clock::now() +
                   tick_budget(config_->daemon.interval, std::chrono::microseconds(watchdog_usec_));
  timespec started{};
  clock_gettime(CLOCK_MONOTONIC, &started);
  auto snapshot = collector_->collect();
  if (!snapshot) {
    ++figures_.errors_total["collect"];
    const auto message = snapshot.error().to_string();
    if (message != last_collect_error_) {
      log_.error("collection failed; keeping the last good snapshot: " + message,
                 {{"MEMTIDE_EVENT", "collect-failed"}});
      last_collect_error_ = message;
    }
  } else {
    if (!last_collect_error_.empty()) {
      log_.notice("collection works again", {{"MEMTIDE_EVENT", "collect-recovered"}});
      last_collect_error_.clear();
    }
    attach_page_scans(*snapshot);
    report_vms(*snapshot);
    last_snapshot_ = std::move(*snapshot);
    decide_and_act(last_snapshot_->monotonic_ms);
    // This tick answered any pending pressure event, with a balloon command (whose reaction time
    // decide_and_act logged) or with the decision that none was needed.
    pressure_event_usec_ = 0;
    if (log_.enabled(Priority::debug)) {
      const auto& m = last_snapshot_->host.meminfo;
      log_.debug("tick " + std::to_string(ticks_) + ": MemAvailable " +
                     config::format_size(m.available_bytes) + " of " +
                     config::format_size(m.total_bytes) + ", " +
                     std::to_string(last_snapshot_->vms.size()) + " VMs",
                 {{"MEMTIDE_EVENT", "tick"}});
    }
  }
  timespec ended{};
  clock_gettime(CLOCK_MONOTONIC, &ended);
  figures_.last_tick_seconds = static_cast<double>(ended.tv_sec - started.tv_sec) +
                               static_cast<double>(ended.tv_nsec - started.tv_nsec) / 1e9;
  figures_.tick_seconds_total += figures_.last_tick_seconds;
  figures_.ticks_total = ticks_;
  report_delivery_failures();
  publish_metrics();
  notify_status();
}

void Daemon::report_delivery_failures() {
  std::uint64_t now_usec = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now_usec);
  const std::pair<const char*, const DeliveryQueue*> sinks[] = {
      {"alertmanager", alertmanager_.get()}, {"exec", exec_hook_.get()}};
  for (const auto& [name, sink] : sinks) {
    if (sink == nullptr) {
      continue;
    }
    auto& logged = delivery_failures_logged_[name];
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

void Daemon::report_vms(const Snapshot& snapshot) {
  // libvirt going away and coming back is logged on the transition, not every tick.
  if (!snapshot.hypervisor_up && snapshot.hypervisor_error != last_hypervisor_error_) {
    if (last_hypervisor_error_.empty()) {
      log_.error("libvirt unavailable: " + snapshot.hypervisor_error,
                 {{"MEMTIDE_EVENT", "libvirt-down"}});
    } else {
      log_.debug("libvirt still unavailable: " + snapshot.hypervisor_error,
                 {{"MEMTIDE_EVENT", "libvirt-down"}});
    }
    last_hypervisor_error_ = snapshot.hypervisor_error;
  } else if (snapshot.hypervisor_up && !last_hypervisor_error_.empty()) {
    log_.notice("libvirt connection established", {{"MEMTIDE_EVENT", "libvirt-up"}});
    last_hypervisor_error_.clear();
  }
  // A process claiming a VM that is not proven to be its QEMU: once per VM and reason.
  std::map<std::string, std::string> claims;
  for (const auto& vm : snapshot.vms) {
    if (!vm.process_unavailable) {
      continue;
    }
    if (reported_process_claims_[vm.uuid] != *vm.process_unavailable) {
      log_.warning("domain '" + vm.name + "': host figures unavailable: " + *vm.process_unavailable,
                   {{"MEMTIDE_EVENT", "vm-process-untrusted"},
                    {"MEMTIDE_VM", vm.name},
                    {"MEMTIDE_VM_UUID", vm.uuid}});
    }
    claims[vm.uuid] = *vm.process_unavailable;
  }
  if (snapshot.hypervisor_up) {
    reported_process_claims_ = std::move(claims);
  }
  // Invalid per-VM metadata is logged once per domain and content, naming the domain.
  std::map<std::string, std::string> seen;
  for (const auto& vm : snapshot.vms) {
    if (vm.metadata_errors.empty()) {
      continue;
    }
    std::string all;
    for (const auto& e : vm.metadata_errors) {
      all += (all.empty() ? "" : "; ") + e;
    }
    if (reported_metadata_errors_[vm.uuid] != all) {
      log_.warning("domain '" + vm.name + "': invalid memtide metadata ignored: " + all,
                   {{"MEMTIDE_EVENT", "vm-metadata-invalid"},
                    {"MEMTIDE_VM", vm.name},
                    {"MEMTIDE_VM_UUID", vm.uuid}});
    }
    seen[vm.uuid] = all;
  }
  if (snapshot.hypervisor_up) {
    reported_metadata_errors_ = std::move(seen);
  }
}

void Daemon::notify_status() {
  std::string status = "tick " + std::to_string(ticks_) + " every " +
                       config::format_duration(config_->daemon.interval);
  if (last_snapshot_) {
    const auto& m = last_snapshot_->host.meminfo;
    status += "; host MemAvailable " + config::format_size(m.available_bytes) + " of " +
              config::format_size(m.total_bytes);
    status += last_snapshot_->hypervisor_up
                  ? "; " + std::to_string(last_snapshot_->vms.size()) + " VMs"
                  : "; libvirt unavailable";
  }
  if (last_plan_) {
    status += "; " + last_plan_->host_summary;
    if (last_plan_->forecast.seconds_to_swap && !last_plan_->host_heading) {
      status += "; swap in " +
                std::to_string(static_cast<long long>(*last_plan_->forecast.seconds_to_swap)) +
                " s at this trend";
    }
    if (!firing_alerts_.empty()) {
      status += "; " + std::to_string(firing_alerts_.size()) + " alert(s) firing";
    }
  }
  if (dry_run()) {
    status += "; DRY RUN";
  }
  if (figures_.paused) {
    status += "; actions PAUSED";
  }
  if (!last_collect_error_.empty()) {
    status += "; collection failing: " + last_collect_error_;
  }
  if (!last_reload_error_.empty()) {
    status += "; last reload failed, running previous config";
  }
  sd_notify(0, ("STATUS=" + status).c_str());
}

void Daemon::reload() {
  // RELOADING=1 must carry MONOTONIC_USEC so the manager can order it against READY=1.
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  const auto usec = static_cast<unsigned long long>(ts.tv_sec) * 1'000'000ULL +
                    static_cast<unsigned long long>(ts.tv_nsec) / 1000ULL;
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s", usec,
             options_.config_path.c_str());

  auto loaded = config::load_config_file(options_.config_path);
  if (loaded.ok() && loaded.empty_document) {
    // At start an empty file means the defaults; on a reload it is almost always a file caught
    // mid-write by an editor or configuration manager, and switching a running daemon to the
    // defaults (another socket, URI, KSM mode) is never what was meant.
    loaded.config.reset();
    loaded.errors.push_back({options_.config_path, 0, 0, "",
                             "the file holds no settings (caught mid-write?); an empty "
                             "configuration is accepted only at start"});
  }
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) {
      log_.error(e.to_string(), {{"MEMTIDE_EVENT", "config-error"},
                                 {"MEMTIDE_CONFIG", e.file},
                                 {"MEMTIDE_CONFIG_LINE", std::to_string(e.line)}});
    }
    last_reload_error_ = loaded.errors.empty() ? "unknown" : loaded.errors.front().to_string();
    ++figures_.errors_total["reload"];
    figures_.last_reload_ok = false;
    log_.warning(
        "configuration reload failed with " + std::to_string(loaded.errors.size()) +
            " error(s); keeping the running configuration",
        {{"MEMTIDE_EVENT", "config-reload-failed"}, {"MEMTIDE_CONFIG", options_.config_path}});
  } else {
    const auto old_interval = config_->daemon.interval;
    apply(std::move(loaded.config));
    last_reload_error_.clear();
    figures_.last_reload_ok = true;
    serve_control();
    log_.notice("configuration reloaded",
                {{"MEMTIDE_EVENT", "config-reloaded"},
                 {"MEMTIDE_CONFIG", options_.config_path},
                 {"MEMTIDE_INTERVAL", config::format_duration(config_->daemon.interval)}});
    if (config_->daemon.interval != old_interval) {
      std::uint64_t now = 0;
      sd_event_now(event_, CLOCK_MONOTONIC, &now);
      sd_event_source_set_time(timer_, now + to_usec(config_->daemon.interval));
    }
  }
  sd_notify(0, "READY=1");
  notify_status();
}

void Daemon::decide_and_act(std::int64_t now_ms) {
  // Without a live hypervisor the VM figures are the last good ones: decide on the host alone
  // rather than act on guests that may have changed.
  std::optional<Snapshot> host_only;
  if (!last_snapshot_->hypervisor_up) {
    host_only = *last_snapshot_;
    host_only->vms.clear();
  }
  const Snapshot& decided_on = host_only ? *host_only : *last_snapshot_;
  record(decided_on);
  auto decision = policy::decide(decided_on, std::move(policy_state_), *config_, now_ms);
  policy_state_ = std::move(decision.state);
  const policy::Plan& plan = decision.plan;
  std::map<std::string, std::string> failed;  // VM -> why its command failed this tick
  auto* hypervisor = collector_->hypervisor();
  const bool send = !dry_run() && hypervisor != nullptr && !figures_.paused;
  const auto outcomes = send ? send_balloon_commands(*hypervisor, plan.balloons,
                                                     config_->libvirt.timeout, tick_deadline_)
                             : std::vector<CommandOutcome>(plan.balloons.size());
  std::size_t carried_over = 0;
  for (std::size_t i = 0; i < plan.balloons.size(); ++i) {
    const auto& change = plan.balloons[i];
    const std::string what = change.vm + ": " + config::format_size(change.from_bytes) + " -> " +
                             config::format_size(change.to_bytes) + ": " + change.reason;
    const std::initializer_list<LogField> fields = {
        {"MEMTIDE_VM", change.vm},
        {"MEMTIDE_VM_UUID", change.uuid},
        {"MEMTIDE_FROM_BYTES", std::to_string(change.from_bytes)},
        {"MEMTIDE_TO_BYTES", std::to_string(change.to_bytes)}};
    auto remember = [&](std::string outcome) {
      recent_commands_.push_back(
          {last_snapshot_->collected_at_unix_ms, change, std::move(outcome)});
      if (recent_commands_.size() > kRecentCommands) {
        recent_commands_.pop_front();
      }
    };
    if (dry_run() || hypervisor == nullptr) {
      log_.notice("dry run, not applied: balloon " + what, fields);
      remember("dry run");
      continue;
    }
    if (figures_.paused) {
      log_.notice("paused, not applied: balloon " + what, fields);
      remember("paused");
      policy::unsend(policy_state_, change);
      continue;
    }
    const CommandOutcome& outcome = outcomes[i];
    if (outcome.kind == CommandOutcome::Kind::carried_over) {
      // The tick's time is spent (a slow hypervisor): the next tick decides it again.
      log_.debug("carried over to the next tick: balloon " + what, fields);
      remember("carried over");
      policy::unsend(policy_state_, change);
      ++carried_over;
      continue;
    }
    if (outcome.kind == CommandOutcome::Kind::failed) {
      ++figures_.errors_total["balloon"];
      log_.error("balloon command failed for " + change.vm + ": " + outcome.error, fields);
      remember("failed: " + outcome.error);
      failed[change.vm] = outcome.error;
      continue;
    }
    remember("applied");
    ++figures_.balloon_actions_total[{change.to_bytes > change.from_bytes ? "grow" : "shrink",
                                      policy::to_string(change.cause)}];
    log_.notice("balloon " + what, fields);
    if (pressure_event_usec_ != 0) {
      // sd_event_now() is the loop iteration's time; the command was just issued, so read the
      // clock itself.
      timespec ts{};
      clock_gettime(CLOCK_MONOTONIC, &ts);
      const auto issued = static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000 +
                          static_cast<std::uint64_t>(ts.tv_nsec) / 1000;
      last_reaction_ms_ = static_cast<double>(issued - pressure_event_usec_) / 1000.0;
      figures_.last_reaction_seconds = *last_reaction_ms_ / 1000.0;
      log_.notice("reacted to memory pressure in " +
                      std::to_string(static_cast<long long>(*last_reaction_ms_)) +
                      " ms (pressure event to first balloon command)",
                  {{"MEMTIDE_EVENT", "pressure-reaction"},
                   {"MEMTIDE_REACTION_MS", std::to_string(*last_reaction_ms_)}});
      pressure_event_usec_ = 0;
    }
  }
  if (carried_over > 0) {
    ++figures_.errors_total["tick-budget"];
    log_.warning(std::to_string(carried_over) +
                     " balloon command(s) carried over to the next tick: the tick's time budget "
                     "is spent (libvirt is slow)",
                 {{"MEMTIDE_EVENT", "commands-carried-over"}});
  }
  release_huge_pages(now_ms);
  act_on_ksm(plan);
  const auto firing_before = firing_alerts_;
  report_alerts(all_alerts(plan, now_ms, failed));
  const bool changed =
      !plan.balloons.empty() || firing_before != firing_alerts_ || !last_plan_ ||
      (plan.ksm && last_plan_->ksm && plan.ksm->settings != last_plan_->ksm->settings);
  last_plan_ = plan;
  save_state(changed, false);
}

void Daemon::release_huge_pages(std::int64_t now_ms) {
  if (!config_->host.release_huge_pages || dry_run() || figures_.paused ||
      !last_snapshot_->hypervisor_up) {
    return;
  }
  const auto released = huge_pages_->run(*last_snapshot_, now_ms);
  if (released.empty()) {
    return;
  }
  const auto before = last_snapshot_->host.thp_partially_mapped_bytes.value_or(0);
  const auto after = huge_pages_->partly_mapped_now();
  const std::string figures = "partly mapped huge pages " + config::format_size(before) + " -> " +
                              (after ? config::format_size(*after) : std::string("unknown"));
  for (const auto& r : released) {
    const std::initializer_list<LogField> fields = {{"MEMTIDE_EVENT", "huge-pages-released"},
                                                    {"MEMTIDE_VM", r.vm}};
    if (r.error.empty()) {
      ++figures_.huge_page_releases_total["done"];
      log_.info("split the huge pages " + r.vm + "'s balloon left partly mapped (" +
                    config::format_size(r.advised_bytes) + " of guest RAM advised): " + figures,
                fields);
      continue;
    }
    ++figures_.huge_page_releases_total["failed"];
    if (r.error != last_huge_page_error_) {
      log_.warning("cannot split the huge pages " + r.vm +
                       "'s balloon left partly mapped; the host gets that memory only at the "
                       "kernel's next reclaim: " +
                       r.error,
                   fields);
      last_huge_page_error_ = r.error;
    }
  }
}

void Daemon::load_state() {
  if (state_path_.empty()) {
    return;
  }
  auto text = read_state_file(state_path_);
  if (!text) {
    if (text.error().sys_errno == ENOENT) {
      log_.info("no policy state at " + state_path_ + "; starting fresh",
                {{"MEMTIDE_EVENT", "state-absent"}});
    } else {
      log_.warning("policy state not used, starting fresh: " + text.error().to_string(),
                   {{"MEMTIDE_EVENT", "state-ignored"}});
    }
    return;
  }
  using namespace std::chrono;
  const auto mono = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  const auto unix_ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  auto state = state_from_json(*text, mono, unix_ms);
  if (!state) {
    log_.warning(
        "policy state in " + state_path_ + " not used, starting fresh: " + state.error().message,
        {{"MEMTIDE_EVENT", "state-ignored"}});
    return;
  }
  policy_state_ = std::move(*state);
  log_.notice("policy state restored from " + state_path_ + ": " +
                  std::to_string(policy_state_.vms.size()) + " VM(s), " +
                  std::to_string(policy_state_.alerts.size()) + " alert(s)",
              {{"MEMTIDE_EVENT", "state-restored"}});
}

void Daemon::save_state(bool changed, bool force) {
  if (state_path_.empty() || !last_snapshot_) {
    return;
  }
  std::uint64_t now_usec = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now_usec);
  constexpr std::uint64_t kEveryUsec = 60'000'000;
  if (!force && !changed && state_saved_usec_ != 0 && now_usec - state_saved_usec_ < kEveryUsec) {
    return;
  }
  using namespace std::chrono;
  const auto mono = duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  const auto unix_ms = duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  state_saved_usec_ = now_usec;
  if (auto s = save_state_file(state_path_, state_to_json(policy_state_, mono, unix_ms)); !s) {
    ++figures_.errors_total["state"];
    const auto message = s.error().to_string();
    if (message != last_state_error_) {
      log_.warning("cannot save the policy state: " + message, {{"MEMTIDE_EVENT", "state-failed"}});
      last_state_error_ = message;
    }
    return;
  }
  last_state_error_.clear();
}

void Daemon::attach_page_scans(Snapshot& snapshot) {
  if (!page_scans_) {
    for (auto& vm : snapshot.vms) {
      vm.page_scan = VmPageScan{};
      vm.page_scan->status = "off";
    }
    return;
  }
  // While libvirt is down the VM list is the last good one: the scanner keeps its targets.
  if (snapshot.hypervisor_up) {
    std::vector<ScanTarget> targets;
    targets.reserve(snapshot.vms.size());
    for (const auto& vm : snapshot.vms) {
      ScanTarget t{vm.uuid, vm.name, vm.process ? vm.process->pid : 0, vm.max_bytes, ""};
      // Reading guest memory is a privilege the operator withholds per VM.
      if (!vm.sharing_allowed) {
        t.refused = "opted-out";
      } else if (vm.metadata.scan_enabled == false) {
        t.refused = "scan-disabled";
      }
      targets.push_back(std::move(t));
    }
    page_scans_->update(std::move(targets), config_->ksm.scan);
  }
  auto view = page_scans_->view();
  for (auto& vm : snapshot.vms) {
    if (const auto it = view.vms.find(vm.uuid); it != view.vms.end()) {
      vm.page_scan = std::move(it->second);
    }
  }
  snapshot.ksm_estimate = view.estimate;
}

void Daemon::act_on_ksm(const policy::Plan& plan) {
  if (!plan.ksm || !plan.ksm->settings || !last_snapshot_->ksm) {
    return;
  }
  const KsmSettings& wanted = *plan.ksm->settings;
  if (dry_run() || figures_.paused) {
    if (ksm_not_applied_ != wanted) {
      log_.notice(std::string(dry_run() ? "dry run" : "paused") +
                      ", KSM settings not applied: " + plan.ksm->reason,
                  {{"MEMTIDE_EVENT", "ksm-not-applied"}});
      ksm_not_applied_ = wanted;
    }
    return;
  }
  ksm_not_applied_.reset();
  auto writes = collector_->ksm().apply(wanted, *last_snapshot_->ksm);
  if (!writes) {
    ++figures_.errors_total["ksm"];
    const std::string message = writes.error().to_string();
    if (message != last_ksm_error_) {
      log_.error("KSM settings not applied: " + message, {{"MEMTIDE_EVENT", "ksm-write-failed"}});
      last_ksm_error_ = message;
    }
    return;
  }
  last_ksm_error_.clear();
  for (const auto& w : *writes) {
    ++figures_.ksm_writes_total[w.file];
    log_.notice("KSM " + w.file + ": " + w.from + " -> " + w.to + ": " + plan.ksm->reason,
                {{"MEMTIDE_EVENT", "ksm-write"},
                 {"MEMTIDE_KSM_FILE", w.file},
                 {"MEMTIDE_FROM", w.from},
                 {"MEMTIDE_TO", w.to}});
  }
}

std::vector<policy::Alert> Daemon::all_alerts(const policy::Plan& plan, std::int64_t now_ms,
                                              const std::map<std::string, std::string>& failed) {
  std::vector<policy::Alert> alerts = plan.alerts;
  // libvirt down for two ticks in a row (one failed collection may be a restart in progress).
  if (last_snapshot_->hypervisor_up) {
    libvirt_down_since_ms_ = -1;
  } else if (libvirt_down_since_ms_ < 0) {
    libvirt_down_since_ms_ = now_ms;
  } else {
    alerts.push_back(
        {"libvirt-down", "", policy::Severity::critical,
         "libvirt unreachable, guests are not managed: " + last_snapshot_->hypervisor_error,
         libvirt_down_since_ms_});
  }
  // A VM whose balloon command failed: firing until it has gone kAlertClearTicks ticks without
  // a failure.
  for (const auto& [vm, message] : failed) {
    failing_vms_[vm] = {message, 0};
  }
  for (auto it = failing_vms_.begin(); it != failing_vms_.end();) {
    if (failed.count(it->first) == 0 && ++it->second.second >= policy::kAlertClearTicks) {
      it = failing_vms_.erase(it);
      continue;
    }
    alerts.push_back({"balloon-command-failed", it->first, policy::Severity::warning,
                      it->first + ": balloon command failed: " + it->second.first, now_ms});
    ++it;
  }
  std::sort(alerts.begin(), alerts.end(), [](const policy::Alert& a, const policy::Alert& b) {
    return std::tie(a.name, a.subject) < std::tie(b.name, b.subject);
  });
  return alerts;
}

void Daemon::configure_alert_sinks() {
  const auto& a = config_->alerts;
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
  if (hostname_.empty()) {
    char name[256] = {};
    gethostname(name, sizeof name - 1);
    hostname_ = name;
  }
}

void Daemon::report_alerts(const std::vector<policy::Alert>& firing) {
  const std::int64_t now = last_snapshot_ ? last_snapshot_->collected_at_unix_ms : 0;
  auto key = [](const policy::Alert& a) { return std::make_pair(a.name, a.subject); };
  std::set<std::pair<std::string, std::string>> before;
  for (const auto& a : firing_alerts_) {
    before.insert(key(a));
  }
  std::set<std::pair<std::string, std::string>> current;
  std::vector<AlertNotice> changed;   // transitions, for the exec hook
  std::vector<AlertNotice> resolved;  // for Alertmanager
  for (const auto& a : firing) {
    current.insert(key(a));
    if (before.count(key(a)) == 0) {
      alert_started_unix_ms_[key(a)] = now;
      log_.log(a.severity == policy::Severity::critical ? Priority::err : Priority::warning,
               "alert " + a.name + " firing: " + a.summary,
               {{"MEMTIDE_EVENT", "alert-firing"},
                {"MEMTIDE_ALERT", a.name},
                {"MEMTIDE_SEVERITY", policy::to_string(a.severity)},
                {"MEMTIDE_VM", a.subject}});
      changed.push_back({a, false, now, 0});
    }
  }
  for (const auto& a : firing_alerts_) {
    if (current.count(key(a)) == 0) {
      log_.notice("alert " + a.name + " resolved" + (a.subject.empty() ? "" : " for " + a.subject),
                  {{"MEMTIDE_EVENT", "alert-resolved"},
                   {"MEMTIDE_ALERT", a.name},
                   {"MEMTIDE_VM", a.subject}});
      AlertNotice n{a, true, alert_started_unix_ms_[key(a)], now};
      changed.push_back(n);
      resolved.push_back(n);
      alert_started_unix_ms_.erase(key(a));
    }
  }
  firing_alerts_ = firing;

  if (exec_hook_) {
    for (const auto& n : changed) {
      exec_hook_->submit(dump_json(exec_body(n, hostname_)));
    }
  }
  // Alertmanager: on any change, and again every resend_interval while alerts fire. A firing
  // alert is sent with endsAt three intervals ahead, so if memtided dies Alertmanager resolves
  // it by itself rather than keep it forever.
  const std::int64_t resend = config_->alerts.alertmanager_resend_interval.count();
  if (alertmanager_ &&
      (!changed.empty() || (!firing.empty() && now - alertmanager_sent_unix_ms_ >= resend))) {
    std::vector<AlertNotice> batch = resolved;
    for (const auto& a : firing) {
      batch.push_back({a, false, alert_started_unix_ms_[key(a)], now + 3 * resend});
    }
    alertmanager_->submit(dump_json(alertmanager_body(batch, hostname_)));
    alertmanager_sent_unix_ms_ = now;
  }
}

void Daemon::watch_pressure() {
  // A PSI trigger: the kernel wakes us (POLLPRI) when tasks stalled on memory for 150 ms within
  // a 2 s window, so reaction to sudden pressure does not wait for the next tick. The window is
  // a multiple of 2 s because without CAP_SYS_RESOURCE (which the hardened unit does not grant)
  // the kernel accepts no other.
  static constexpr const char* kTrigger = "some 150000 2000000";
  const std::string path = options_.procfs.value_or(config_->daemon.procfs) + "/pressure/memory";
  // Only a real procfs file takes a trigger: a fixture tree (--procfs) holds plain files, and
  // writing the trigger there would overwrite the figures it stands for.
  psi_fd_ = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct statfs fs {};
  const bool on_procfs =
      psi_fd_ >= 0 && fstatfs(psi_fd_, &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC;
  if (psi_fd_ >= 0) {
    close(psi_fd_);
    psi_fd_ = -1;
  }
  if (on_procfs) {
    psi_fd_ = open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  } else {
    errno = ENOTSUP;
  }
  if (psi_fd_ < 0 || write(psi_fd_, kTrigger, std::strlen(kTrigger) + 1) < 0) {
    log_.notice(std::string("no memory pressure trigger (") +
                    (on_procfs ? std::strerror(errno) : "not a procfs file") + " on " + path +
                    "); reacting on the tick only",
                {{"MEMTIDE_EVENT", "psi-trigger-unavailable"}});
    if (psi_fd_ >= 0) {
      close(psi_fd_);
      psi_fd_ = -1;
    }
    return;
  }
  const int r =
      sd_event_add_io(event_, &psi_source_, psi_fd_, EPOLLPRI, &Daemon::on_pressure, this);
  if (r < 0) {
    log_.warning("cannot watch the memory pressure trigger: " + errno_text(r));
  }
}

int Daemon::on_pressure(sd_event_source*, int, std::uint32_t revents, void* self) {
  auto* d = static_cast<Daemon*>(self);
  if ((revents & EPOLLERR) != 0) {
    // The trigger's file went away (e.g. cgroup removal); stop watching, ticks go on.
    sd_event_source_set_enabled(d->psi_source_, SD_EVENT_OFF);
    return 0;
  }
  std::uint64_t now = 0;
  sd_event_now(d->event_, CLOCK_MONOTONIC, &now);
  ++d->figures_.pressure_events_total;
  // The reaction time is measured from the first event the next tick answers.
  if (d->pressure_event_usec_ == 0) {
    d->pressure_event_usec_ = now;
  }
  d->log_.debug("memory pressure event: running a tick now", {{"MEMTIDE_EVENT", "pressure-event"}});
  // At most one tick per 200 ms however often the kernel signals: an event sooner than that
  // after a tick brings the next tick forward to the 200 ms mark instead.
  constexpr std::uint64_t kMinGapUsec = 200'000;
  if (now - d->last_tick_usec_ >= kMinGapUsec) {
    d->guarded("tick", [d] { d->tick(); });
    return 0;
  }
  std::uint64_t deadline = 0;
  if (sd_event_source_get_time(d->timer_, &deadline) >= 0 &&
      d->last_tick_usec_ + kMinGapUsec < deadline) {
    sd_event_source_set_time(d->timer_, d->last_tick_usec_ + kMinGapUsec);
  }
  return 0;
}

}  // namespace memtide::daemon
