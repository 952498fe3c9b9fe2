// The hypervisor layer against real QEMU guests (TCG) under a private session libvirtd: guest
// statistics arrive after memtide sets the statistics period, the QEMU process is found, and a
// balloon command really changes the memory the guest sees. Needs root, libvirtd and QEMU;
// skipped otherwise. The guest image comes from scripts/build-guest-image.
#include <array>
#include <cstdio>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/collectors/libvirt_hypervisor.hpp>

#include "real_guest.hpp"

namespace memtide::collectors {
namespace {

TEST_F(RealGuest, StatisticsProcessAndBalloonWork) {
  start_guest("e2e-balloon", 512, 64);
  LibvirtOptions o;
  o.uri = uri_;
  o.stats_period_s = 1;
  o.page_size_bytes = 4096;
  LibvirtHypervisor h(o);

  // Statistics: disabled at first (no period in the XML); memtide sets the period and fresh
  // figures follow once the guest's balloon driver is loaded.
  auto vm = wait_for(
      h, "e2e-balloon",
      [](const VmSample& v) {
        return v.stats_status == GuestStatsStatus::ok && v.guest.usable_bytes;
      },
      90s);
  ASSERT_TRUE(vm.has_value());
  ASSERT_EQ(vm->stats_status, GuestStatsStatus::ok) << to_string(vm->stats_status);
  EXPECT_EQ(vm->stats_period_s, 1u);
  EXPECT_EQ(vm->max_bytes, 512 * MiB);
  ASSERT_TRUE(vm->guest.total_bytes.has_value());
  EXPECT_GT(*vm->guest.total_bytes, 400 * MiB);  // guest MemTotal: 512 MiB less the kernel's
  EXPECT_LE(*vm->guest.total_bytes, 512 * MiB);
  // The host-side view: QEMU's process found by UUID, guest RAM resident.
  ASSERT_TRUE(vm->process.has_value());
  EXPECT_GT(vm->process->pid, 0);
  EXPECT_GT(vm->process->rss_bytes.value_or(0), 64 * MiB);

  // Balloon: ask for 200 MiB with a 300 MiB floor; the floor wins, and the guest's MemTotal
  // shrinks by about the 212 MiB taken.
  const auto before = *vm->guest.total_bytes;
  const auto set = h.set_balloon(vm->uuid, 200 * MiB, 300 * MiB);
  ASSERT_TRUE(set.ok()) << set.error().to_string();
  EXPECT_EQ(*set, 300 * MiB);
  vm = wait_for(
      h, "e2e-balloon",
      [&](const VmSample& v) {
        // libvirt updates balloon.current from QEMU's (rate-limited) balloon events, so it may
        // trail the guest's own MemTotal: wait for both.
        return v.guest.total_bytes.value_or(before) < before - 150 * MiB &&
               v.current_bytes == 300 * MiB;
      },
      90s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_LT(vm->guest.total_bytes.value_or(before), before - 150 * MiB);
  EXPECT_EQ(vm->current_bytes, 300 * MiB);

  // `memtidectl restore` gives it back its maximum, with no daemon running.
  const std::string restored = run_command(std::string(MEMTIDECTL_BINARY) + " restore --connect '" +
                                           uri_ + "' --config /nonexistent-is-an-error 2>&1; true");
  EXPECT_NE(restored.find("cannot open"), std::string::npos) << restored;  // explicit file
  const std::string out =
      run_command(std::string(MEMTIDECTL_BINARY) + " restore --connect '" + uri_ + "'");
  EXPECT_EQ(out, "e2e-balloon: 300 MiB -> 512 MiB") << out;
  vm = wait_for(
      h, "e2e-balloon",
      [&](const VmSample& v) {
        return v.guest.total_bytes.value_or(0) + 16 * MiB >= before && v.current_bytes == 512 * MiB;
      },
      90s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_GE(vm->guest.total_bytes.value_or(0) + 16 * MiB, before);
  EXPECT_EQ(vm->current_bytes, 512 * MiB);

  // memtided with daemon.on_stop: restore (the default) does the same when it stops.
  ASSERT_TRUE(h.set_balloon(vm->uuid, 300 * MiB, 0).ok());
  vm = wait_for(
      h, "e2e-balloon", [&](const VmSample& v) { return v.current_bytes == 300 * MiB; }, 90s);
  ASSERT_TRUE(vm.has_value());
  ASSERT_EQ(vm->current_bytes, 300 * MiB);
  std::ofstream(dir_ + "/memtide.yaml")
      << "daemon: {interval: 500ms}\nhost: {swap_forecast: {window: 10s}}\n";
  const pid_t daemon = fork();
  if (daemon == 0) {
    execl(MEMTIDED_BINARY, MEMTIDED_BINARY, "--config", (dir_ + "/memtide.yaml").c_str(),
          "--connect", uri_.c_str(), "--log-target", "stderr", nullptr);
    _exit(127);
  }
  std::this_thread::sleep_for(2s);
  kill(daemon, SIGTERM);
  int status = 0;
  waitpid(daemon, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  vm = wait_for(
      h, "e2e-balloon", [&](const VmSample& v) { return v.current_bytes == 512 * MiB; }, 90s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(vm->current_bytes, 512 * MiB);
}

}  // namespace
}  // namespace memtide::collectors
