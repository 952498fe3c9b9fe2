// `memtidectl history`'s chart: one VM's memory over time in plain text (ASCII, so it reads the
// same over ssh and in a log). Memory runs up the rows from 0 to the largest maximum seen, time
// runs along the columns:
//
//   8 GiB |
//         |:::::
//   4 GiB |######::::::::            '#' in use, ':' usable (free and page cache) inside the
//         |######::::::::::::::::     balloon, '-' the floor where nothing else is drawn, 'T'
//                                     a target the balloon has not reached
//         |##############:::::::
//       0 |##############:::::::
//          ^     v       !           '^' grown, 'v' shrunk, '*' both, '!' an alert fired
//          05:40:12      05:50:12
//
// A column shows the figures of the last entry at or before its end: a sample as it was taken; a
// command applied as its balloon moved to its target (in use unchanged, usable by the
// difference). Columns before the first entry are blank.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include <memtide/report/history.hpp>

#include "time_text.hpp"

namespace memtide::ctl {

struct ChartFrame {
  std::int64_t from_unix_ms = 0;
  std::int64_t to_unix_ms = 0;
  std::size_t width = 60;  // columns of time
  std::size_t height = 8;  // rows of memory
  bool utc = false;        // time labels in UTC, else local time
};

// The chart's lines (without line ends) for `entries`, one VM's in time order; none when no
// entry holds figures.
std::vector<std::string> vm_chart(const std::vector<const report::HistoryEntry*>& entries,
                                  const ChartFrame& frame);

// "# in use  : usable  - floor  T target not reached  ^ grown  v shrunk  * both  ! alert fired"
std::string chart_legend();

}  // namespace memtide::ctl
