// memtidectl history's chart: each cell from the figures of its time.
#include "history_chart.hpp"

#include <algorithm>

#include <gtest/gtest.h>

namespace memtide::ctl {
namespace {

constexpr std::uint64_t GiB = 1ULL << 30;
constexpr std::int64_t kFrom = 1'800'000'000'000;
using EntryKind = report::HistoryEntry::Kind;

report::HistoryEntry sample(std::int64_t t_ms, std::uint64_t balloon, std::uint64_t usable) {
  report::HistoryEntry e;
  e.kind = EntryKind::sample;
  e.unix_ms = kFrom + t_ms;
  e.vm = "web-1";
  e.balloon_bytes = balloon;
  e.usable_bytes = usable;
  e.floor_bytes = 5 * GiB;
  e.max_bytes = 8 * GiB;
  return e;
}

// The chart's cell at `column` of the row whose memory levels hold `level_gib` (8 rows of 1 GiB
// from 8 GiB down: row 0 is [7, 8) GiB).
char cell(const std::vector<std::string>& lines, std::size_t column, double level_gib) {
  const auto row = static_cast<std::size_t>(7 - static_cast<int>(level_gib));
  const std::string& line = lines.at(row);
  const std::size_t bar = line.find('|') + 1;
  return bar + column < line.size() ? line[bar + column] : ' ';
}

TEST(HistoryChart, CellsShowInUseUsableAndFloorAndMarksShowCommands) {
  // Ten columns of 10 s (column c ends at (c + 1) x 10 s), eight rows of 1 GiB: 4 GiB with 2 GiB
  // usable from 15 s (column 1), shrunk to 3 GiB at 55 s (column 5), an alert at 75 s (column 7).
  std::vector<report::HistoryEntry> owned = {sample(15'000, 4 * GiB, 2 * GiB)};
  report::HistoryEntry shrink = sample(55'000, 4 * GiB, 2 * GiB);
  shrink.kind = EntryKind::command;
  shrink.target_bytes = 3 * GiB;
  shrink.result = "applied";
  owned.push_back(shrink);
  report::HistoryEntry alert;
  alert.kind = EntryKind::alert_fired;
  alert.unix_ms = kFrom + 75'000;
  alert.vm = "web-1";
  owned.push_back(alert);
  std::vector<const report::HistoryEntry*> entries;
  for (const auto& e : owned) {
    entries.push_back(&e);
  }
  const auto lines = vm_chart(entries, {kFrom, kFrom + 100'000, 10, 8, true});
  ASSERT_EQ(lines.size(), 10u);  // 8 rows, the marks, the time axis
  EXPECT_EQ(lines[0].substr(0, 7), "8 GiB |");
  // Before the first entry: blank.
  EXPECT_EQ(cell(lines, 0, 0.5), ' ');
  // In use (2 GiB) below, usable above it up to the balloon (4 GiB), the floor (5 GiB) above.
  EXPECT_EQ(cell(lines, 1, 0.5), '#');
  EXPECT_EQ(cell(lines, 1, 1.5), '#');
  EXPECT_EQ(cell(lines, 1, 2.5), ':');
  EXPECT_EQ(cell(lines, 1, 3.5), ':');
  EXPECT_EQ(cell(lines, 1, 4.5), ' ');
  EXPECT_EQ(cell(lines, 1, 5.5), '-');
  // After the shrink: 3 GiB, in use unchanged.
  EXPECT_EQ(cell(lines, 5, 1.5), '#');
  EXPECT_EQ(cell(lines, 5, 2.5), ':');
  EXPECT_EQ(cell(lines, 5, 3.5), ' ');
  const std::string& marks = lines[8];
  const std::size_t bar = lines[0].find('|') + 1;
  EXPECT_EQ(marks.substr(bar), "     v !");          // the shrink at 55 s, the alert at 75 s
  EXPECT_NE(lines[9].find("Z"), std::string::npos);  // UTC labels
}

// A target the balloon has not reached (the guest refused part of a shrink) is marked T in its
// row; one the balloon reached is not.
TEST(HistoryChart, ATargetNotReachedIsMarked) {
  report::HistoryEntry refused = sample(5'000, 4 * GiB, 2 * GiB);
  refused.target_bytes = 1 * GiB + GiB / 2;
  report::HistoryEntry reached = sample(55'000, 4 * GiB, 2 * GiB);
  reached.target_bytes = 4 * GiB;
  const auto lines = vm_chart({&refused, &reached}, {kFrom, kFrom + 100'000, 10, 8, true});
  EXPECT_EQ(cell(lines, 0, 1.5), 'T');
  EXPECT_EQ(cell(lines, 0, 0.5), '#');
  EXPECT_EQ(cell(lines, 6, 1.5), '#');
  std::size_t marks = 0;
  for (std::size_t row = 0; row < 8; ++row) {
    const auto& line = lines[row];
    marks +=
        std::count(line.begin() + static_cast<std::ptrdiff_t>(line.find('|')), line.end(), 'T');
  }
  EXPECT_EQ(marks, 5u);  // columns 0 to 4, until the balloon reached its target at 55 s
}

TEST(HistoryChart, NothingToDrawWithoutFigures) {
  report::HistoryEntry alert;
  alert.kind = EntryKind::alert_fired;
  alert.unix_ms = kFrom;
  EXPECT_TRUE(vm_chart({&alert}, {kFrom, kFrom + 1000, 10, 8, true}).empty());
  const auto s = sample(0, GiB, GiB);
  EXPECT_TRUE(vm_chart({&s}, {kFrom, kFrom, 10, 8, true}).empty());  // no time span
}

}  // namespace
}  // namespace memtide::ctl
