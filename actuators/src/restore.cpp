#include <algorithm>
#include <cerrno>
#include <thread>

#include <memtide/actuators/restore.hpp>
#include <memtide/config/units.hpp>
#include <memtide/policy/classes.hpp>

namespace memtide::actuators {

namespace {

// Tries for the listing and per VM: a call that failed (timed out, met a busy worker, found
// libvirtd restarting) is tried again once libvirt is idle, 0.5 s later.
constexpr int kRestoreAttempts = 3;
// A call is not started with less time than this before the deadline.
constexpr std::chrono::milliseconds kMinRestoreCallTime{100};

}  // namespace

std::vector<RestoreOutcome> restore_balloons(collectors::HypervisorWorker& hypervisor,
                                             const std::vector<VmSample>& vms,
                                             const config::Config& config, bool dry_run,
                                             std::chrono::milliseconds timeout) {
  std::vector<RestoreOutcome> outcomes;
  for (const auto& vm : vms) {
    // Its maximum; virtio-mem devices at their configured size (restore_size).
    const std::uint64_t target = restore_size(vm);
    RestoreOutcome o{
        vm.name, vm.uuid, vm.connection, RestoreOutcome::Kind::restored, vm.current_bytes,
        target,  ""};
    const bool devices_configured = std::all_of(
        vm.virtio_mem.begin(), vm.virtio_mem.end(),
        [](const VirtioMemDevice& d) { return d.requested_bytes == d.configured_bytes; });
    const auto settings = policy::effective_balloon(vm, config);
    if (!settings.managed) {
      o.kind = RestoreOutcome::Kind::unmanaged;
      o.detail = settings.unmanaged_reason;
    } else if (vm.current_bytes >= target && devices_configured) {
      o.kind = RestoreOutcome::Kind::already_at_maximum;
    } else if (dry_run) {
      o.kind = RestoreOutcome::Kind::dry_run;
    } else if (auto set =
                   hypervisor.set_memory_size(vm.key(), target, settings.floor_bytes, timeout)) {
      o.to_bytes = *set;
    } else {
      o.kind = RestoreOutcome::Kind::failed;
      o.detail = set.error().message;
    }
    outcomes.push_back(std::move(o));
  }
  return outcomes;
}

RestoreRun restore_within(collectors::HypervisorWorker& hypervisor, const config::Config& config,
                          bool dry_run, std::chrono::milliseconds call_timeout,
                          std::chrono::steady_clock::time_point deadline,
                          const std::function<void(const std::string&)>& progress,
                          const std::function<void(const RestoreOutcome&)>& done) {
  using Clock = std::chrono::steady_clock;
  using std::chrono::milliseconds;
  auto left = [&] { return std::chrono::duration_cast<milliseconds>(deadline - Clock::now()); };
  auto note = [&](const std::string& what) {
    if (progress) {
      progress(what);
    }
  };
  // Between attempts: let a call still in flight finish, and do not spin on a dead libvirt.
  auto pause = [&] {
    hypervisor.wait_idle(deadline);
    std::this_thread::sleep_until(std::min(deadline, Clock::now() + milliseconds(500)));
  };
  RestoreRun run;
  note("restoring balloons: waiting for libvirt");
  hypervisor.wait_idle(deadline);
  std::vector<VmSample> vms;
  for (int attempt = 1;; ++attempt) {
    if (left() < kMinRestoreCallTime) {
      run.collect_error = Error{"", 0, 0,
                                "cannot list the VMs before the deadline" +
                                    (run.collect_error ? ": " + run.collect_error->message : "")};
      return run;
    }
    auto listed = hypervisor.collect(0, std::min(call_timeout, left()));
    if (listed) {
      vms = std::move(*listed);
      break;
    }
    run.collect_error = listed.error();
    if (attempt >= kRestoreAttempts) {
      return run;
    }
    note("restoring balloons: listing VMs failed (" + listed.error().message + "), retrying");
    pause();
  }
  run.collect_error.reset();
  for (const auto& vm : vms) {
    std::vector<VmSample> one{vm};
    RestoreOutcome o;
    for (int attempt = 1;; ++attempt) {
      if (left() < kMinRestoreCallTime) {
        o.kind = RestoreOutcome::Kind::failed;
        o.detail = "stop deadline reached" + (o.detail.empty() ? "" : " after: " + o.detail);
        break;
      }
      note("restoring balloons: " + vm.name);
      o = restore_balloons(hypervisor, one, config, dry_run, std::min(call_timeout, left()))[0];
      run.attempts +=
          o.kind == RestoreOutcome::Kind::restored || o.kind == RestoreOutcome::Kind::failed ? 1
                                                                                             : 0;
      if (o.kind != RestoreOutcome::Kind::failed || attempt >= kRestoreAttempts) {
        break;
      }
      pause();
    }
    if (done) {
      done(o);
    }
    run.outcomes.push_back(std::move(o));
  }
  return run;
}

std::string describe(const RestoreOutcome& o) {
  using config::format_size;
  switch (o.kind) {
    case RestoreOutcome::Kind::restored:
      return o.vm + ": " + format_size(o.from_bytes) + " -> " + format_size(o.to_bytes);
    case RestoreOutcome::Kind::dry_run:
      return o.vm + ": would go " + format_size(o.from_bytes) + " -> " + format_size(o.to_bytes);
    case RestoreOutcome::Kind::already_at_maximum:
      return o.vm + ": already at its maximum (" + format_size(o.to_bytes) + ")";
    case RestoreOutcome::Kind::unmanaged:
      return o.vm + ": left alone (" + o.detail + ")";
    case RestoreOutcome::Kind::failed:
      return o.vm + ": FAILED: " + o.detail;
  }
  return o.vm;
}

}  // namespace memtide::actuators
