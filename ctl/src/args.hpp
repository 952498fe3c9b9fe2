// memtidectl's command line: one parse for every command, then each command reads what it takes.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace memtide::ctl {

struct Args {
  std::string command;
  std::string config_path;
  bool config_given = false;  // an explicit path must exist; the default may be absent
  std::optional<std::string> connect;
  bool dry_run = false;
  bool if_service_failed = false;
  std::vector<std::string> traces;
  bool quiet = false;
  std::string plot;  // simulate --plot FILE: "" none
  bool json = false;
  std::optional<std::string> socket;
  std::optional<int> reload_pid;      // reload --pid: SIGHUP to it when there is no control socket
  std::vector<std::string> operands;  // explain's VM, scan's PIDs, history's VMs
  int passes = 2;
  double interval_s = 1;              // scan: between passes; top: between frames
  std::vector<std::string> vm_globs;  // status --vm: VMs whose name matches any (fnmatch)
  std::string sort = "name";          // status --sort: one of status_sort_keys()
  bool utc = false;  // status, history --utc: RFC 3339 UTC times, not local and relative
  std::optional<std::chrono::milliseconds> since;  // history --since
  std::optional<int> iterations;                   // top -n N / --once: frames before it ends
};

// The orders `status --sort` takes.
const std::vector<std::string_view>& status_sort_keys();

// The parsed command line, or the exit code to end with at once (after --help, --version, or a
// usage error already printed).
struct Parsed {
  Args args;
  std::optional<int> exit_code;
};
Parsed parse_args(const std::vector<std::string>& args);

// Prints `message` and the hint to --help on stderr; returns kExitUsage.
int usage_error(const std::string& message);

}  // namespace memtide::ctl
