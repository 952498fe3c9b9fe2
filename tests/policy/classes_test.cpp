#include <gtest/gtest.h>

#include <memtide/policy/classes.hpp>

#include "../support/sizes.hpp"

namespace memtide::policy {
namespace {

using memtide::test_sizes::GiB;

config::Config two_classes() {
  config::Config c;
  config::VmClass db;
  db.name = "databases";
  db.match_name = "db-*";
  db.balloon.enabled = false;
  config::VmClass tagged;
  tagged.name = "batch";
  tagged.match_class = "batch";
  tagged.balloon.floor = SizeOrRatio{0.10};
  tagged.balloon.shares = 100;
  config::VmClass rest;
  rest.name = "default";
  rest.match_name = "*";
  rest.balloon.floor = SizeOrRatio{GiB};
  rest.balloon.max_step = SizeOrRatio{0.05};
  c.classes = {db, tagged, rest};
  return c;
}

VmSample vm(const std::string& name, std::uint64_t max = 4 * GiB) {
  VmSample v;
  v.name = name;
  v.max_bytes = max;
  v.current_bytes = max;
  v.stats_status = GuestStatsStatus::ok;
  return v;
}

TEST(MatchClass, FirstMatchWinsByGlobOrMetadataClass) {
  const auto c = two_classes();
  EXPECT_EQ(match_class(vm("db-7"), c)->name, "databases");
  EXPECT_EQ(match_class(vm("web-1"), c)->name, "default");
  auto tagged = vm("web-2");
  tagged.metadata.class_name = "batch";
  EXPECT_EQ(match_class(tagged, c)->name, "batch");
  auto tagged_db = vm("db-1");  // the glob class comes first
  tagged_db.metadata.class_name = "batch";
  EXPECT_EQ(match_class(tagged_db, c)->name, "databases");
}

TEST(MatchClass, NoMatch) {
  config::Config c;
  config::VmClass only;
  only.name = "web";
  only.match_name = "web-*";
  only.match_class = "frontend";  // both must fit
  c.classes = {only};
  EXPECT_EQ(match_class(vm("web-1"), c), nullptr);
  auto v = vm("web-1");
  v.metadata.class_name = "frontend";
  EXPECT_EQ(match_class(v, c)->name, "web");
  EXPECT_EQ(match_class(vm("db-1"), c), nullptr);
}

TEST(EffectiveBalloon, ClassValuesResolvedAgainstTheMaximum) {
  const auto s = effective_balloon(vm("web-1", 4 * GiB), two_classes());
  EXPECT_TRUE(s.managed);
  EXPECT_EQ(s.class_name, "default");
  EXPECT_EQ(s.floor_bytes, GiB);
  EXPECT_EQ(s.max_step_bytes, 4 * GiB / 20);
  EXPECT_EQ(s.shares, 1000u);
  EXPECT_EQ(s.max_bytes, 4 * GiB);
}

TEST(EffectiveBalloon, MetadataOverridesTheClass) {
  auto v = vm("web-1", 4 * GiB);
  v.metadata.floor = SizeOrRatio{0.5};
  v.metadata.shares = 7;
  const auto s = effective_balloon(v, two_classes());
  EXPECT_EQ(s.floor_bytes, 2 * GiB);
  EXPECT_EQ(s.shares, 7u);
  v.metadata.balloon_enabled = false;
  const auto off = effective_balloon(v, two_classes());
  EXPECT_FALSE(off.managed);
  EXPECT_EQ(off.unmanaged_reason, "balloon turned off in domain metadata");
  auto db = vm("db-1");
  db.metadata.balloon_enabled = true;  // metadata can turn a class's balloon on
  EXPECT_TRUE(effective_balloon(db, two_classes()).managed);
}

TEST(EffectiveBalloon, FloorNeverAboveTheMaximum) {
  auto v = vm("web-1", GiB / 2);  // class floor 1 GiB > maximum 512 MiB
  EXPECT_EQ(effective_balloon(v, two_classes()).floor_bytes, GiB / 2);
}

TEST(EffectiveBalloon, UnmanagedCases) {
  EXPECT_EQ(effective_balloon(vm("db-1"), two_classes()).unmanaged_reason,
            "balloon turned off for class databases");
  auto nb = vm("web-1");
  nb.stats_status = GuestStatsStatus::no_balloon;
  EXPECT_EQ(effective_balloon(nb, two_classes()).unmanaged_reason, "no balloon device");
  config::Config none;
  none.classes.clear();
  EXPECT_EQ(effective_balloon(vm("x"), none).unmanaged_reason, "no class matches");
}

}  // namespace
}  // namespace memtide::policy
