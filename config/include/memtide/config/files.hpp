// Loading and checking the configuration file the way memtided and memtidectl both do.
#pragma once

#include <memory>
#include <ostream>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/config/loader.hpp>

namespace memtide::config {

inline constexpr const char* kDefaultConfigPath = "/etc/memtide/memtide.yaml";

// The configuration at `path`, every error (and warning, "warning: ...") printed to `errors`;
// nullptr when invalid. When
// `path_given` is false and nothing exists at `path` (the default location), the built-in
// defaults apply; a path named explicitly must exist.
std::shared_ptr<const Config> load_config_or_defaults(const std::string& path, bool path_given,
                                                      std::ostream& errors);

// Validates `path`, printing every error and then "N errors in PATH", or every warning and then
// "PATH: valid", to `out`. Returns whether it is valid.
bool check_config_file(const std::string& path, std::ostream& out);

// `path` loaded for a reload of a running daemon: as load_config_file, but a document without
// settings is an error. At start an empty file means the defaults; on a reload it is almost
// always a file caught mid-write by an editor or configuration manager, and switching a running
// daemon to the defaults (another socket, URI, KSM mode) is never what was meant.
LoadResult reload_config_file(const std::string& path);

}  // namespace memtide::config
