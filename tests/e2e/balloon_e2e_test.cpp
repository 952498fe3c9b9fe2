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

#include "../support/run_command.hpp"

namespace memtide::collectors {
namespace {

using namespace std::chrono_literals;
constexpr std::uint64_t MiB = 1 << 20;

using memtide::testing::run_command;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

class RealGuest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || access("/usr/sbin/libvirtd", X_OK) != 0 ||
        access("/usr/bin/qemu-system-x86_64", X_OK) != 0) {
      GTEST_SKIP() << "needs root, libvirtd and qemu-system-x86_64";
    }
    image_ = std::string(MEMTIDE_E2E_IMAGE_DIR);
    ASSERT_EQ(run_command(std::string(MEMTIDE_SOURCE_DIR) + "/scripts/build-guest-image " + image_ +
                          " >/dev/null && echo built"),
              "built");
    char tmpl[] = "/tmp/memtide-e2e-XXXXXX";
    dir_ = mkdtemp(tmpl);
    uri_ = run_command(std::string(MEMTIDE_SOURCE_DIR) + "/tests/support/session-libvirtd start " +
                       dir_);
    ASSERT_EQ(uri_.rfind("qemu+unix:///session", 0), 0u) << uri_;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      run_command(std::string(MEMTIDE_SOURCE_DIR) + "/tests/support/session-libvirtd stop " + dir_);
    }
  }

  // Starts a transient guest with `mib` MiB that holds `hog_mib` MiB of its memory.
  void start_guest(const std::string& name, int mib, int hog_mib) {
    const std::string xml = "<domain type='qemu'><name>" + name + "</name><memory unit='MiB'>" +
                            std::to_string(mib) +
                            "</memory><vcpu>1</vcpu>"
                            "<os><type arch='x86_64' machine='pc'>hvm</type><kernel>" +
                            image_ + "/vmlinuz</kernel><initrd>" + image_ +
                            "/initrd.gz</initrd><cmdline>console=ttyS0 "
                            "edd=off quiet memtide.steps=" +
                            std::to_string(hog_mib) +
                            ":1</cmdline></os>"
                            "<devices><serial type='file'><source path='" +
                            dir_ + "/" + name +
                            ".log'/></serial>"
                            "<memballoon model='virtio'/></devices></domain>";
    virConnectPtr conn = virConnectOpen(uri_.c_str());
    ASSERT_NE(conn, nullptr);
    virDomainPtr dom = virDomainCreateXML(conn, xml.c_str(), 0);
    ASSERT_NE(dom, nullptr) << virGetLastErrorMessage();
    virDomainFree(dom);
    virConnectClose(conn);
  }

  // Collects until `pred` holds for guest `name` or `timeout` passes; returns the last sample.
  template <typename Pred>
  std::optional<VmSample> wait_for(LibvirtHypervisor& h, const std::string& name, Pred pred,
                                   std::chrono::seconds timeout) {
    std::optional<VmSample> last;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (auto r = h.collect(now_ms())) {
        for (const auto& vm : *r) {
          if (vm.name == name) {
            last = vm;
            if (pred(vm)) {
              return last;
            }
          }
        }
      }
      std::this_thread::sleep_for(500ms);
    }
    return last;
  }

  std::string image_;
  std::string dir_;
  std::string uri_;
};

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
