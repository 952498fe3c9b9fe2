// When the collector asks for a guest's disk read counters (disk_read_schedule.hpp).
#include <gtest/gtest.h>

#include <memtide/core/disk_read_schedule.hpp>

namespace memtide {
namespace {

using namespace std::chrono_literals;

TEST(DiskReadSchedule, SeldomAwayFromShrinksAlwaysNearTheReserveOrAfterAShrink) {
  DiskReadSchedule s;
  EXPECT_TRUE(s.due(0, false)) << "never asked";
  s.asked(0, 60s);
  EXPECT_FALSE(s.due(1'000, false));
  EXPECT_FALSE(s.due(59'000, false));
  EXPECT_TRUE(s.due(59'800, false)) << "a collection a little early counts as on time";
  EXPECT_TRUE(s.due(1'000, true)) << "near the reserve, with every balloon query";

  s.asked(60'000, 60s);
  s.shrunk(61'000, 600s);
  EXPECT_TRUE(s.due(62'000, false));
  s.asked(62'000, 60s);
  EXPECT_TRUE(s.due(63'000, false)) << "followed after the shrink, whatever the interval";
  EXPECT_TRUE(s.due(660'999, false));
  s.asked(660'999, 60s);
  EXPECT_FALSE(s.due(661'000, false)) << "the follow ended";

  s.restart();
  EXPECT_TRUE(s.due(661'500, false)) << "a new QEMU process counts from zero";
}

}  // namespace
}  // namespace memtide
