#include <memtide/config/config.hpp>
#include <memtide/config/units.hpp>
#include <memtide/policy/classes.hpp>
#include <memtide/policy/coexist.hpp>
#include <memtide/report/snapshot_json.hpp>
#include <memtide/report/status.hpp>

namespace memtide::report {

namespace {

template <typename T>
nlohmann::json optional_json(const std::optional<T>& v) {
  return v ? nlohmann::json(*v) : nlohmann::json();
}

nlohmann::json pin_names(const std::vector<MemoryPin>& pins) {
  nlohmann::json names = nlohmann::json::array();
  for (const MemoryPin pin : pins) {
    names.push_back(to_string(pin));
  }
  return names;
}

// What the operator could change on the domain to let memtide do better, one sentence each.
nlohmann::json advice(const VmSample& vm, const policy::EffectiveBalloon& settings) {
  nlohmann::json out = nlohmann::json::array();
  if (settings.managed && settings.pinned_by.empty() && vm.balloon_autodeflate == false) {
    out.push_back(
        "turn autodeflate on (<memballoon model='virtio' autodeflate='on'>, then a cold boot): "
        "the guest then takes memory back from its balloon before its OOM killer runs, so a "
        "burst faster than memtide's tick cannot kill a process, and memtide keeps less room "
        "for bursts");
  }
  return out;
}

nlohmann::json virtio_mem_json(const std::vector<VirtioMemDevice>& devices) {
  auto out = nlohmann::json::array();
  for (const auto& d : devices) {
    out.push_back({{"alias", d.alias},
                   {"node", d.node ? nlohmann::json(*d.node) : nlohmann::json()},
                   {"block_bytes", d.block_bytes},
                   {"max_bytes", d.max_bytes},
                   {"requested_bytes", d.requested_bytes},
                   {"plugged_bytes", d.plugged_bytes},
                   {"configured_bytes", d.configured_bytes}});
  }
  return out;
}

nlohmann::json vm_status(const TickReport& r, const VmSample& vm, const policy::Outcome* outcome) {
  const auto settings = policy::effective_balloon(
      vm, *r.config,
      policy::yielding_to(r.snapshot->other_managers, policy::Controls::balloons, *r.config));
  nlohmann::json j = {
      {"name", vm.name},
      {"uuid", vm.uuid},
      {"connection", vm.connection},
      {"state", to_string(vm.state)},
      {"class", settings.class_name},
      {"managed", settings.managed},
      {"balloon_bytes", vm.current_bytes},
      {"max_bytes", vm.max_bytes},
      {"floor_bytes", settings.floor_bytes},
      {"usable_bytes", optional_json(vm.guest.usable_bytes)},
      {"stats_status", to_string(vm.stats_status)},
      {"process_unavailable", vm.process_unavailable.value_or("")},
      {"balloon_autodeflate", optional_json(vm.balloon_autodeflate)},
      {"balloon_free_page_reporting", optional_json(vm.balloon_free_page_reporting)},
      {"memory_pins", pin_names(vm.memory_pins)},
      {"virtio_mem", virtio_mem_json(vm.virtio_mem)},
      {"advice", advice(vm, settings)},
      {"target_bytes", nullptr},
      {"explanation", outcome != nullptr ? r.plan->explain(*outcome) : ""},
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
        {"schedule", p.schedule},
        {"schedule_reason", p.schedule_reason},
    };
  }
  if (const auto target = balloon_target_of(r, vm)) {
    j["target_bytes"] = *target;
  }
  return j;
}

nlohmann::json ksm_status(const TickReport& r) {
  const Snapshot& s = *r.snapshot;
  const policy::Plan* plan = r.plan;
  if (!s.ksm) {
    return {{"available", false}, {"mode", config::to_string(r.config->ksm.mode)}};
  }
  const KsmSample& k = *s.ksm;
  nlohmann::json j = {
      {"available", true},
      {"mode", config::to_string(r.config->ksm.mode)},
      {"run", k.run},
      {"pages_to_scan", k.pages_to_scan},
      {"sleep_ms", k.sleep_ms},
      {"full_scans", k.full_scans_total},
      {"actual_savings_bytes", k.savings_bytes()},
      {"decision", plan != nullptr && plan->ksm ? plan->ksm->reason : ""},
      {"ksmd_cpu_ratio", nullptr},
      {"estimate", nullptr},
  };
  if (plan != nullptr && plan->ksm && plan->ksm->ksmd_cpu_ratio) {
    j["ksmd_cpu_ratio"] = *plan->ksm->ksmd_cpu_ratio;
  }
  if (s.ksm_estimate) {
    const auto& e = *s.ksm_estimate;
    j["estimate"] = {{"vms", e.vms},
                     {"candidate_bytes", e.candidate_bytes},
                     {"resident_bytes", e.resident_bytes},
                     {"zero_bytes", e.zero_bytes},
                     {"savings_bytes", e.savings_bytes},
                     {"read_bytes_total", e.read_bytes_total},
                     {"cpu_seconds_total", e.cpu_seconds_total},
                     {"passes_total", e.passes_total},
                     {"probes_total", e.probes_total}};
  }
  return j;
}

nlohmann::json daemon_status(const TickReport& r) {
  const DaemonFigures& d = *r.daemon;
  return {{"version", MEMTIDE_VERSION},
          {"ticks", d.ticks_total},
          {"paused", d.paused},
          {"dry_run", d.dry_run},
          {"config", r.config->source},
          {"config_dropins", r.config->dropins},
          {"last_reload_error", d.last_reload_error},
          {"metrics", d.metrics_endpoint}};
}

// Each other memory manager running, and what memtide leaves to it.
nlohmann::json other_managers_status(const TickReport& r) {
  nlohmann::json out = nlohmann::json::array();
  const bool yields = r.config->daemon.coexist != config::Coexist::force;
  for (const auto& m : r.snapshot->other_managers) {
    nlohmann::json left = nlohmann::json::array();
    if (yields && m.balloons) {
      left.push_back("balloons");
    }
    if (yields && m.ksm) {
      left.push_back("ksm");
    }
    out.push_back({{"name", m.name}, {"pid", m.pid}, {"left_to_it", left}});
  }
  return out;
}

// With several libvirt daemons: each connection, and each socket discovery refused.
nlohmann::json connections_status(const Snapshot& s) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& c : s.connections) {
    out.push_back({{"name", c.name},
                   {"uri", c.uri},
                   {"discovered", c.discovered},
                   {"status", to_string(c.status)},
                   {"guests", c.vms},
                   {"error", c.error}});
  }
  return out;
}

