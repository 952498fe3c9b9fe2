// memtidectl history: what the daemon did and saw over time (report/history.hpp), from the
// running daemon or from a recorded trace replayed through the policy of --config.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>

#include <unistd.h>

#include <memtide/config/units.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/report/history.hpp>
#include <memtide/report/json_text.hpp>
#include <memtide/trace/replay.hpp>
#include <memtide/trace/trace.hpp>

#include "commands.hpp"
#include "control_client.hpp"
#include "history_chart.hpp"
#include "terminal.hpp"

namespace memtide::ctl {

namespace {

using EntryKind = report::HistoryEntry::Kind;
using config::format_size;

// A trace replayed offline keeps more than the daemon's budget: it is read once.
constexpr std::size_t kTraceHistoryBytes = std::size_t{64} << 20;

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// One row of the table for a command or an alert.
std::vector<std::string> table_row(const report::HistoryEntry& e, bool utc) {
  const std::string when = clock_text(e.unix_ms, utc);
  const std::string vm = e.vm.empty() ? "(host)" : e.vm;
  if (e.kind == EntryKind::command) {
    const std::uint64_t to = e.target_bytes.value_or(e.balloon_bytes);
    return {when,
            vm,
            to > e.balloon_bytes ? "grow" : "shrink",
            format_size(e.balloon_bytes) + " -> " + format_size(to),
            e.what + ", " + e.result,
            e.detail};
  }
  const bool fired = e.kind == EntryKind::alert_fired;
  return {when, vm, fired ? "alert" : "resolved", e.what, fired ? e.result : "", e.detail};
}

// Prints the charts (on a terminal) and the table of `entries`, all within [from, to].
void print_history(const std::vector<const report::HistoryEntry*>& entries, std::int64_t from,
                   std::int64_t to, const Args& args) {
  std::vector<std::vector<std::string>> rows = {{"TIME", "VM", "EVENT", "CHANGE", "CAUSE", "WHY"}};
  std::map<std::string, std::vector<const report::HistoryEntry*>> by_vm;
  for (const auto* e : entries) {
    if (!e->vm.empty()) {
      by_vm[e->vm].push_back(e);
    }
    if (e->kind != EntryKind::sample) {
      rows.push_back(table_row(*e, args.utc));
    }
  }
  const auto columns = output_columns();
  if (isatty(STDOUT_FILENO) == 1) {
    constexpr std::size_t kLabelRoom = 12;  // "1023.9 MiB |"
    ChartFrame frame;
    frame.from_unix_ms = from;
    frame.to_unix_ms = to;
    frame.utc = args.utc;
    frame.width = std::clamp<std::size_t>(columns.value_or(80) - kLabelRoom - 1, 20, 200);
    bool drawn = false;
    for (const auto& [vm, own] : by_vm) {
      const auto lines = vm_chart(own, frame);
      if (lines.empty()) {
        continue;
      }
      std::cout << fit(for_terminal(vm), columns.value_or(80)) << '\n';
      for (const auto& line : lines) {
        std::cout << line << '\n';
      }
      std::cout << '\n';
      drawn = true;
    }
    if (drawn) {
      std::cout << chart_legend() << "\n\n";
    }
  }
  if (rows.size() == 1) {
    std::cout << "no balloon command or alert between " << clock_text(from, args.utc) << " and "
              << clock_text(to, args.utc) << '\n';
    return;
  }
  print_table(std::move(rows), columns);
}

}  // namespace

int history(const std::string& socket, const Args& args) {
  nlohmann::json request = {{"command", "history"}};
  if (!args.operands.empty()) {
    request["vms"] = args.operands;
  }
  const std::int64_t now = now_unix_ms();
  if (args.since) {
    request["since_unix_ms"] = now - args.since->count();
  }
  auto reply = ask_daemon(socket, request);
  if (!reply) {
    return kExitFailure;
  }
  const nlohmann::json& r = *reply;
  if (args.json) {
    std::cout << report::dump_json(r, 2) << '\n';
    return kExitOk;
  }
  std::vector<report::HistoryEntry> owned;
  if (r.contains("entries") && r["entries"].is_array()) {
    for (const auto& j : r["entries"]) {
      if (auto e = report::history_entry_from_json(j)) {
        owned.push_back(std::move(*e));
      }
    }
  }
  std::vector<const report::HistoryEntry*> entries;
  entries.reserve(owned.size());
  for (const auto& e : owned) {
    entries.push_back(&e);
  }
  const std::int64_t oldest =
      r.contains("oldest_unix_ms") && r["oldest_unix_ms"].is_number_integer()
          ? r["oldest_unix_ms"].get<std::int64_t>()
          : now;
  const std::int64_t from = args.since ? now - args.since->count() : std::min(oldest, now - 1000);
  if (r.contains("bytes") && r["bytes"].is_number_unsigned() && r.contains("max_bytes") &&
      r["max_bytes"].is_number_unsigned()) {
    std::cout << "memtided keeps " << format_size(r["bytes"].get<std::uint64_t>()) << " of "
              << format_size(r["max_bytes"].get<std::uint64_t>()) << " of history, since "
              << clock_text(oldest, args.utc) << "\n\n";
  }
  print_history(entries, from, now, args);
  return kExitOk;
}

int history_of_traces(std::shared_ptr<const config::Config> config, const Args& args) {
  trace::Replay replay(config);
  report::History history(kTraceHistoryBytes);
  std::size_t skipped = 0;
  std::int64_t first = 0;
  std::int64_t last = 0;
  for (const auto& path : args.traces) {
    auto status = trace::read_trace(
        path,
        [&](Snapshot&& snapshot) {
          replay.feed(snapshot);
          std::vector<report::RecentCommand> commands;
          for (const auto& change : replay.last_plan().balloons) {
            commands.push_back({snapshot.collected_at_unix_ms, change, "replayed"});
          }
          report::TickReport r;
          r.snapshot = &snapshot;
          r.plan = &replay.last_plan();
          r.state = &replay.state();
          r.config = config.get();
          r.alerts = &replay.firing();
          history.record(r, commands);
          first = first == 0 ? snapshot.collected_at_unix_ms : first;
          last = snapshot.collected_at_unix_ms;
        },
        [&](const Error& error) {
          ++skipped;
          std::cerr << "memtidectl: skipped " << error.to_string() << '\n';
        });
    if (!status) {
      std::cerr << "memtidectl: " << status.error().to_string() << '\n';
      return kExitFailure;
    }
  }
  if (replay.summary().ticks == 0) {
    std::cerr << "memtidectl: the trace holds no snapshot\n";
    return kExitFailure;
  }
  const std::int64_t from = args.since ? std::max(first, last - args.since->count()) : first;
  const auto entries = history.select(args.operands, from);
  if (args.json) {
    nlohmann::json out = {{"ok", true}, {"entries", nlohmann::json::array()}};
    for (const auto* e : entries) {
      out["entries"].push_back(report::to_json(*e));
    }
    std::cout << report::dump_json(out, 2) << '\n';
    return kExitOk;
  }
  print_history(entries, from, std::max(last, from + 1000), args);
  return kExitOk;
}

}  // namespace memtide::ctl
