// Traces: every tick's Snapshot as one line of JSON (snapshot_json.hpp), appended to a file that
// is rotated by size. `memtidectl simulate` reads them back and replays them through decide().
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/core/result.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::trace {

// Appends snapshots to settings.path. Before a line would take the file past max_size_bytes the
// files are rotated (PATH.<files-2> -> PATH.<files-1>, ..., PATH -> PATH.1; the oldest is
// dropped; files == 1 removes PATH and starts it anew), so a trace never holds much more than
// max_size_bytes * files. Files are created with mode 0600: snapshots name every VM. The writer
// runs as root in paths an operator chose, so it never follows a symlink, and writes only to a
// regular file owned by its own user with a single link. Each line is written with one write(2)
// on an O_APPEND descriptor, so a crash or full disk leaves at most a torn line, which readers
// report and skip; the next line always starts on a line of its own.
class TraceWriter {
 public:
  explicit TraceWriter(config::RecordSection settings);
  ~TraceWriter();
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Appends one line. On error nothing is retried; the next call opens the file again.
  Status append(const Snapshot& snapshot);
  const config::RecordSection& settings() const { return settings_; }
  // Torn lines (from a failed write or a crash) closed off so far.
  std::uint64_t torn_lines() const { return torn_lines_; }

 private:
  Status open();
  Status rotate();

  config::RecordSection settings_;
  int fd_ = -1;
  std::uint64_t size_ = 0;      // bytes in the current file
  bool needs_newline_ = false;  // the file ends in a torn line
  std::uint64_t torn_lines_ = 0;
};

// Bounds for reading a trace, which may come from anywhere: a snapshot line of a host with
// thousands of VMs is a few MiB, and nests 5 levels deep.
inline constexpr std::size_t kMaxTraceLineBytes = std::size_t{64} << 20;
inline constexpr std::size_t kMaxTraceNesting = 32;

// Calls `on_snapshot` for each line of `path` in order. Lines that are not a valid snapshot are
// passed to `on_error` (with file and line) and skipped, as are lines nested deeper than
// kMaxTraceNesting; a file that cannot be read, or a line longer than kMaxTraceLineBytes, ends the
// call with an error (after the lines before it were passed on).
Status read_trace(const std::string& path, const std::function<void(Snapshot&&)>& on_snapshot,
                  const std::function<void(const Error&)>& on_error);

}  // namespace memtide::trace
