// daemon.record: appends every snapshot decide() saw to the trace (trace/trace.hpp), for
// `memtidectl simulate`. A failing write is counted and logged once per distinct error, and the
// recovery once.
#pragma once

#include <memory>

#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>
#include <memtide/report/tick_report.hpp>
#include <memtide/trace/trace.hpp>

#include "log.hpp"
#include "log_on_change.hpp"

namespace memtide::daemon {

class Recorder {
 public:
  Recorder(Logger& log, report::DaemonFigures& figures) : log_(log), figures_(figures) {}

  // Starts, changes or stops recording to match `record` (path "" off).
  void configure(const config::RecordSection& record);
  void append(const Snapshot& decided_on);

 private:
  Logger& log_;
  report::DaemonFigures& figures_;
  std::unique_ptr<trace::TraceWriter> writer_;  // null while off
  LogOnChange error_;
};

}  // namespace memtide::daemon
