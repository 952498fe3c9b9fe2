#include <iostream>

#include <unistd.h>

#include <memtide/core/exit_code.hpp>
#include <memtide/core/progress.hpp>
#include <memtide/report/json_text.hpp>
#include <memtide/trace/replay.hpp>
#include <memtide/trace/trace.hpp>

#include "commands.hpp"
#include "terminal.hpp"

namespace memtide::ctl {

int simulate(std::shared_ptr<const config::Config> config, const std::vector<std::string>& traces,
             bool quiet, bool json) {
  trace::Replay replay(std::move(config));
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
