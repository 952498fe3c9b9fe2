#include <algorithm>

#include <gtest/gtest.h>

#include <memtide/actuators/restore.hpp>
#include <memtide/config/loader.hpp>

#include "../support/fake_hypervisor.hpp"
#include "../support/sizes.hpp"

namespace memtide::actuators {
namespace {

using namespace std::chrono_literals;
using memtide::test_sizes::GiB;

VmSample vm(const std::string& name, const std::string& uuid, std::uint64_t current,
            std::uint64_t max) {
  VmSample v;
  v.name = name;
  v.uuid = uuid;
  v.current_bytes = current;
  v.max_bytes = max;
  v.stats_status = GuestStatsStatus::ok;
  return v;
}

config::Config config_with_db_class() {
  config::Config c = *config::default_config();
  config::VmClass db;
  db.name = "databases";
  db.match_name = "db-*";
  db.balloon.enabled = false;
  c.classes.insert(c.classes.begin(), db);
  return c;
}

TEST(RestoreBalloons, ManagedVmsGetTheirMaximumOthersAreLeftAlone) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->vms = {vm("web-1", "u1", 1 * GiB, 4 * GiB), vm("web-2", "u2", 2 * GiB, 2 * GiB),
               vm("db-1", "u3", 1 * GiB, 8 * GiB)};
  auto* f = fake.get();
  auto snapshot = fake->vms;
  snapshot.push_back(vm("gone-1", "u4", 1 * GiB, 2 * GiB));  // vanished since the collection
  collectors::HypervisorWorker worker(std::move(fake));
  const auto out = restore_balloons(worker, snapshot, config_with_db_class(), false, 1s);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0].kind, RestoreOutcome::Kind::restored);
  EXPECT_EQ(out[0].to_bytes, 4 * GiB);
  EXPECT_EQ(describe(out[0]), "web-1: 1 GiB -> 4 GiB");
  EXPECT_EQ(out[1].kind, RestoreOutcome::Kind::already_at_maximum);
  EXPECT_EQ(out[2].kind, RestoreOutcome::Kind::unmanaged);
  EXPECT_EQ(describe(out[2]), "db-1: left alone (balloon turned off for class databases)");
  EXPECT_EQ(out[3].kind, RestoreOutcome::Kind::failed);  // and the others still went ahead
  // Only web-1 was touched.
  ASSERT_EQ(f->balloon_calls.size(), 1u);
  EXPECT_EQ(f->balloon_calls[0], std::make_pair(std::string("u1"), 4 * GiB));
}

TEST(RestoreBalloons, DryRunChangesNothing) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->vms = {vm("web-1", "u1", 1 * GiB, 4 * GiB)};
  auto* f = fake.get();
  const auto vms = fake->vms;
  collectors::HypervisorWorker worker(std::move(fake));
  const auto out = restore_balloons(worker, vms, *config::default_config(), true, 1s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, RestoreOutcome::Kind::dry_run);
  EXPECT_EQ(describe(out[0]), "web-1: would go 1 GiB -> 4 GiB");
  EXPECT_TRUE(f->balloon_calls.empty());
}

// A stop that finds libvirt busy with a tick's call (abandoned after its timeout, still running)
// once said "libvirt still busy" and left every guest shrunk. Now it waits for that call.
TEST(RestoreWithin, WaitsForACallInFlight) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->vms = {vm("web-1", "u1", 1 * GiB, 4 * GiB), vm("web-2", "u2", 1 * GiB, 4 * GiB)};
  auto* f = fake.get();
  f->delay = 1500ms;
  collectors::HypervisorWorker worker(std::move(fake));
  EXPECT_FALSE(worker.collect(0, 100ms).ok());  // abandoned: still running for 1.4 s
  f->delay = 0ms;                               // later calls are quick
  const auto run = restore_within(worker, *config::default_config(), false, 1s,
                                  std::chrono::steady_clock::now() + 10s);
  ASSERT_FALSE(run.collect_error.has_value()) << run.collect_error->to_string();
  ASSERT_EQ(run.outcomes.size(), 2u);
  for (const auto& o : run.outcomes) {
    EXPECT_EQ(o.kind, RestoreOutcome::Kind::restored) << describe(o);
  }
}

