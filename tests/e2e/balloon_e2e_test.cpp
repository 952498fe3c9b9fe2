// The hypervisor layer against real QEMU guests (TCG) under a private session libvirtd: guest
// statistics arrive after memtide sets the statistics period, the QEMU process is found, and a
// balloon command really changes the memory the guest sees. Needs root, libvirtd and QEMU;
// skipped otherwise. The guest image comes from scripts/build-guest-image.
#include <array>
#include <cstdio>
#include <ctime>
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
  // A 64 MiB disk whose first 16 MiB the guest reads every 2 s (from the disk the first time).
  ASSERT_EQ(run_command("truncate -s 64M " + dir_ + "/disk.raw && chmod 644 " + dir_ +
                        "/disk.raw && echo ok"),
            "ok");
  start_guest("e2e-balloon", 512, "64:1", "random", "",
              "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='" +
                  dir_ + "/disk.raw'/><target dev='vda' bus='virtio'/><readonly/></disk>",
              "memtide.reread=16 memtide.reread_pause=2");
  LibvirtOptions o;
  o.uri = uri_;
  o.stats_period_s = 1;
  o.page_size_bytes = 4096;
  o.disk_reads_interval = 4s;
  o.disk_reads_follow = 8s;
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
  // Its disk reads, asked with the balloon statistics: at least the first pass's 16 MiB.
  vm = wait_for(
      h, "e2e-balloon",
      [](const VmSample& v) { return v.disk_read_bytes_total.value_or(0) >= 16 * MiB; }, 60s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_GE(vm->disk_read_bytes_total.value_or(0), 16 * MiB) << file("e2e-balloon.log");
  EXPECT_GT(vm->disk_reads_at_ms, 0);

  // Away from shrinks, with the host far from its reserve, the disks are asked for once every
  // disk_reads_interval (4 s), while the balloon statistics come every second; their figures
  // stand in between. Near the reserve (where shrinks come from) they come with every query.
  const auto queries = [&h] {
    return std::array<std::uint64_t, 2>{h.balloon_queries_total(), h.disk_queries_total()};
  };
  ProcessReadHints far;
  far.host_near_reserve = false;
  // Collects every 500 ms for `n` collections; false if one failed or lacked the disk figures.
  const auto collect_times = [&](int n, const ProcessReadHints& hints) {
    for (int i = 0; i < n; ++i) {
      std::this_thread::sleep_for(500ms);
      const auto r = h.collect(now_ms(), hints);
      if (!r || r->size() != 1 || !r->front().disk_read_bytes_total) {
        return false;
      }
    }
    return true;
  };
  const auto quiet_from = queries();
  ASSERT_TRUE(collect_times(16, far));  // 8 s
  const auto quiet_to = queries();
  EXPECT_GE(quiet_to[0] - quiet_from[0], 5u);
  EXPECT_GE(quiet_to[1] - quiet_from[1], 1u);
  EXPECT_LE(quiet_to[1] - quiet_from[1], 3u);
  ASSERT_TRUE(collect_times(6, ProcessReadHints{}));  // 3 s near the reserve
  const auto near_to = queries();
  EXPECT_GE(near_to[0] - quiet_to[0], 2u);
  EXPECT_EQ(near_to[1] - quiet_to[1], near_to[0] - quiet_to[0]);

  // Balloon: ask for 200 MiB with a 300 MiB floor; the floor wins, and the guest's MemTotal
  // shrinks by about the 212 MiB taken.
  const auto before = *vm->guest.total_bytes;
  const auto set = h.set_memory_size(vm->uuid, 200 * MiB, 300 * MiB);
  ASSERT_TRUE(set.ok()) << set.error().to_string();
  EXPECT_EQ(*set, 300 * MiB);
  // After a shrink the disks come with every balloon query, for disk_reads_follow (8 s): the
  // policy looks for re-reads of what the shrink evicted.
  const auto follow_from = queries();
  ASSERT_TRUE(collect_times(8, far));  // 4 s
  const auto follow_to = queries();
  EXPECT_GE(follow_to[0] - follow_from[0], 3u);
  EXPECT_EQ(follow_to[1] - follow_from[1], follow_to[0] - follow_from[0]);
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
  ASSERT_TRUE(h.set_memory_size(vm->uuid, 300 * MiB, 0).ok());
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

std::uint64_t plugged(const VmSample& vm) {
  return vm.virtio_mem.empty() ? 0 : vm.virtio_mem[0].plugged_bytes;
}

// A guest with 512 MiB of base memory and a 1 GiB virtio-mem device (2 MiB blocks, 256 MiB
// plugged at boot): memtide sees the device, resizes the guest through it in whole blocks with
// the balloon taking the part of a block, the guest's own memory size follows, and a restore
// brings the device back to its configured size.
TEST_F(RealGuest, VirtioMemResizesTheGuestInWholeBlocks) {
  start_virtio_mem_guest("e2e-vmem", 512, 1024, 256, "40:3600",
                         "<memballoon model='virtio'><stats period='1'/></memballoon>");
  LibvirtOptions o;
  o.uri = uri_;
  LibvirtHypervisor h(o);
  auto vm = wait_for(
      h, "e2e-vmem",
      [](const VmSample& v) {
        return v.stats_status == GuestStatsStatus::ok && plugged(v) == 256 * MiB;
      },
      90s);
  ASSERT_TRUE(vm.has_value());
  ASSERT_EQ(vm->virtio_mem.size(), 1u);
  const auto& device = vm->virtio_mem[0];
  EXPECT_EQ(device.alias, "virtiomem0");
  EXPECT_EQ(device.node, 0u);
  EXPECT_EQ(device.block_bytes, 2 * MiB);
  EXPECT_EQ(device.max_bytes, 1024 * MiB);
  EXPECT_EQ(device.requested_bytes, 256 * MiB);
  EXPECT_EQ(device.configured_bytes, 256 * MiB);
  EXPECT_EQ(vm->max_bytes, 1536 * MiB);
  EXPECT_EQ(vm->current_bytes, 768 * MiB);
  EXPECT_EQ(balloon_ceiling(*vm), 512 * MiB);
  const auto total_at_boot = vm->guest.total_bytes.value_or(0);
  const auto events_at_boot = h.domain_events_total();

  // Grow to 1001 MiB: 489 MiB above the base memory is 245 blocks (490 MiB) plugged, and the
  // balloon takes back the 1 MiB the rounding added.
  auto set = h.set_memory_size(vm->uuid, 1001 * MiB, 0);
  ASSERT_TRUE(set.ok()) << set.error().to_string();
  EXPECT_EQ(*set, 1001 * MiB);
  vm = wait_for(
      h, "e2e-vmem",
      [&](const VmSample& v) {
        return plugged(v) == 490 * MiB && v.current_bytes == 1001 * MiB &&
               v.guest.total_bytes.value_or(0) > total_at_boot + 200 * MiB;
      },
      90s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(plugged(*vm), 490 * MiB);
  EXPECT_EQ(vm->virtio_mem[0].requested_bytes, 490 * MiB);
  EXPECT_EQ(vm->current_bytes, 1001 * MiB);
  EXPECT_GT(vm->guest.total_bytes.value_or(0), total_at_boot + 200 * MiB);  // the guest sees it
  EXPECT_GT(h.domain_events_total(), events_at_boot);  // plugged sizes arrive as events

  // Shrink to 600 MiB: the guest unplugs down to 88 MiB, and its MemTotal falls with it.
  set = h.set_memory_size(vm->uuid, 600 * MiB, 0);
  ASSERT_TRUE(set.ok()) << set.error().to_string();
  EXPECT_EQ(*set, 600 * MiB);
  vm = wait_for(
      h, "e2e-vmem",
      [&](const VmSample& v) {
        return plugged(v) == 88 * MiB && v.current_bytes == 600 * MiB &&
               v.guest.total_bytes.value_or(UINT64_MAX) < total_at_boot - 100 * MiB;
      },
      90s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(plugged(*vm), 88 * MiB);
  EXPECT_EQ(vm->current_bytes, 600 * MiB);
  EXPECT_LT(vm->guest.total_bytes.value_or(UINT64_MAX), total_at_boot - 100 * MiB)
      << "statistics " << to_string(vm->stats_status) << ", last update at "
      << vm->guest.last_update_unix_s.value_or(0) << " (now " << std::time(nullptr) << ")";

  // A floor above the target wins across both mechanisms.
  set = h.set_memory_size(vm->uuid, 100 * MiB, 700 * MiB);
  ASSERT_TRUE(set.ok()) << set.error().to_string();
  EXPECT_EQ(*set, 700 * MiB);
  vm = wait_for(
      h, "e2e-vmem", [&](const VmSample& v) { return v.current_bytes == 700 * MiB; }, 90s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(vm->virtio_mem[0].requested_bytes, 188 * MiB);

  // `memtidectl restore`: the balloon to its ceiling, the device to its configured 256 MiB.
  const std::string out =
      run_command(std::string(MEMTIDECTL_BINARY) + " restore --connect '" + uri_ + "'");
  EXPECT_EQ(out, "e2e-vmem: 700 MiB -> 768 MiB") << out;
  vm = wait_for(
      h, "e2e-vmem",
      [&](const VmSample& v) { return plugged(v) == 256 * MiB && v.current_bytes == 768 * MiB; },
      90s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(vm->virtio_mem[0].requested_bytes, 256 * MiB);
  EXPECT_EQ(vm->current_bytes, 768 * MiB);
}

// A guest that uses the memory it was asked to unplug cannot give it back (there is no swap
// to move it to): the device stays above its requested size, and memtide reports it so.
TEST_F(RealGuest, VirtioMemAGuestThatCannotUnplugKeepsItsMemory) {
  // 256 MiB base and 512 MiB plugged; the guest holds 560 MiB in tmpfs.
  start_virtio_mem_guest("e2e-vmem-full", 256, 1024, 512, "560:3600",
                         "<memballoon model='virtio'><stats period='1'/></memballoon>");
  LibvirtOptions o;
  o.uri = uri_;
  LibvirtHypervisor h(o);
  auto vm = wait_for(
      h, "e2e-vmem-full",
      [](const VmSample& v) {
        return v.stats_status == GuestStatsStatus::ok && plugged(v) == 512 * MiB &&
               v.guest.usable_bytes.value_or(UINT64_MAX) < 200 * MiB;  // the hog is in place
      },
      120s);
  ASSERT_TRUE(vm.has_value());
  ASSERT_EQ(plugged(*vm), 512 * MiB);
  // Down to the base memory: every block is asked for.
  const auto set = h.set_memory_size(vm->uuid, 256 * MiB, 0);
  ASSERT_TRUE(set.ok()) << set.error().to_string();
  // The guest unplugs what it can within 20 s, but not all of it.
  std::this_thread::sleep_for(20s);
  vm = wait_for(
      h, "e2e-vmem-full", [](const VmSample& v) { return v.state == VmState::running; }, 10s);
  ASSERT_TRUE(vm.has_value());
  EXPECT_EQ(vm->virtio_mem[0].requested_bytes, 0u);
  EXPECT_GT(plugged(*vm), 256 * MiB) << "the guest unplugged memory its hog holds";
  EXPECT_GT(vm->current_bytes, 256 * MiB + 256 * MiB);
}

}  // namespace
}  // namespace memtide::collectors
