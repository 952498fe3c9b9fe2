#include "act.hpp"

#include <algorithm>

#include <systemd/sd-daemon.h>

#include <memtide/actuators/balloon_commands.hpp>
#include <memtide/actuators/restore.hpp>
#include <memtide/config/units.hpp>
#include <memtide/core/clock.hpp>

namespace memtide::daemon {

void Actions::configure(const config::Config& config) {
  const auto& sysfs = config.daemon.sysfs;
  if (!ksm_ || ksm_->directory() != sysfs + "/kernel/mm/ksm") {
    ksm_ = std::make_unique<actuators::KsmWriter>(sysfs);
  }
  if (!huge_pages_ || huge_pages_->procfs() != config.daemon.procfs) {
    huge_pages_ = std::make_unique<actuators::HugePageRelease>(config.daemon.procfs, sysfs);
  }
}

Actions::Done Actions::carry_out(const policy::Plan& plan, const Snapshot& snapshot,
                                 policy::PolicyState& state,
                                 collectors::HypervisorWorker* hypervisor,
                                 const config::Config& config,
                                 std::chrono::steady_clock::time_point deadline) {
  auto done = send_balloons(plan, snapshot, state, hypervisor, config, deadline);
  // A VM's command count lives as long as the VM (its series ends with it).
  if (snapshot.hypervisor_up) {
    std::erase_if(figures_.vm_balloon_commands_total, [&snapshot](const auto& kv) {
      return std::none_of(snapshot.vms.begin(), snapshot.vms.end(),
                          [&kv](const VmSample& vm) { return vm.has_key(kv.first); });
    });
  }
  // Why nothing is changed this tick; null when memtide acts.
  const char* only_decide = config.daemon.dry_run ? "dry run"
                            : figures_.paused     ? "paused"
                                                  : nullptr;
  if (config.host.release_huge_pages && only_decide == nullptr && snapshot.hypervisor_up) {
    release_huge_pages(snapshot, snapshot.monotonic_ms);
  }
  write_ksm(plan, snapshot, only_decide);
  return done;
}

void Actions::remember(Done& done, std::int64_t unix_ms, const policy::BalloonChange& change,
                       std::string outcome) {
  done.commands.push_back({unix_ms, change, outcome});
  recent_.push_back({unix_ms, change, std::move(outcome)});
  if (recent_.size() > kRecentCommands) {
    recent_.pop_front();
  }
}

Actions::Done Actions::send_balloons(const policy::Plan& plan, const Snapshot& snapshot,
                                     policy::PolicyState& state,
                                     collectors::HypervisorWorker* hypervisor,
                                     const config::Config& config,
                                     std::chrono::steady_clock::time_point deadline) {
  using Kind = actuators::CommandOutcome::Kind;
  Done done;
  const bool dry_run = config.daemon.dry_run || hypervisor == nullptr;
  const bool send = !dry_run && !figures_.paused;
  const auto outcomes = send ? actuators::send_balloon_commands(*hypervisor, plan.balloons,
                                                                config.libvirt.timeout, deadline)
                             : std::vector<actuators::CommandOutcome>(plan.balloons.size());
  std::size_t carried_over = 0;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> held_now;  // becomes not_applied_
  for (std::size_t i = 0; i < plan.balloons.size(); ++i) {
    const auto& change = plan.balloons[i];
    const std::string what = change.vm + ": " + config::format_size(change.from_bytes) + " -> " +
                             config::format_size(change.to_bytes) + ": " + change.reason;
    const auto& outcome = outcomes[i];
    const bool held = dry_run || figures_.paused;
    const char* event = held                                 ? "balloon-not-applied"
                        : outcome.kind == Kind::carried_over ? "balloon-carried-over"
                        : outcome.kind == Kind::failed       ? "balloon-failed"
                                                             : "balloon";
    const std::initializer_list<LogField> fields = {
        {"MEMTIDE_EVENT", event},
        {"MEMTIDE_DOMAIN", change.vm},
        {"MEMTIDE_DOMAIN_UUID", change.uuid},
        {"MEMTIDE_FROM_BYTES", std::to_string(change.from_bytes)},
        {"MEMTIDE_TO_BYTES", std::to_string(change.to_bytes)}};
    const std::int64_t at = snapshot.collected_at_unix_ms;
    if (held) {
      // Not sent, so not remembered as sent: the policy's state (and the state file) records
      // no command a dry run or a pause only decided. Decided again every tick, it is logged
      // when it differs from the last one not applied.
      const std::pair<std::uint64_t, std::uint64_t> sizes{change.from_bytes, change.to_bytes};
      const auto last = not_applied_.find(change.key());
      const bool repeated = last != not_applied_.end() && last->second == sizes;
      held_now[change.key()] = sizes;
      const std::string said =
          std::string(dry_run ? "dry run" : "paused") + ", not applied: balloon " + what;
      if (!repeated) {
        log_.notice(said, fields);
        remember(done, at, change, dry_run ? "dry run" : "paused");
      } else {
        log_.debug(said, fields);
      }
      policy::unsend(state, change);
      continue;
    }
    if (outcome.kind == Kind::carried_over) {
      // The tick's time is spent (a slow hypervisor): the next tick decides it again.
      log_.debug("carried over to the next tick: balloon " + what, fields);
      remember(done, at, change, "carried over");
      policy::unsend(state, change);
      ++carried_over;
    } else if (outcome.kind == Kind::failed) {
      ++figures_.errors_total["balloon"];
      log_.error("balloon command failed for " + change.vm + ": " + outcome.error, fields);
      remember(done, at, change, "failed: " + outcome.error);
      done.failed[change.vm] = outcome.error;
    } else {
      remember(done, at, change, "applied");
      ++figures_.balloon_actions_total[{change.to_bytes > change.from_bytes ? "grow" : "shrink",
                                        policy::to_string(change.cause)}];
      ++figures_.vm_balloon_commands_total[change.key()];
      log_.notice("balloon " + what, fields);
      if (!done.first_applied_usec) {
        done.first_applied_usec = clock::monotonic_usec();
      }
    }
  }
  not_applied_ = std::move(held_now);
  if (carried_over > 0) {
    ++figures_.errors_total["tick-budget"];
    log_.warning(std::to_string(carried_over) +
                     " balloon command(s) carried over to the next tick: the tick's time budget "
                     "is spent (libvirt is slow)",
                 {{"MEMTIDE_EVENT", "commands-carried-over"}});
  }
  return done;
}

void Actions::release_huge_pages(const Snapshot& snapshot, std::int64_t now_ms) {
  const auto released = huge_pages_->run(snapshot, now_ms);
  if (released.empty()) {
    return;
  }
  const auto before = snapshot.host.thp_partially_mapped_bytes.value_or(0);
  const auto after = huge_pages_->partly_mapped_now();
  const std::string figures = "partly mapped huge pages " + config::format_size(before) + " -> " +
                              (after ? config::format_size(*after) : std::string("unknown"));
  for (const auto& r : released) {
    const std::initializer_list<LogField> fields = {{"MEMTIDE_EVENT", "huge-pages-released"},
                                                    {"MEMTIDE_DOMAIN", r.vm}};
    if (r.error.empty()) {
      ++figures_.huge_page_releases_total["done"];
      log_.info("split the huge pages " + r.vm + "'s balloon left partly mapped (" +
                    config::format_size(r.advised_bytes) + " of guest RAM advised): " + figures,
                fields);
      continue;
    }
    ++figures_.huge_page_releases_total["failed"];
    if (huge_page_error_.failed(r.error)) {
      log_.warning("cannot split the huge pages " + r.vm +
                       "'s balloon left partly mapped; the host gets that memory only at the "
                       "kernel's next reclaim: " +
                       r.error,
                   fields);
    }
  }
}

void Actions::write_ksm(const policy::Plan& plan, const Snapshot& snapshot,
                        const char* only_decide) {
  if (!plan.ksm || !plan.ksm->settings || !snapshot.ksm) {
    return;
  }
  const KsmSettings& wanted = *plan.ksm->settings;
  if (only_decide != nullptr) {
    if (ksm_not_applied_ != wanted) {
      log_.notice(std::string(only_decide) + ", KSM settings not applied: " + plan.ksm->reason,
                  {{"MEMTIDE_EVENT", "ksm-not-applied"}});
      ksm_not_applied_ = wanted;
    }
    return;
  }
  ksm_not_applied_.reset();
  auto writes = ksm_->apply(wanted, *snapshot.ksm);
  if (!writes) {
    ++figures_.errors_total["ksm"];
    if (const std::string message = writes.error().to_string(); ksm_error_.failed(message)) {
      log_.error("KSM settings not applied: " + message, {{"MEMTIDE_EVENT", "ksm-write-failed"}});
    }
    return;
  }
  ksm_error_.recovered();
  for (const auto& w : *writes) {
    ++figures_.ksm_writes_total[w.file];
    log_.notice("KSM " + w.file + ": " + w.from + " -> " + w.to + ": " + plan.ksm->reason,
                {{"MEMTIDE_EVENT", "ksm-write"},
                 {"MEMTIDE_KSM_FILE", w.file},
                 {"MEMTIDE_FROM", w.from},
                 {"MEMTIDE_TO", w.to}});
  }
}

void Actions::restore_on_stop(collectors::HypervisorWorker& hypervisor,
                              const config::Config& config, const Snapshot* last,
                              policy::PolicyState& state) {
  // Fresh figures (the last tick's may predate a VM's start or stop), after any call still in
  // flight, each VM with its own timeout and retries, all within kRestoreBudget. A dry run
  // changed no balloon, so it has none to give back: it only says what a restore would do.
  const auto run = actuators::restore_within(
      hypervisor, config, config.daemon.dry_run, config.libvirt.timeout,
      std::chrono::steady_clock::now() + actuators::kRestoreBudget, [](const std::string& what) {
        // A stop that takes long must not look hung to the watchdog.
        sd_notify(0, ("WATCHDOG=1\nSTATUS=" + what).c_str());
      });
  if (run.collect_error) {
    log_.error("cannot restore balloons on stop: " + run.collect_error->to_string() +
                   "; every guest stays at its current size (run memtidectl restore)",
               {{"MEMTIDE_EVENT", "restore-failed"}});
  }
  using Kind = actuators::RestoreOutcome::Kind;
  for (const auto& o : run.outcomes) {
    const std::initializer_list<LogField> fields = {
        {"MEMTIDE_EVENT", o.kind == Kind::failed ? "restore-failed" : "restore"},
        {"MEMTIDE_DOMAIN", o.vm},
        {"MEMTIDE_DOMAIN_UUID", o.uuid}};
    if (o.kind == Kind::restored) {
      // The restore was a command to the maximum: the policy's memory says so, or after a
      // restart it would take the old, smaller target for one still in flight.
      if (last != nullptr) {
        auto& memory = state.vms[vm_key(o.connection, o.uuid)];
        memory.last_change_ms = last->monotonic_ms;
        memory.last_direction = 1;
        memory.last_target_bytes = o.to_bytes;
        memory.last_from_bytes = o.from_bytes;
      }
      log_.notice("restored on stop: " + actuators::describe(o), fields);
    } else if (o.kind == Kind::failed) {
      log_.error("restore on stop failed: " + actuators::describe(o), fields);
    } else if (o.kind == Kind::dry_run) {
      log_.notice("dry run, not restored on stop: " + actuators::describe(o), fields);
    } else {
      log_.debug("on stop: " + actuators::describe(o), {{"MEMTIDE_EVENT", "restore"}});
    }
  }
}

}  // namespace memtide::daemon
