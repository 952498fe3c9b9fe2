// The mark memtided leaves while it runs in dry run, for the unit's safety net
// (`memtidectl restore --if-service-failed`, ExecStopPost), which runs after memtided ended and
// cannot see a --dry-run given on memtided's command line: a dry run changed nothing, so the
// safety net must restore nothing either.
//
// The mark is the file "dry-run" in systemd's RuntimeDirectory ($RUNTIME_DIRECTORY, set for the
// service and for its ExecStopPost; removed by systemd only after ExecStopPost ran). Outside
// systemd there is no mark, and the configuration's daemon.dry_run is all the safety net reads.
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace memtide {

// The mark's path, or nullopt when $RUNTIME_DIRECTORY is unset or not absolute (systemd
// separates several directories with ':'; the first is used).
inline std::optional<std::string> dry_run_marker_path() {
  const char* dir = std::getenv("RUNTIME_DIRECTORY");
  if (dir == nullptr || *dir != '/') {
    return std::nullopt;
  }
  std::string first(dir);
  first = first.substr(0, first.find(':'));
  return first + "/dry-run";
}

}  // namespace memtide
