// Traces: every tick's Snapshot as one line of JSON (snapshot_json.hpp), appended to a file that
// is rotated by size. `memtidectl simulate` reads them back and replays them through decide().
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/core/result.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::daemon {

// Appends snapshots to settings.path. Before a line would take the file past max_size_bytes the
// files are rotated (PATH.<files-2> -> PATH.<files-1>, ..., PATH -> PATH.1; the oldest is
// dropped; files == 1 truncates PATH instead), so a trace never holds much more than
// max_size_bytes * files. Files are created with mode 0600: snapshots name every VM. Each line is
// written with one write(2) on an O_APPEND descriptor, so a crash leaves at most a torn last line,
// which readers report and skip.
class TraceWriter {
 public:
  explicit TraceWriter(config::RecordSection settings);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Appends one line. On error nothing is retried; the next call opens the file again.
  Status append(const Snapshot& snapshot);
  const config::RecordSection& settings() const { return settings_; }

 private:
  Status open();
  Status rotate();

  config::RecordSection settings_;
  int fd_ = -1;
  std::uint64_t size_ = 0;  // bytes in the current file
};

// Calls `on_snapshot` for each line of `path` in order. Lines that are not a valid snapshot are
// passed to `on_error` (with file and line) and skipped; only a file that cannot be read at all
// fails the whole call.
Status read_trace(const std::string& path, const std::function<void(Snapshot&&)>& on_snapshot,
                  const std::function<void(const Error&)>& on_error);

}  // namespace memtide::daemon
