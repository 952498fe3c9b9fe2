// LibvirtHypervisor against a real, private session-mode libvirtd that is killed and restarted
// while memtide is connected (tests/support/session-libvirtd). Needs root (to run libvirtd as
// an unprivileged user); skipped otherwise.
#include <array>
#include <cstdio>
#include <thread>

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <memtide/collectors/libvirt_hypervisor.hpp>

#include "../support/run_command.hpp"

namespace memtide::collectors {
namespace {

using namespace std::chrono_literals;

const std::string kHelper = std::string(MEMTIDE_TESTS) + "/support/session-libvirtd";

using memtide::testing::run_command;

class SessionLibvirtd : public ::testing::Test {
 protected:
  void SetUp() override {
    if (geteuid() != 0 || access("/usr/sbin/libvirtd", X_OK) != 0) {
      GTEST_SKIP() << "needs root and /usr/sbin/libvirtd";
    }
    char tmpl[] = "/tmp/memtide-libvirtd-XXXXXX";
    dir_ = mkdtemp(tmpl);
    uri_ = run_command(kHelper + " start " + dir_);
    ASSERT_EQ(uri_.rfind("qemu+unix:///session", 0), 0u) << uri_;
  }
  void TearDown() override {
    if (!dir_.empty()) {
      run_command(kHelper + " stop " + dir_);
    }
  }
  std::string dir_;
  std::string uri_;
};

TEST_F(SessionLibvirtd, ReconnectsAfterLibvirtdIsKilledAndRestarted) {
  LibvirtOptions o;
  o.uri = uri_;
  o.reconnect_min_backoff = 200ms;
  o.reconnect_max_backoff = 1s;
  o.keepalive_interval = 1s;
  o.keepalive_count = 2;
  LibvirtHypervisor h(o);
  std::int64_t now = 0;
  auto r = h.collect(now);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(h.connects_total(), 1u);

  run_command(kHelper + " kill " + dir_);
  // The next calls fail (the socket is closed) and never hang.
  bool failed = false;
  for (int i = 0; i < 20 && !failed; ++i) {
    now += 100;
    failed = !h.collect(now).ok();
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(failed) << "collect kept succeeding with libvirtd dead";
  EXPECT_FALSE(h.connected());

  ASSERT_EQ(run_command(kHelper + " start " + dir_), uri_);
  bool recovered = false;
  for (int i = 0; i < 100 && !recovered; ++i) {
    now += 100;
    recovered = h.collect(now).ok();
    std::this_thread::sleep_for(100ms);
  }
  ASSERT_TRUE(recovered) << "no reconnect within 10 s";
  EXPECT_EQ(h.connects_total(), 2u);

  // Lifecycle events were registered again on the new connection: defining a domain through
  // another connection must reach memtide.
  const auto events_before = h.domain_events_total();
  virConnectPtr peer = virConnectOpen(uri_.c_str());
  ASSERT_NE(peer, nullptr);
  virDomainPtr dom = virDomainDefineXML(
      peer,
      "<domain type='qemu'><name>memtide-event-probe</name><memory unit='MiB'>64</memory>"
      "<os><type arch='x86_64' machine='pc'>hvm</type></os></domain>");
  if (dom == nullptr) {
    virConnectClose(peer);
    GTEST_SKIP() << "session libvirtd cannot define QEMU domains here: "
                 << virGetLastErrorMessage();
  }
  for (int i = 0; i < 100 && h.domain_events_total() == events_before; ++i) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(h.domain_events_total(), events_before);
  virDomainUndefine(dom);
  virDomainFree(dom);
  virConnectClose(peer);
}

}  // namespace
}  // namespace memtide::collectors
