// Process exit codes of memtided and memtidectl, documented in docs/operating.md and their --help.
#pragma once

namespace memtide {

enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,        // runtime failure (cannot read /proc, event loop error)
  kExitInvalidConfig = 2,  // the configuration file is invalid or unreadable
  kExitUsage = 64,         // bad command line (EX_USAGE)
};

}  // namespace memtide
