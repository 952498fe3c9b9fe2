#include <memtide/config/config.hpp>
#include <memtide/config/overrides.hpp>

namespace memtide::config {

const char* to_string(LogLevel level) {
  switch (level) {
    case LogLevel::debug:
      return "debug";
    case LogLevel::info:
      return "info";
    case LogLevel::notice:
      return "notice";
    case LogLevel::warning:
      return "warning";
    case LogLevel::error:
      return "error";
  }
  return "?";
}

const char* to_string(KsmAdvisor advisor) {
  return advisor == KsmAdvisor::scan_time ? "scan-time" : "none";
}

const char* to_string(KsmMode mode) {
  switch (mode) {
    case KsmMode::off:
      return "off";
    case KsmMode::on:
      return "on";
    case KsmMode::automatic:
      return "auto";
    case KsmMode::unmanaged:
      return "unmanaged";
  }
  return "?";
}

const char* to_string(PerVmMetrics per_vm) {
  switch (per_vm) {
    case PerVmMetrics::full:
      return "full";
    case PerVmMetrics::decisions:
      return "decisions";
    case PerVmMetrics::off:
      return "off";
  }
  return "full";
}

const char* to_string(Coexist coexist) {
  return coexist == Coexist::force ? "force" : "auto";
}

const char* to_string(OnStop on_stop) {
  switch (on_stop) {
    case OnStop::restore:
      return "restore";
    case OnStop::keep:
      return "keep";
  }
  return "?";
}

std::shared_ptr<const Config> with_overrides(std::shared_ptr<const Config> config,
                                             const Overrides& overrides) {
  if (overrides == Overrides{}) {
    return config;
  }
  auto changed = std::make_shared<Config>(*config);
  auto set = [](std::string& setting, const std::optional<std::string>& given) {
    if (given) {
      setting = *given;
    }
  };
  set(changed->daemon.procfs, overrides.procfs);
  set(changed->daemon.sysfs, overrides.sysfs);
  if (overrides.libvirt_uri) {
    // One URI on the command line replaces the configured connections (a test, a one-off run).
    changed->libvirt.uri = *overrides.libvirt_uri;
    changed->libvirt.connections.clear();
    changed->libvirt.discover.clear();
  }
  set(changed->metrics.listen, overrides.metrics_listen);
  set(changed->daemon.control_socket, overrides.control_socket);
  changed->daemon.dry_run = changed->daemon.dry_run || overrides.dry_run;
  return changed;
}

}  // namespace memtide::config
