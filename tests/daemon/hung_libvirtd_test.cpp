// A libvirtd that stops answering (SIGSTOP) must not hold memtide's collection beyond the
// configured timeout, and collection must resume once it answers again (SIGCONT). Runs against
// a private session libvirtd; needs root, skipped otherwise.
#include <array>
#include <cstdio>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <memtide/collectors/hypervisor_worker.hpp>
#include <memtide/collectors/libvirt_hypervisor.hpp>

#include "../support/run_command.hpp"

namespace memtide::collectors {
namespace {

using namespace std::chrono_literals;
const std::string kHelper = std::string(MEMTIDE_TESTS) + "/support/session-libvirtd";

using memtide::testing::run_command;

TEST(HungLibvirtd, TickIsBoundedAndCollectionResumes) {
  if (geteuid() != 0 || access("/usr/sbin/libvirtd", X_OK) != 0) {
    GTEST_SKIP() << "needs root and /usr/sbin/libvirtd";
  }
  char tmpl[] = "/tmp/memtide-hung-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string uri = run_command(kHelper + " start " + dir);
  ASSERT_EQ(uri.rfind("qemu+unix:///session", 0), 0u) << uri;
  int pid = 0;
  std::ifstream(dir + "/run/libvirt/libvirtd.pid") >> pid;
  ASSERT_GT(pid, 0);

  collectors::LibvirtOptions o;
  o.uri = uri;
  o.keepalive_interval = 1s;
  o.keepalive_count = 3;
  {
    HypervisorWorker worker(std::make_unique<collectors::LibvirtHypervisor>(o));
    std::int64_t now = 0;
    ASSERT_TRUE(worker.collect(now, 5s).ok());

    kill(pid, SIGSTOP);
    const auto start = std::chrono::steady_clock::now();
    const auto hung = worker.collect(now += 1000, 500ms);
    const auto waited = std::chrono::steady_clock::now() - start;
    EXPECT_FALSE(hung.ok());
    EXPECT_LT(waited, 1500ms) << "the tick waited for a stopped libvirtd";
    // Later ticks are not held either, whether the call is still stuck or the keepalive has
    // already declared the connection dead.
    const auto start2 = std::chrono::steady_clock::now();
    EXPECT_FALSE(worker.collect(now += 1000, 500ms).ok());
    EXPECT_LT(std::chrono::steady_clock::now() - start2, 1500ms);

    kill(pid, SIGCONT);
    bool resumed = false;
    for (int i = 0; i < 60 && !resumed; ++i) {
      resumed = worker.collect(now += 1000, 2s).ok();
      std::this_thread::sleep_for(250ms);
    }
    EXPECT_TRUE(resumed) << "collection did not resume within 15 s of SIGCONT";
  }
  kill(pid, SIGCONT);
  run_command(kHelper + " stop " + dir);
}

}  // namespace
}  // namespace memtide::collectors
