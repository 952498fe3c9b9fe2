// Loading and checking the configuration file the way memtided and memtidectl both do.
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/config/loader.hpp>

namespace memtide::config {

inline constexpr const char* kDefaultConfigPath = "/etc/memtide/memtide.yaml";

// The configuration at `path` and its drop-ins (load_config_with_dropins), every error (and
// warning, "warning: ...") printed to `errors`; nullptr when invalid. When `path_given` is false
// and nothing exists at `path` (the default location), the built-in defaults apply, with the
// drop-ins; a path named explicitly must exist.
std::shared_ptr<const Config> load_config_or_defaults(const std::string& path, bool path_given,
                                                      std::ostream& errors);

// Validates `path` and its drop-ins, printing every error and then "N errors in PATH", or every
// warning and then "PATH: valid" (naming the drop-ins read), to `out`. Returns whether it is
// valid.
bool check_config_file(const std::string& path, std::ostream& out);

// `path` and its drop-ins loaded for a reload of a daemon running `running`: as
// load_config_with_dropins, but a main file without settings is an error when the running one
// had settings. That is almost always a file caught mid-write by an editor or configuration
// manager, and switching a running daemon to the defaults (another socket, URI, KSM mode) is
// never what was meant. A main file that had only comments before (the shipped conffile, with
// the settings in drop-ins) may still have only comments.
LoadResult reload_config_file(const std::string& path, const Config& running);

}  // namespace memtide::config
