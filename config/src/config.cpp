#include <memtide/config/config.hpp>

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

const char* to_string(OnStop on_stop) {
  switch (on_stop) {
    case OnStop::restore:
      return "restore";
    case OnStop::keep:
      return "keep";
  }
  return "?";
}

}  // namespace memtide::config