nlohmann::json host_status(const TickReport& r) {
  const Snapshot& s = *r.snapshot;
  const policy::Plan* plan = r.plan;
  nlohmann::json forecast = nullptr;
  if (plan != nullptr && plan->forecast.seconds_to_swap) {
    forecast = *plan->forecast.seconds_to_swap;
  }
  return {{"collected_at", format_utc(s.collected_at_unix_ms)},
          {"total_bytes", s.host.meminfo.total_bytes},
          {"available_bytes", s.host.meminfo.available_bytes},
          {"reserve_bytes", r.config->host.reserve_bytes},
          {"pressure", plan != nullptr && plan->host_pressure},
          {"level", plan != nullptr ? policy::to_string(plan->host_level) : "ok"},
          {"paying_back_swap", plan != nullptr && plan->host_paying_back},
          {"summary", plan != nullptr ? plan->host_summary : ""},
          {"seconds_to_swap", forecast},
          {"headroom_above_reserve_bytes",
           plan != nullptr ? nlohmann::json(plan->headroom_above_reserve_bytes) : nlohmann::json()},
          {"headroom_reclaimable_bytes",
           plan != nullptr ? nlohmann::json(plan->reclaimable_bytes) : nlohmann::json()},
          {"libvirt_up", s.hypervisor_up},
          {"libvirt_error", s.hypervisor_error},
          {"libvirt_connections", connections_status(s)},
          {"other_managers", other_managers_status(r)}};
}

