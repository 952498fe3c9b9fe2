// Balloon commands within the tick's time budget, against a hypervisor whose calls are slow.
#include <gtest/gtest.h>

#include <memtide/actuators/balloon_commands.hpp>

#include "../support/fake_hypervisor.hpp"
#include "../support/sizes.hpp"

namespace memtide::actuators {
namespace {

using namespace std::chrono_literals;
using memtide::test_sizes::GiB;

std::vector<policy::BalloonChange> six_changes() {
  std::vector<policy::BalloonChange> changes;
  for (int i = 0; i < 6; ++i) {
    policy::BalloonChange c;
    c.vm = "vm-" + std::to_string(i);
    c.uuid = "uuid-" + std::to_string(i);
    c.from_bytes = 4 * GiB;
    c.to_bytes = 3 * GiB;
    c.floor_bytes = GiB;
    changes.push_back(c);
  }
  return changes;
}

std::unique_ptr<testing::FakeHypervisor> six_vms(std::chrono::milliseconds delay) {
  auto h = std::make_unique<testing::FakeHypervisor>();
  for (int i = 0; i < 6; ++i) {
    VmSample vm;
    vm.uuid = "uuid-" + std::to_string(i);
    vm.current_bytes = 4 * GiB;
    vm.max_bytes = 8 * GiB;
    h->vms.push_back(vm);
  }
  h->delay = delay;
  return h;
}

// Six calls of 300 ms each would take 1.8 s; with a 1 s budget the tick sends what fits and
// carries the rest over instead of outlasting its budget (and, with libvirt.timeout near the
// watchdog period, the watchdog).
TEST(BalloonCommands, SlowCallsStopAtTheBudgetAndTheRestIsCarriedOver) {
  auto fake = six_vms(300ms);
  collectors::HypervisorWorker worker(std::move(fake));
  const auto start = std::chrono::steady_clock::now();
  const auto outcomes = send_balloon_commands(worker, six_changes(), 5s, start + 1s);
  const auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, 1300ms);
  ASSERT_EQ(outcomes.size(), 6u);
  std::size_t applied = 0;
  std::size_t timed_out = 0;
  std::size_t carried = 0;
  for (const auto& o : outcomes) {
    if (o.kind == CommandOutcome::Kind::applied) {
      EXPECT_EQ(timed_out + carried, 0u) << "commands are sent in plan order";
      ++applied;
    } else if (o.kind == CommandOutcome::Kind::failed) {
      // At most the call the budget cut short; nothing is sent after it.
      EXPECT_NE(o.error.find("did not answer"), std::string::npos) << o.error;
      EXPECT_EQ(carried, 0u);
      ++timed_out;
    } else {
      ++carried;
    }
  }
  EXPECT_GE(applied, 2u);
  EXPECT_LE(applied, 4u);
  EXPECT_LE(timed_out, 1u);
  EXPECT_GE(carried, 1u);
  EXPECT_EQ(applied + timed_out + carried, 6u);
}

TEST(BalloonCommands, FastCallsAllGoThroughAndFailuresAreReported) {
  auto fake = six_vms(0ms);
  fake->vms.pop_back();  // vm-5 is gone
  collectors::HypervisorWorker worker(std::move(fake));
  const auto outcomes =
      send_balloon_commands(worker, six_changes(), 5s, std::chrono::steady_clock::now() + 5s);
  ASSERT_EQ(outcomes.size(), 6u);
  for (std::size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(outcomes[i].kind, CommandOutcome::Kind::applied) << i;
  }
  EXPECT_EQ(outcomes[5].kind, CommandOutcome::Kind::failed);
  EXPECT_NE(outcomes[5].error.find("gone"), std::string::npos);
}

TEST(BalloonCommands, TickBudgetLeavesTheWatchdogItsPing) {
  EXPECT_EQ(tick_budget(5s, 0us), 5s);
  EXPECT_EQ(tick_budget(100ms, 0us), 1s);  // short intervals still get a second
  EXPECT_EQ(tick_budget(60s, 30s), 10s);   // a third of WatchdogSec=30s
  EXPECT_EQ(tick_budget(5s, 30s), 5s);
}

}  // namespace
}  // namespace memtide::actuators
