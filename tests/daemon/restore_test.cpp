#include "restore.hpp"

#include <gtest/gtest.h>

#include <memtide/config/loader.hpp>

#include "../support/fake_hypervisor.hpp"

namespace memtide::daemon {
namespace {

using namespace std::chrono_literals;
constexpr std::uint64_t GiB = 1ULL << 30;

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
  HypervisorWorker worker(std::move(fake));
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
  HypervisorWorker worker(std::move(fake));
  const auto out = restore_balloons(worker, vms, *config::default_config(), true, 1s);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].kind, RestoreOutcome::Kind::dry_run);
  EXPECT_EQ(describe(out[0]), "web-1: would go 1 GiB -> 4 GiB");
  EXPECT_TRUE(f->balloon_calls.empty());
}

}  // namespace
}  // namespace memtide::daemon
