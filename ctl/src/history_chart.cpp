#include "history_chart.hpp"

#include <algorithm>
#include <ctime>
#include <optional>

#include <memtide/config/units.hpp>

namespace memtide::ctl {

namespace {

using EntryKind = report::HistoryEntry::Kind;

// What one column shows.
struct Figures {
  std::uint64_t balloon = 0;
  std::optional<std::uint64_t> in_use;  // balloon - usable, when the guest reported usable
  std::uint64_t floor = 0;
  std::optional<std::uint64_t> target;  // what memtide last asked for
};

bool has_figures(const report::HistoryEntry& e) {
  return e.kind == EntryKind::sample || e.kind == EntryKind::command;
}

Figures figures_of(const report::HistoryEntry& e) {
  Figures f;
  f.balloon = e.balloon_bytes;
  f.floor = e.floor_bytes;
  f.target = e.target_bytes;
  if (e.usable_bytes) {
    f.in_use = e.balloon_bytes - std::min(*e.usable_bytes, e.balloon_bytes);
  }
  // An applied command moved the balloon to its target; what the guest uses stayed.
  if (e.kind == EntryKind::command && e.result == "applied" && e.target_bytes) {
    f.balloon = *e.target_bytes;
    if (f.in_use) {
      f.in_use = std::min(*f.in_use, f.balloon);
    }
  }
  return f;
}

// The end of column `c` in milliseconds.
std::int64_t column_end(const ChartFrame& frame, std::size_t c) {
  const auto span = static_cast<long double>(frame.to_unix_ms - frame.from_unix_ms);
  return frame.from_unix_ms + static_cast<std::int64_t>(span * static_cast<long double>(c + 1) /
                                                        static_cast<long double>(frame.width));
}

// The character of a cell whose memory levels are [lo, hi).
char cell(const std::optional<Figures>& f, double lo, double hi) {
  if (!f) {
    return ' ';
  }
  const double mid = (lo + hi) / 2;
  // A target the balloon has not reached (in flight, or refused by the guest) is marked where it
  // lies, when that is another row than the balloon's top.
  const auto in_row = [lo, hi](double v) { return v >= lo && v < hi; };
  if (f->target && in_row(static_cast<double>(*f->target)) &&
      !in_row(static_cast<double>(f->balloon))) {
    return 'T';
  }
  if (f->in_use && mid < static_cast<double>(*f->in_use)) {
    return '#';
  }
  if (mid < static_cast<double>(f->balloon)) {
    return ':';
  }
  const auto floor = static_cast<double>(f->floor);
  return floor >= lo && floor < hi ? '-' : ' ';
}

// The marks under each column: commands ('^' grown, 'v' shrunk, '*' both) over alerts ('!').
std::string marks(const std::vector<const report::HistoryEntry*>& entries,
                  const ChartFrame& frame) {
  std::string row(frame.width, ' ');
  std::size_t c = 0;
  for (const auto* e : entries) {
    if (e->unix_ms < frame.from_unix_ms || e->unix_ms > frame.to_unix_ms ||
        e->kind == EntryKind::sample || e->kind == EntryKind::alert_resolved) {
      continue;
    }
    while (c + 1 < frame.width && e->unix_ms > column_end(frame, c)) {
      ++c;
    }
    char& m = row[c];
    if (e->kind == EntryKind::alert_fired) {
      m = m == ' ' ? '!' : m;
      continue;
    }
    const bool grown = e->target_bytes && *e->target_bytes > e->balloon_bytes;
    const char mark = grown ? '^' : 'v';
    m = (m == ' ' || m == '!' || m == mark) ? mark : '*';
  }
  return row;
}

}  // namespace

std::vector<std::string> vm_chart(const std::vector<const report::HistoryEntry*>& entries,
                                  const ChartFrame& frame) {
  std::uint64_t top = 0;
  for (const auto* e : entries) {
    if (has_figures(*e)) {
      top = std::max({top, e->max_bytes, e->balloon_bytes, e->target_bytes.value_or(0)});
    }
  }
  if (top == 0 || frame.width == 0 || frame.height == 0 || frame.to_unix_ms <= frame.from_unix_ms) {
    return {};
  }
  // The figures each column shows: the last entry with figures at or before its end.
  std::vector<std::optional<Figures>> columns(frame.width);
  std::optional<Figures> current;
  std::size_t next = 0;
  for (std::size_t c = 0; c < frame.width; ++c) {
    const std::int64_t end = column_end(frame, c);
    for (; next < entries.size() && entries[next]->unix_ms <= end; ++next) {
      if (has_figures(*entries[next])) {
        current = figures_of(*entries[next]);
      }
    }
    columns[c] = current;
  }
  const std::string top_label = config::format_size(top);
  const std::string mid_label = config::format_size(top / 2);
  const std::size_t label_width = std::max<std::size_t>(top_label.size(), mid_label.size());
  const auto label = [label_width](const std::string& text) {
    return std::string(label_width - text.size(), ' ') + text + " |";
  };
  std::vector<std::string> lines;
  const auto rows = frame.height;
  for (std::size_t r = 0; r < rows; ++r) {
    const double lo =
        static_cast<double>(top) * static_cast<double>(rows - 1 - r) / static_cast<double>(rows);
    const double hi =
        static_cast<double>(top) * static_cast<double>(rows - r) / static_cast<double>(rows);
    std::string line = r == 0          ? label(top_label)
                       : r == rows / 2 ? label(mid_label)
                       : r + 1 == rows ? label("0")
                                       : label("");
    for (const auto& f : columns) {
      line += cell(f, lo, hi);
    }
    // A chart line ends where its last drawn cell does.
    line.erase(line.find_last_not_of(' ') + 1);
    lines.push_back(std::move(line));
  }
  std::string mark_line = std::string(label_width + 2, ' ') + marks(entries, frame);
  mark_line.erase(mark_line.find_last_not_of(' ') + 1);
  lines.push_back(std::move(mark_line));
  const std::string from = clock_text(frame.from_unix_ms, frame.utc);
  const std::string to = clock_text(frame.to_unix_ms, frame.utc);
  std::string axis = std::string(label_width + 2, ' ') + from;
  const std::size_t to_column = label_width + 2 + frame.width;
  axis +=
      std::string(to_column > axis.size() + to.size() + 1 ? to_column - axis.size() - to.size() : 1,
                  ' ') +
      to;
  lines.push_back(std::move(axis));
  return lines;
}

std::string chart_legend() {
  return "# in use  : usable  - floor  T target not reached  ^ grown  v shrunk  * both  ! alert "
         "fired";
}

}  // namespace memtide::ctl
