// memtided's command line.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include <memtide/config/files.hpp>
#include <memtide/config/overrides.hpp>
#include <memtide/core/exit_code.hpp>

#include "log.hpp"

namespace memtide::daemon {

struct Options {
  enum class Mode { run, once, check_config, help, version };
  Mode mode = Mode::run;
  std::string config_path = config::kDefaultConfigPath;
  bool config_path_given = false;  // an explicit path must exist; the default may be absent
  config::Overrides overrides;     // applied to every configuration loaded, at start and reload
  Logger::Target log_target = Logger::Target::automatic;
};

struct ParsedOptions {
  Options options;
  std::string error;  // non-empty: usage error to print before exiting with kExitUsage
};

ParsedOptions parse_options(const std::vector<std::string>& args);

std::string usage_text();

}  // namespace memtide::daemon
