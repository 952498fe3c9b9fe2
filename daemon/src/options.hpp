// memtided's command line.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "log.hpp"

namespace memtide::daemon {

// Process exit codes, documented in README.md and memtided --help.
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,        // runtime failure (cannot read /proc, event loop error)
  kExitInvalidConfig = 2,  // the configuration file is invalid or unreadable
  kExitUsage = 64,         // bad command line (EX_USAGE)
};

inline constexpr const char* kDefaultConfigPath = "/etc/memtide/memtide.yaml";

struct Options {
  enum class Mode { run, once, check_config, help, version };
  Mode mode = Mode::run;
  std::string config_path = kDefaultConfigPath;
  bool config_path_given = false;      // an explicit path must exist; the default may be absent
  std::optional<std::string> procfs;   // overrides daemon.procfs
  std::optional<std::string> sysfs;    // overrides daemon.sysfs
  std::optional<std::string> connect;  // overrides libvirt.uri
  std::optional<std::string> metrics_listen;  // overrides metrics.listen
  std::optional<std::string> control_socket;  // overrides daemon.control_socket
  bool dry_run = false;                       // forces daemon.dry_run on
  Logger::Target log_target = Logger::Target::automatic;
};

struct ParsedOptions {
  Options options;
  std::string error;  // non-empty: usage error to print before exiting with kExitUsage
};

ParsedOptions parse_options(const std::vector<std::string>& args);

std::string usage_text();

}  // namespace memtide::daemon
