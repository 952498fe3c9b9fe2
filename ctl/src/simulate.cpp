#include <fstream>
#include <iostream>
#include <map>

#include <unistd.h>

#include <memtide/core/exit_code.hpp>
#include <memtide/core/progress.hpp>
#include <memtide/report/json_text.hpp>
#include <memtide/report/svg_plot.hpp>
#include <memtide/trace/replay.hpp>
#include <memtide/trace/trace.hpp>

#include "commands.hpp"
#include "terminal.hpp"

namespace memtide::ctl {

namespace {

// What --plot draws of a replay: the host's MemAvailable and each VM's memory as recorded, and
// the sizes the policy asked for, in minutes from the first snapshot.
struct Plot {
  std::int64_t first_ms = -1;
  report::PlotSeries available{"MemAvailable", {}};
  std::map<std::string, report::PlotSeries> recorded;  // by VM name
  std::map<std::string, report::PlotSeries> decided;

  void add(const Snapshot& s, const policy::Plan& plan) {
    constexpr double kGiBd = 1024.0 * 1024 * 1024;
    if (first_ms < 0) {
      first_ms = s.collected_at_unix_ms;
    }
    const double t = static_cast<double>(s.collected_at_unix_ms - first_ms) / 60000.0;
    available.points.emplace_back(t, static_cast<double>(s.host.meminfo.available_bytes) / kGiBd);
    for (const auto& vm : s.vms) {
      auto& series = recorded[vm.name];
      series.name = vm.name;
      series.points.emplace_back(t, static_cast<double>(vm.current_bytes) / kGiBd);
    }
    for (const auto& change : plan.balloons) {
      auto& series = decided[change.vm];
      series.name = change.vm;
      series.points.emplace_back(t, static_cast<double>(change.to_bytes) / kGiBd);
    }
  }

  std::string svg(const std::string& title) const {
    const auto values = [](const std::map<std::string, report::PlotSeries>& m) {
      std::vector<report::PlotSeries> out;
      out.reserve(m.size());
      for (const auto& [name, series] : m) {
        out.push_back(series);
      }
      return out;
    };
    const std::vector<report::PlotPanel> panels = {
        {"host MemAvailable (recorded)", "minutes", "GiB", {available}},
        {"VM memory (recorded)", "minutes", "GiB", values(recorded)},
        {"balloon commands the policy decides (their targets)", "minutes", "GiB", values(decided)}};
    return report::svg_plot(title, panels, 1);
  }
};

}  // namespace

int simulate(std::shared_ptr<const config::Config> config, const std::vector<std::string>& traces,
             bool quiet, bool json, const std::string& plot_path) {
  trace::Replay replay(std::move(config));
  Plot plot;
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  nlohmann::ordered_json skipped = nlohmann::ordered_json::array();
  // On a terminal with nothing else printed as it goes (--quiet, --json), say how far it got.
  ProgressLine progress(isatty(STDERR_FILENO) == 1 && (quiet || json));
  for (const auto& trace : traces) {
    auto status = trace::read_trace(
        trace,
        [&](Snapshot&& snapshot) {
          for (const auto& event : replay.feed(snapshot)) {
            if (json) {
              events.push_back(trace::to_json(event));
            } else if (!quiet) {
              std::cout << for_terminal(trace::describe(event)) << '\n';
            }
          }
          if (!plot_path.empty()) {
            plot.add(snapshot, replay.last_plan());
          }
          progress.show("replaying " + for_terminal(trace) + ": " +
                        std::to_string(replay.summary().ticks) + " ticks");
        },
        [&](const Error& error) {
          skipped.push_back(error.to_string());
          progress.clear();
          std::cerr << "memtidectl: skipped " << error.to_string() << '\n';
        });
    if (!status) {
      progress.clear();
      std::cerr << "memtidectl: " << status.error().to_string() << '\n';
      return kExitFailure;
    }
  }
  progress.clear();
  if (!plot_path.empty() && replay.summary().ticks > 0) {
    std::ofstream out(plot_path);
    out << plot.svg("memtidectl simulate: " + traces.back());
    if (!out.flush()) {
      std::cerr << "memtidectl: cannot write " << plot_path << '\n';
      return kExitFailure;
    }
  }
  if (json) {
    nlohmann::ordered_json out = {
        {"events", events}, {"summary", trace::to_json(replay.summary())}, {"skipped", skipped}};
    std::cout << report::dump_json(out, 2) << '\n';
  } else {
    if (!quiet && replay.summary().ticks > 0) {
      std::cout << '\n';
    }
    std::cout << lines_for_terminal(trace::describe(replay.summary()));
    if (!skipped.empty()) {
      std::cout << "skipped lines: " << skipped.size() << '\n';
    }
  }
  if (replay.summary().ticks == 0) {
    std::cerr << "memtidectl: the trace holds no snapshot\n";
    return kExitFailure;
  }
  return kExitOk;
}

}  // namespace memtide::ctl