nlohmann::json alerts_status(const TickReport& r) {
  nlohmann::json alerts = nlohmann::json::array();
  for (const auto& a : firing_alerts(r)) {
    alerts.push_back({{"name", a.name},
                      {"domain", a.subject},
                      {"severity", policy::to_string(a.severity)},
                      {"summary", a.summary}});
  }
  return alerts;
}

nlohmann::json recent_commands_status(const TickReport& r) {
  nlohmann::json recent = nlohmann::json::array();
  if (r.recent_commands == nullptr) {
    return recent;
  }
  for (const auto& c : *r.recent_commands) {
    recent.push_back({{"at", format_utc(c.unix_ms)},
                      {"vm", c.change.vm},
                      {"from_bytes", c.change.from_bytes},
                      {"to_bytes", c.change.to_bytes},
                      {"cause", policy::to_string(c.change.cause)},
                      {"reason", c.change.reason},
                      {"outcome", c.outcome}});
  }
  return recent;
}

nlohmann::json not_yet() {
  return {{"ok", false}, {"error", "no collection yet"}};
}

}  // namespace

nlohmann::json status_reply(const TickReport& r) {
  if (r.snapshot == nullptr) {
    return not_yet();
  }
  nlohmann::json vms = nlohmann::json::array();
  for (std::size_t i = 0; i < r.snapshot->vms.size(); ++i) {
    vms.push_back(vm_status(r, r.snapshot->vms[i], outcome_of(r, i)));
  }
  return {{"ok", true},
          {"daemon", daemon_status(r)},
          {"host", host_status(r)},
          {"ksm", ksm_status(r)},
          {"alerts", alerts_status(r)},
          {"vms", vms},
          {"recent_commands", recent_commands_status(r)}};
}

nlohmann::json explain_reply(const TickReport& r, const std::string& wanted) {
  if (r.snapshot == nullptr) {
    return not_yet();
  }
  const auto& vms = r.snapshot->vms;
  for (std::size_t i = 0; i < vms.size(); ++i) {
    if (vms[i].name == wanted || vms[i].uuid == wanted || vms[i].key() == wanted ||
        (!vms[i].connection.empty() && vms[i].connection + "/" + vms[i].name == wanted)) {
      return {{"ok", true},
              {"vm", vm_status(r, vms[i], outcome_of(r, i))},
              {"host", r.plan != nullptr ? r.plan->host_summary : ""}};
    }
  }
  return {{"ok", false}, {"error", "no running VM named '" + wanted + "'"}};
}

std::string service_status(const TickReport& r) {
  const DaemonFigures& d = *r.daemon;
  std::string status = "tick " + std::to_string(d.ticks_total) + " every " +
                       config::format_duration(r.config->daemon.interval);
  if (const Snapshot* s = r.snapshot) {
    const auto& m = s->host.meminfo;
    status += "; host MemAvailable " + config::format_size(m.available_bytes) + " of " +
              config::format_size(m.total_bytes);
    status +=
        s->hypervisor_up ? "; " + std::to_string(s->vms.size()) + " VMs" : "; libvirt unavailable";
  }
  if (const policy::Plan* p = r.plan) {
    status += "; " + p->host_summary;
    if (p->forecast.seconds_to_swap && !p->host_heading) {
      status += "; swap in " +
                std::to_string(static_cast<long long>(*p->forecast.seconds_to_swap)) +
                " s at this trend";
    }
    if (const auto firing = firing_alerts(r).size(); firing > 0) {
      status += "; " + std::to_string(firing) + " alert(s) firing";
    }
  }
  if (const Snapshot* s = r.snapshot) {
    const auto yielded = policy::yield_summary(
        policy::yielding_to(s->other_managers, policy::Controls::balloons, *r.config),
        policy::yielding_to(s->other_managers, policy::Controls::ksm, *r.config));
    status += yielded.empty() ? "" : "; " + yielded;
  }
  status += d.dry_run ? "; DRY RUN" : "";
  status += d.paused ? "; actions PAUSED" : "";
  if (!d.collect_error.empty()) {
    status += "; collection failing: " + d.collect_error;
  }
  if (!d.last_reload_error.empty()) {
    status += "; last reload failed, running previous config";
  }
  return status;
}

}  // namespace memtide::report
