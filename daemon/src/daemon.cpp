#include "daemon.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/epoll.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <memtide/actuators/balloon_commands.hpp>
#include <memtide/config/files.hpp>
#include <memtide/config/overrides.hpp>
#include <memtide/config/units.hpp>
#include <memtide/core/clock.hpp>
#include <memtide/core/dry_run_marker.hpp>
#include <memtide/core/reserve.hpp>
#include <memtide/policy/coexist.hpp>
#include <memtide/report/metrics.hpp>
#include <memtide/report/status.hpp>

namespace memtide::daemon {

namespace {

// The libvirt URIs this daemon manages guests of, each claimed (HypervisorClaim): every
// configured or discovered connection's that is not refused, or else libvirt.uri.
std::vector<std::string> managed_uris(const Snapshot& snapshot, const config::Config& config) {
  std::vector<std::string> uris;
  for (const auto& c : snapshot.connections) {
    if (c.status != ConnectionState::Status::refused) {
      uris.push_back(c.uri);
    }
  }
  if (uris.empty() && config.libvirt.connections.empty() && config.libvirt.discover.empty()) {
    uris.push_back(config.libvirt.uri);
  }
  return uris;
}

// The drop-ins a configuration was read with, as a journal field: their paths, comma-separated
// ("" without any).
std::string dropin_list(const config::Config& config) {
  std::string list;
  for (const auto& file : config.dropins) {
    list += (list.empty() ? "" : ",") + file;
  }
  return list;
}

}  // namespace

Daemon::Daemon(Options options, std::shared_ptr<const config::Config> config, Logger& log,
               HypervisorFactory make_hypervisor)
    : options_(std::move(options)),
      log_(log),
      make_hypervisor_(std::move(make_hypervisor)),
      loop_(log),
      collection_log_(log),
      actions_(log, known_.figures),
      state_(log, known_.figures),
      recorder_(log, known_.figures),
      alerts_(log),
      metrics_(log) {
  known_.figures.started_unix_s = clock::unix_ms() / 1000;
  apply(std::move(config));
}

Daemon::~Daemon() {
  sd_event_source_disable_unref(render_source_);
}

void Daemon::apply(std::shared_ptr<const config::Config> config) {
  // A dry run records nothing in domains either (make_libvirt_worker): turning it on or off
  // opens the connection anew.
  const bool libvirt_changed = !config_ || config_->libvirt != config->libvirt ||
                               config_->daemon.dry_run != config->daemon.dry_run;
  config_ = std::move(config);
  log_.set_level(config_->daemon.log_level);
  known_.figures.dry_run = config_->daemon.dry_run;
  collectors::HostRoots roots{config_->daemon.procfs, config_->daemon.sysfs};
  if (!collector_ || libvirt_changed) {
    // A new libvirt section means a new connection: URI, keepalive and backoff are set at
    // connect time.
    collector_ = std::make_unique<collectors::Collector>(roots, make_hypervisor_(*config_),
                                                         config_->libvirt.timeout);
    claim_ = std::make_unique<HypervisorClaim>();
  } else {
    collector_->set_roots(std::move(roots));
  }
  collector_->set_host_reserve(config_->host.reserve_bytes);
  if (auto facts = collectors::read_virt_facts(config_->daemon.sysfs)) {
    known_.facts = *facts;
  } else {
    known_.facts.reset();
    log_.warning("cannot read virtualization facts: " + facts.error().to_string(),
                 {{"MEMTIDE_EVENT", "facts-unavailable"}});
  }
  if (!config_->ksm.scan.enabled) {
    page_scans_.reset();
  } else if (!page_scans_) {
    page_scans_ =
        std::make_unique<collectors::PageScanWorker>(config_->daemon.procfs, config_->ksm.scan);
  }
  actions_.configure(*config_);
  metrics_.serve(config_->metrics.listen, [this] {
    return std::make_shared<const std::string>(report::render_metrics(tick_report()));
  });
  alerts_.configure(config_->alerts, config_->metrics.listen);
  state_.configure(config_->daemon.state_file);
  recorder_.configure(config_->daemon.record);
}

report::TickReport Daemon::tick_report() {
  known_.figures.metrics_endpoint = metrics_.description();
  alerts_.count_deliveries(known_.figures);
  report::TickReport r;
  r.snapshot = known_.snapshot ? &*known_.snapshot : nullptr;
  r.plan = known_.plan ? &*known_.plan : nullptr;
  r.state = &known_.policy;
  r.facts = known_.facts ? &*known_.facts : nullptr;
  r.config = config_.get();
  r.daemon = &known_.figures;
  r.alerts = &alerts_.firing();
  r.recent_commands = &actions_.recent();
  return r;
}

void Daemon::publish_metrics() {
  ++known_.figures.metrics_renders_total;
  known_.figures.process = collectors::read_self_process();
  known_.figures.host = collectors::read_host_identity();
  metrics_.publish(std::make_shared<const std::string>(report::render_metrics(tick_report())));
}

void Daemon::serve_control() {
  const std::string& want = config_->daemon.control_socket;
  if (want == control_.path && (control_.server || want.empty())) {
    return;
  }
  control_ = {};
  if (want.empty()) {
    return;
  }
  auto server = ControlServer::start(loop_.event(), want, [this](const nlohmann::json& request) {
    return handle_control(request);
  });
  if (!server) {
    log_.error("cannot open the control socket: " + server.error().to_string(),
               {{"MEMTIDE_EVENT", "control-unavailable"}});
    return;
  }
  control_ = {std::move(*server), want};
}

nlohmann::json Daemon::handle_control(const nlohmann::json& request) {
  const std::string command = request["command"].get<std::string>();
  if (command == "status") {
    return report::status_reply(tick_report());
  }
  if (command == "explain") {
    if (!request.contains("vm") || !request["vm"].is_string()) {
      return {{"ok", false}, {"error", "explain needs \"vm\": a VM name or UUID"}};
    }
    return report::explain_reply(tick_report(), request["vm"].get<std::string>());
  }
  if (command == "history") {
    return history_reply(request);
  }
  auto& paused = known_.figures.paused;
  if (command == "pause" || command == "resume") {
    if (paused != (command == "pause")) {
      paused = command == "pause";
      log_.notice(paused ? "balloon actions paused (memtidectl pause); decisions are still made "
                           "and logged"
                         : "balloon actions resumed (memtidectl resume)",
                  {{"MEMTIDE_EVENT", paused ? "paused" : "resumed"}});
      notify_status();
      metrics_.invalidate();
    }
    return {{"ok", true}, {"paused", paused}};
  }
  if (command == "reload") {
    reload();
    const auto& error = known_.figures.last_reload_error;
    if (!error.empty()) {
      return {{"ok", false}, {"error", "reload rejected, previous configuration kept: " + error}};
    }
    return {{"ok", true}, {"config", config_->source}};
  }
  return {{"ok", false},
          {"error", "unknown command '" + command +
                        "'; commands: status, explain, history, pause, resume, reload"}};
}

nlohmann::json Daemon::history_reply(const nlohmann::json& request) const {
  constexpr std::size_t kMaxGlobs = 256;
  constexpr std::size_t kMaxGlobBytes = 1024;
  std::vector<std::string> globs;
  if (request.contains("vms")) {
    const auto& vms = request["vms"];
    const bool valid = vms.is_array() && vms.size() <= kMaxGlobs &&
                       std::all_of(vms.begin(), vms.end(), [](const nlohmann::json& v) {
                         return v.is_string() && !v.get<std::string>().empty() &&
                                v.get<std::string>().size() <= kMaxGlobBytes;
                       });
    if (!valid) {
      return {{"ok", false}, {"error", "\"vms\" is a list of at most 256 VM names or globs"}};
    }
    globs = vms.get<std::vector<std::string>>();
  }
  std::int64_t since = INT64_MIN;
  if (request.contains("since_unix_ms")) {
    if (!request["since_unix_ms"].is_number_integer()) {
      return {{"ok", false}, {"error", "\"since_unix_ms\" is an integer"}};
    }
    since = request["since_unix_ms"].get<std::int64_t>();
  }
  nlohmann::json entries = nlohmann::json::array();
  for (const auto* e : history_.select(globs, since)) {
    entries.push_back(report::to_json(*e));
  }
  const auto& all = history_.entries();
  return {{"ok", true},
          {"entries", std::move(entries)},
          {"oldest_unix_ms", all.empty() ? nlohmann::json() : nlohmann::json(all.front().unix_ms)},
          {"bytes", history_.bytes()},
          {"max_bytes", history_.max_bytes()}};
}

int Daemon::run() {
  const bool opened = loop_.open({[this] { guarded("tick", [this] { tick(); }); },
                                  [this] { guarded("reload", [this] { reload(); }); },
                                  [this] { guarded("stop", [this] { stop(); }); }},
                                 config_->daemon.interval);
  if (!opened) {
    return kExitFailure;
  }
  pressure_.start(loop_.event(), config_->daemon.procfs, log_,
                  [this](std::uint64_t now_usec) { on_pressure(now_usec); });
  // A scrape found the page stale: rendered here, between ticks, from what the last one knows.
  sd_event_add_io(
      loop_.event(), &render_source_, metrics_.render_requests(), EPOLLIN,
      [](sd_event_source*, int, std::uint32_t, void* self) {
        auto* d = static_cast<Daemon*>(self);
        d->metrics_.clear_render_requests();
        d->guarded("metrics", [d] { d->publish_metrics(); });
        return 0;
      },
      this);
  serve_control();
  if (auto saved = state_.load()) {
    known_.policy = std::move(*saved);
  }
  if (auto saved = state_.load_history()) {
    history_ = std::move(*saved);
  }
  log_.notice(
      "memtided " MEMTIDE_VERSION " started",
      {{"MEMTIDE_EVENT", "started"},
       {"MEMTIDE_CONFIG", config_->source.empty() ? "(built-in defaults)" : config_->source},
       {"MEMTIDE_CONFIG_DROPINS", dropin_list(*config_)},
       {"MEMTIDE_INTERVAL", config::format_duration(config_->daemon.interval)}});
  announce_dry_run();
  sd_notify(0, "READY=1\nSTATUS=started, waiting for the first tick");
  const int code = loop_.run();
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  if (code == kExitOk) {
    log_.notice("memtided stopped", {{"MEMTIDE_EVENT", "stopped"}});
  }
  return code;
}

void Daemon::stop() {
  sd_notify(0, "STOPPING=1\nSTATUS=stopping");
  auto* hypervisor = collector_->hypervisor();
  // Balloons left to another manager were never memtide's to restore.
  const std::string owner = known_.snapshot
                                ? policy::yielding_to(known_.snapshot->other_managers,
                                                      policy::Controls::balloons, *config_)
                                : "";
  const bool yielding = !owner.empty();
  if (yielding) {
    log_.notice("on stop: balloons are left to " + owner + ", not restored",
                {{"MEMTIDE_EVENT", "restore"}});
  }
  if (config_->daemon.on_stop == config::OnStop::restore && hypervisor != nullptr && !yielding) {
    actions_.restore_on_stop(*hypervisor, *config_, known_.snapshot ? &*known_.snapshot : nullptr,
                             known_.policy);
  }
  if (known_.snapshot) {
    state_.save(known_.policy, true, true);
  }
  state_.save_history(history_, true);
}

template <typename F>
void Daemon::guarded(const char* what, F&& f) noexcept {
  try {
    f();
  } catch (const std::exception& e) {
    // Library layers return errors as values, so this is a bug or memory exhaustion. The daemon
    // keeps its last good state and goes on: guests are better served by the next tick than by
    // an exit that leaves every balloon where it is.
    ++known_.figures.errors_total["internal"];
    log_.error(std::string(what) + " failed, carrying on with the last good state: " + e.what(),
               {{"MEMTIDE_EVENT", "internal-error"}});
  }
}

void Daemon::on_pressure(std::uint64_t now_usec) {
  ++known_.figures.pressure_events_total;
  // The reaction time is measured from the first event the next tick answers.
  if (!unanswered_pressure_usec_) {
    unanswered_pressure_usec_ = now_usec;
  }
  log_.debug("memory pressure event: running a tick now", {{"MEMTIDE_EVENT", "pressure-event"}});
  loop_.tick_soon();
}

void Daemon::tick() {
  auto& figures = known_.figures;
  ++figures.ticks_total;
  const std::uint64_t started = clock::monotonic_usec();
  loop_.tick_started();
  const auto deadline = std::chrono::steady_clock::now() +
                        actuators::tick_budget(config_->daemon.interval, loop_.watchdog());
  auto snapshot = collector_->collect();
  if (!snapshot) {
    ++figures.errors_total["collect"];
    collection_log_.failed(snapshot.error().to_string());
    figures.collect_error = collection_log_.failing();
  } else {
    if (!snapshot->hypervisor_up && known_.snapshot) {
      // The hypervisor is down or too slow: the VMs of the last good collection stand.
      snapshot->vms = std::move(known_.snapshot->vms);
    } else if (known_.snapshot) {
      collectors::keep_guests_of_down_connections(*snapshot, known_.snapshot->vms);
    }
    // Merging may matter when the host nears its reserve: the scanner's converged VMs are then
    // passed over at the fast interval.
    const bool near_reserve =
        host_near_reserve(snapshot->host.meminfo.available_bytes, config_->host.reserve_bytes);
    collectors::attach_page_scans(page_scans_.get(), *snapshot, config_->ksm.scan, near_reserve);
    const auto squatted =
        claim_->judge(snapshot->other_managers, managed_uris(*snapshot, *config_));
    collection_log_.collected(*snapshot);
    collection_log_.other_managers(
        policy::yield_summary(
            policy::yielding_to(snapshot->other_managers, policy::Controls::balloons, *config_),
            policy::yielding_to(snapshot->other_managers, policy::Controls::ksm, *config_)),
        squatted);
    figures.collect_error.clear();
    known_.snapshot = std::move(*snapshot);
    decide_and_act(*known_.snapshot, deadline);
    // This tick answered any pending pressure event, with a balloon command (whose reaction time
    // decide_and_act logged) or with the decision that none was needed.
    unanswered_pressure_usec_.reset();
    if (log_.enabled(Priority::debug)) {
      const auto& m = known_.snapshot->host.meminfo;
      log_.debug("tick " + std::to_string(figures.ticks_total) + ": MemAvailable " +
                     config::format_size(m.available_bytes) + " of " +
                     config::format_size(m.total_bytes) + ", " +
                     std::to_string(known_.snapshot->vms.size()) + " VMs",
                 {{"MEMTIDE_EVENT", "tick"}});
    }
  }
  figures.last_tick_seconds = static_cast<double>(clock::monotonic_usec() - started) / 1e6;
  figures.tick_seconds_total += figures.last_tick_seconds;
  alerts_.report_delivery_failures(clock::monotonic_usec());
  metrics_.invalidate();
  notify_status();
}

void Daemon::decide_and_act(const Snapshot& snapshot,
                            std::chrono::steady_clock::time_point deadline) {
  // Without a live hypervisor the VM figures are the last good ones: decide on the host alone
  // rather than act on guests that may have changed.
  std::optional<Snapshot> host_only;
  if (!snapshot.hypervisor_up) {
    host_only = snapshot;
    host_only->vms.clear();
  }
  const Snapshot& decided_on = host_only ? *host_only : snapshot;
  recorder_.append(decided_on);
  auto decision =
      policy::decide(decided_on, std::move(known_.policy), *config_, snapshot.monotonic_ms);
  known_.policy = std::move(decision.state);
  const policy::Plan& plan = decision.plan;
  const auto done = actions_.carry_out(plan, snapshot, known_.policy, collector_->hypervisor(),
                                       *config_, deadline);
  if (done.first_applied_usec) {
    log_reaction(*done.first_applied_usec);
  }
  const auto firing_before = alerts_.firing();
  alerts_.route(plan, snapshot, done.failed, snapshot.monotonic_ms);
  const auto& last = known_.plan;
  const bool changed = !plan.balloons.empty() || firing_before != alerts_.firing() || !last ||
                       (plan.ksm && last->ksm && plan.ksm->settings != last->ksm->settings);
  known_.plan = std::move(decision.plan);
  history_.record(tick_report(), done.commands);
  state_.save(known_.policy, changed, false);
  state_.save_history(history_, false);
}

void Daemon::log_reaction(std::uint64_t applied_usec) {
  if (!unanswered_pressure_usec_) {
    return;
  }
  const double ms = static_cast<double>(applied_usec - *unanswered_pressure_usec_) / 1000.0;
  known_.figures.last_reaction_seconds = ms / 1000.0;
  log_.notice(
      "reacted to memory pressure in " + std::to_string(static_cast<long long>(ms)) +
          " ms (pressure event to first balloon command)",
      {{"MEMTIDE_EVENT", "pressure-reaction"}, {"MEMTIDE_REACTION_MS", std::to_string(ms)}});
  unanswered_pressure_usec_.reset();
}

void Daemon::announce_dry_run() {
  // The mark for the unit's safety net, which cannot see --dry-run (core/dry_run_marker.hpp).
  if (const auto marker = dry_run_marker_path()) {
    if (!config_->daemon.dry_run) {
      ::unlink(marker->c_str());
    } else if (const int fd = ::open(marker->c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
               fd >= 0) {
      ::close(fd);
    } else {
      log_.warning("cannot mark the dry run for the safety net at " + *marker + ": " +
                       std::strerror(errno) +
                       "; a restore after a crash will follow the configuration alone",
                   {{"MEMTIDE_EVENT", "dry-run"}});
    }
  }
  if (!config_->daemon.dry_run) {
    return;
  }
  const std::string how = options_.overrides.dry_run
                              ? "start memtided without --dry-run"
                              : "set daemon.dry_run: false (or delete the drop-in that sets it, "
                                "such as memtide.d/00-observe-only.yaml) and reload";
  log_.notice(
      "dry run: memtide decides and logs what it would do (\"dry run, not applied\"), but "
      "changes no balloon, KSM setting or huge page and restores nothing on stop; to let "
      "it act, " +
          how,
      {{"MEMTIDE_EVENT", "dry-run"}});
}

void Daemon::notify_status() {
  sd_notify(0, ("STATUS=" + report::service_status(tick_report())).c_str());
}

void Daemon::reload() {
  // RELOADING=1 must carry MONOTONIC_USEC so the manager can order it against READY=1.
  sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading %s",
             static_cast<unsigned long long>(clock::monotonic_usec()),
             options_.config_path.c_str());
  auto loaded = config::reload_config_file(options_.config_path, *config_);
  auto& figures = known_.figures;
  if (!loaded.ok()) {
    for (const auto& e : loaded.errors) {
      log_.error(e.to_string(), {{"MEMTIDE_EVENT", "config-error"},
                                 {"MEMTIDE_CONFIG", e.file},
                                 {"MEMTIDE_CONFIG_LINE", std::to_string(e.line)}});
    }
    figures.last_reload_error =
        loaded.errors.empty() ? "unknown" : loaded.errors.front().to_string();
    ++figures.errors_total["reload"];
    figures.last_reload_ok = false;
    log_.warning(
        "configuration reload failed with " + std::to_string(loaded.errors.size()) +
            " error(s); keeping the running configuration",
        {{"MEMTIDE_EVENT", "config-reload-failed"}, {"MEMTIDE_CONFIG", options_.config_path}});
  } else {
    for (const auto& w : loaded.warnings) {
      log_.warning(w.to_string(), {{"MEMTIDE_EVENT", "config-warning"},
                                   {"MEMTIDE_CONFIG", w.file},
                                   {"MEMTIDE_CONFIG_LINE", std::to_string(w.line)}});
    }
    apply(config::with_overrides(std::move(loaded.config), options_.overrides));
    figures.last_reload_error.clear();
    figures.last_reload_ok = true;
    serve_control();
    log_.notice("configuration reloaded",
                {{"MEMTIDE_EVENT", "config-reloaded"},
                 {"MEMTIDE_CONFIG", options_.config_path},
                 {"MEMTIDE_CONFIG_DROPINS", dropin_list(*config_)},
                 {"MEMTIDE_INTERVAL", config::format_duration(config_->daemon.interval)}});
    loop_.set_interval(config_->daemon.interval);
    announce_dry_run();
  }
  sd_notify(0, "READY=1");
  notify_status();
}

}  // namespace memtide::daemon
