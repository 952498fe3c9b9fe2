// Settings given on memtided's command line, which take precedence over the file's. They are
// applied once, where a configuration is loaded (at start and on every reload), so nothing
// downstream needs to know where a setting came from.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include <memtide/config/config.hpp>

namespace memtide::config {

struct Overrides {
  std::optional<std::string> procfs;          // daemon.procfs (--procfs)
  std::optional<std::string> sysfs;           // daemon.sysfs (--sysfs)
  std::optional<std::string> libvirt_uri;     // libvirt.uri (--connect)
  std::optional<std::string> metrics_listen;  // metrics.listen (--metrics-listen)
  std::optional<std::string> control_socket;  // daemon.control_socket (--control-socket)
  bool dry_run = false;                       // forces daemon.dry_run on (--dry-run)

  friend bool operator==(const Overrides&, const Overrides&) = default;
};

// `config` with every override given in `overrides` applied; `config` itself when there are none.
std::shared_ptr<const Config> with_overrides(std::shared_ptr<const Config> config,
                                             const Overrides& overrides);

}  // namespace memtide::config