// One VM's failure is retried on its own; the others are not held up or failed with it.
TEST(RestoreWithin, EachVmIsRetriedOnItsOwn) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->vms = {vm("web-1", "u1", 1 * GiB, 4 * GiB), vm("web-2", "u2", 1 * GiB, 4 * GiB)};
  auto* f = fake.get();
  f->set_balloon_failures = 2;  // web-1's first two tries
  collectors::HypervisorWorker worker(std::move(fake));
  std::vector<std::string> progress;
  const auto run = restore_within(worker, *config::default_config(), false, 1s,
                                  std::chrono::steady_clock::now() + 10s,
                                  [&](const std::string& what) { progress.push_back(what); });
  ASSERT_EQ(run.outcomes.size(), 2u);
  EXPECT_EQ(run.outcomes[0].kind, RestoreOutcome::Kind::restored) << describe(run.outcomes[0]);
  EXPECT_EQ(run.outcomes[1].kind, RestoreOutcome::Kind::restored) << describe(run.outcomes[1]);
  EXPECT_EQ(run.attempts, 4);
  EXPECT_FALSE(progress.empty());
  // A VM that keeps failing is given up after 3 tries and reported, the rest still restored.
  f->vms[0].current_bytes = 1 * GiB;
  f->vms[1].current_bytes = 1 * GiB;
  f->set_balloon_failures = 100;
  const auto bad = restore_within(worker, *config::default_config(), false, 1s,
                                  std::chrono::steady_clock::now() + 10s);
  ASSERT_EQ(bad.outcomes.size(), 2u);
  EXPECT_EQ(bad.outcomes[0].kind, RestoreOutcome::Kind::failed);
  EXPECT_EQ(bad.attempts, 6);
}

// Each VM's outcome is handed on as soon as it is final, before the next VM is tried: memtidectl
// prints it then, not at the end of a restore that can take a minute.
TEST(RestoreWithin, EachOutcomeIsHandedOnBeforeTheNextVm) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->vms = {vm("web-1", "u1", 1 * GiB, 4 * GiB), vm("web-2", "u2", 1 * GiB, 4 * GiB)};
  fake->set_balloon_failures = 1;  // web-1 is retried once
  collectors::HypervisorWorker worker(std::move(fake));
  std::vector<std::string> events;
  const auto run = restore_within(
      worker, *config::default_config(), false, 1s, std::chrono::steady_clock::now() + 10s,
      [&](const std::string& what) { events.push_back(what); },
      [&](const RestoreOutcome& o) { events.push_back("done " + describe(o)); });
  ASSERT_EQ(run.outcomes.size(), 2u);
  const auto at = [&events](const std::string& e) {
    return std::find(events.begin(), events.end(), e) - events.begin();
  };
  const auto web1_done = at("done web-1: 1 GiB -> 4 GiB");
  const auto web2_tried = at("restoring balloons: web-2");
  const auto web2_done = at("done web-2: 1 GiB -> 4 GiB");
  ASSERT_LT(web2_done, static_cast<std::ptrdiff_t>(events.size()));
  EXPECT_LT(web1_done, web2_tried);
  EXPECT_LT(web2_tried, web2_done);
  EXPECT_EQ(std::count_if(events.begin(), events.end(),
                          [](const std::string& e) { return e.rfind("done ", 0) == 0; }),
            2);
}

// However slow libvirt is, the restore ends by its deadline, naming the VMs it could not do.
TEST(RestoreWithin, EndsByTheDeadline) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->vms = {vm("web-1", "u1", 1 * GiB, 4 * GiB), vm("web-2", "u2", 1 * GiB, 4 * GiB),
               vm("web-3", "u3", 1 * GiB, 4 * GiB)};
  auto* f = fake.get();
  collectors::HypervisorWorker worker(std::move(fake));
  const auto vms = worker.collect(0, 1s);
  ASSERT_TRUE(vms.ok());
  f->delay = 5s;
  const auto start = std::chrono::steady_clock::now();
  const auto run = restore_within(worker, *config::default_config(), false, 500ms, start + 2s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2500ms);
  EXPECT_TRUE(run.collect_error.has_value());  // could not even list the VMs in time
}

}  // namespace
}  // namespace memtide::actuators
