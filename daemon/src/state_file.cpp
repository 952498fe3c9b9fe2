#include "state_file.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <functional>
#include <stdexcept>

#include <fcntl.h>
#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <memtide/core/text.hpp>
#include <memtide/report/json_text.hpp>

namespace memtide::daemon {

namespace {

using nlohmann::json;

// Bounds on what a state file may hold, so a damaged or hostile one cannot exhaust memory:
// kMaxStateVms, a few alerts each, and the longest forecast history (1 h at 100 ms ticks).
constexpr std::size_t kMaxHistory = 36'000;
constexpr std::size_t kMaxAlerts = 4 * kMaxStateVms;
// Times in the file, in ms, lie within +-2^52 (142,000 years): moving them cannot overflow.
constexpr std::int64_t kMaxTime = std::int64_t{1} << 52;

// Whole numbers only: nlohmann's get<integer>() converts a float such as 1e24 with undefined
// behaviour (found by the fuzzer), so every number read is checked first.
std::int64_t i64(const json& v) {
  if (v.is_number_unsigned() && v.get<std::uint64_t>() <= static_cast<std::uint64_t>(INT64_MAX)) {
    return static_cast<std::int64_t>(v.get<std::uint64_t>());
  }
  if (!v.is_number_integer() || v.is_number_unsigned()) {
    throw std::invalid_argument("expected a whole number, got " + std::string(v.type_name()));
  }
  return v.get<std::int64_t>();
}

std::uint64_t u64(const json& v) {
  if (!v.is_number_unsigned()) {
    throw std::invalid_argument("expected a non-negative whole number, got " +
                                std::string(v.type_name()));
  }
  return v.get<std::uint64_t>();
}

int small_int(const json& v) {
  const std::int64_t n = i64(v);
  if (n < -1'000'000 || n > 1'000'000) {
    throw std::out_of_range("a small number is out of range");
  }
  return static_cast<int>(n);
}

json optional_u64(const std::optional<std::uint64_t>& v) {
  return v ? json(*v) : json();
}

json optional_i64(const std::optional<std::int64_t>& v) {
  return v ? json(*v) : json();
}

// Absent (a file written before the key existed) or null: unset.
std::optional<std::int64_t> read_optional_i64(const json& j, const char* key) {
  if (!j.contains(key) || j.at(key).is_null()) {
    return std::nullopt;
  }
  return i64(j.at(key));
}

std::optional<std::uint64_t> read_optional_u64(const json& j, const char* key) {
  const auto& v = j.at(key);
  if (v.is_null()) {
    return std::nullopt;
  }
  return u64(v);
}

}  // namespace

std::string state_to_json(const policy::PolicyState& state, std::int64_t monotonic_ms,
                          std::int64_t unix_ms) {
  json vms = json::object();
  for (const auto& [uuid, vm] : state.vms) {
    vms[uuid] = {{"last_change_ms", vm.last_change_ms},
                 {"last_direction", vm.last_direction},
                 {"last_target_bytes", optional_u64(vm.last_target_bytes)},
                 {"last_from_bytes", optional_u64(vm.last_from_bytes)},
                 {"swap_in_bytes_total", optional_u64(vm.swap_in_bytes_total)},
                 {"major_faults_total", optional_u64(vm.major_faults_total)},
                 {"sampled_ms", vm.sampled_ms},
                 {"last_change_unix_ms", vm.last_change_unix_ms},
                 {"in_use_bytes", optional_u64(vm.in_use_bytes)},
                 {"burst_bytes", vm.burst_bytes},
                 {"burst_ms", vm.burst_ms},
                 {"faults_before_shrink_per_second", vm.faults_before_shrink_per_second},
                 {"cache_protected_until_ms", vm.cache_protected_until_ms},
                 {"faults_report_unix_s", optional_i64(vm.faults_report_unix_s)},
                 {"in_use_report_unix_s", optional_i64(vm.in_use_report_unix_s)},
                 {"disk_read_bytes_total", optional_u64(vm.disk_read_bytes_total)},
                 {"disk_reads_at_ms", vm.disk_reads_at_ms},
                 {"disk_reads_per_second", vm.disk_reads_per_second},
                 {"reads_before_shrink_per_second", vm.reads_before_shrink_per_second},
                 {"last_shrink_ms", optional_i64(vm.last_shrink_ms)},
                 {"size_before_shrink_bytes", optional_u64(vm.size_before_shrink_bytes)}};
  }
  json alerts = json::array();
  for (const auto& [key, memory] : state.alerts) {
    const auto& a = memory.alert;
    alerts.push_back({{"name", a.name},
                      {"subject", a.subject},
                      {"severity", policy::to_string(a.severity)},
                      {"summary", a.summary},
                      {"since_ms", a.since_ms},
                      {"clear_ticks", memory.clear_ticks}});
  }
  json history = json::array();
  for (const auto& [ms, bytes] : state.available_history) {
    history.push_back({ms, bytes});
  }
  const json out = {
      {"format", kStateFormat},
      {"saved_unix_ms", unix_ms},
      {"saved_monotonic_ms", monotonic_ms},
      {"vms", vms},
      {"alerts", alerts},
      {"ksm",
       {{"merging_since_full_scans", optional_u64(state.ksm.merging_since_full_scans)},
        {"stopped_for_cost_ms", state.ksm.stopped_for_cost_ms}}},
      {"available_history", history},
      {"last_not_ok_ms", state.last_not_ok_ms ? json(*state.last_not_ok_ms) : json(nullptr)},
  };
  return report::dump_json(out) + "\n";
}

namespace {

// Moves a time saved on the old monotonic clock onto the current one; throws for a time out of
// range (caught with the JSON errors).
using MoveTime = std::function<std::int64_t(std::int64_t)>;

// A wall-clock time in the file (Unix ms, or s with `per_second` 1000): not before 1970 and not
// after the save (a time in the future would keep a guest "settling" forever); throws otherwise.
std::int64_t wall_time(std::int64_t t, std::int64_t saved_unix_ms, std::int64_t per_second) {
  if (t < 0 || t > saved_unix_ms / per_second + 1) {
    throw std::out_of_range("a wall-clock time is out of range");
  }
  return t;
}

std::optional<std::int64_t> wall_time(std::optional<std::int64_t> t, std::int64_t saved_unix_ms,
                                      std::int64_t per_second) {
  return t ? std::optional(wall_time(*t, saved_unix_ms, per_second)) : std::nullopt;
}

policy::PolicyState::Vm read_vm(const json& v, const MoveTime& moved, std::int64_t saved_unix_ms) {
  policy::PolicyState::Vm vm;
  vm.last_direction = std::clamp(small_int(v.at("last_direction")), -1, 1);
  // 0 with no direction means "never changed" and stays so.
  vm.last_change_ms = vm.last_direction != 0 ? moved(i64(v.at("last_change_ms"))) : 0;
  vm.last_target_bytes = read_optional_u64(v, "last_target_bytes");
  // Added when in-flight commands were bounded by where they started: absent in older files,
  // whose last command is then taken as over.
  vm.last_from_bytes =
      v.contains("last_from_bytes") ? read_optional_u64(v, "last_from_bytes") : std::nullopt;
  vm.swap_in_bytes_total = read_optional_u64(v, "swap_in_bytes_total");
  vm.major_faults_total = read_optional_u64(v, "major_faults_total");
  vm.sampled_ms = moved(i64(v.at("sampled_ms")));
  // Added with the graded policy; files written before it lack them.
  if (v.contains("burst_bytes")) {
    vm.last_change_unix_ms = wall_time(i64(v.at("last_change_unix_ms")), saved_unix_ms, 1);
    vm.in_use_bytes = read_optional_u64(v, "in_use_bytes");
    vm.burst_bytes = u64(v.at("burst_bytes"));
    vm.burst_ms = moved(i64(v.at("burst_ms")));
    vm.faults_before_shrink_per_second =
        std::clamp(v.at("faults_before_shrink_per_second").get<double>(), -1.0, 1e12);
    vm.cache_protected_until_ms = moved(i64(v.at("cache_protected_until_ms")));
  }
  // Added with rates over the guest's report times: unset in older files, where the first rate
  // after a restart is then taken over the ticks, as before.
  // The guest's report times come from its statistics, on the host's clock (QEMU's).
  vm.faults_report_unix_s =
      wall_time(read_optional_i64(v, "faults_report_unix_s"), saved_unix_ms, 1000);
  vm.in_use_report_unix_s =
      wall_time(read_optional_i64(v, "in_use_report_unix_s"), saved_unix_ms, 1000);
  // Added with disk reads as re-reads: absent in older files, where the first rate after a
  // restart is then taken between the next two asks.
  if (v.contains("disk_reads_at_ms")) {
    vm.disk_read_bytes_total = read_optional_u64(v, "disk_read_bytes_total");
    vm.disk_reads_at_ms = moved(i64(v.at("disk_reads_at_ms")));
    vm.disk_reads_per_second = std::clamp(v.at("disk_reads_per_second").get<double>(), 0.0, 1e15);
    vm.reads_before_shrink_per_second =
        std::clamp(v.at("reads_before_shrink_per_second").get<double>(), -1.0, 1e15);
  }
  // Kept since a grow no longer ends a shrink's re-read measure; older files had only the last
  // command, which is the last shrink when it was one.
  if (const auto shrunk = read_optional_i64(v, "last_shrink_ms")) {
    vm.last_shrink_ms = moved(*shrunk);
  } else if (!v.contains("last_shrink_ms") && vm.last_direction < 0) {
    vm.last_shrink_ms = vm.last_change_ms;
  }
  // Added with growth back to it for re-reads: absent in older files, where such growth is then
  // bounded by a minute of re-reads alone until the next run of shrinks.
  vm.size_before_shrink_bytes = v.contains("size_before_shrink_bytes")
                                    ? read_optional_u64(v, "size_before_shrink_bytes")
                                    : std::nullopt;
  return vm;
}

Result<policy::PolicyState::AlertMemory> read_alert(const json& a, const MoveTime& moved) {
  policy::PolicyState::AlertMemory memory;
  memory.alert.name = a.at("name").get<std::string>();
  memory.alert.subject = a.at("subject").get<std::string>();
  const auto severity = a.at("severity").get<std::string>();
  if (severity != "warning" && severity != "critical") {
    return Error{"", 0, 0, "alerts: unknown severity '" + shorten_utf8(severity, 40) + "'"};
  }
  memory.alert.severity =
      severity == "critical" ? policy::Severity::critical : policy::Severity::warning;
  memory.alert.summary = a.at("summary").get<std::string>();
  memory.alert.since_ms = moved(i64(a.at("since_ms")));
  memory.clear_ticks = small_int(a.at("clear_ticks"));
  return memory;
}

// The forecast's history, [ms, bytes] pairs, into `state`.
Status read_history(const json& history, const MoveTime& moved, policy::PolicyState& state) {
  if (!history.is_array() || history.size() > kMaxHistory) {
    return Error{"", 0, 0,
                 "available_history: expected an array of at most " + std::to_string(kMaxHistory) +
                     " points"};
  }
  for (const auto& point : history) {
    if (!point.is_array() || point.size() != 2) {
      return Error{"", 0, 0, "available_history: expected [ms, bytes] pairs"};
    }
    state.available_history.emplace_back(moved(i64(point[0])), u64(point[1]));
  }
  return Ok{};
}

}  // namespace

Result<policy::PolicyState> state_from_json(const std::string& text, std::int64_t monotonic_ms,
                                            std::int64_t unix_ms) {
  if (report::json_nesting_exceeds(text, 8)) {
    return Error{"", 0, 0, "nested deeper than a state file is"};
  }
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Error{"", 0, 0, "not a JSON object"};
  }
  try {
    if (small_int(j.at("format")) != kStateFormat) {
      return Error{"", 0, 0,
                   "format " + std::to_string(small_int(j.at("format"))) + ", expected " +
                       std::to_string(kStateFormat)};
    }
    const auto saved_unix = i64(j.at("saved_unix_ms"));
    const auto saved_mono = i64(j.at("saved_monotonic_ms"));
    if (saved_unix < 0 || saved_unix > kMaxTime || saved_mono < 0 || saved_mono > kMaxTime) {
      return Error{"", 0, 0, "saved_unix_ms or saved_monotonic_ms out of range"};
    }
    const std::int64_t age = unix_ms - saved_unix;
    if (age < 0) {
      return Error{"", 0, 0, "saved in the future (the wall clock went back?)"};
    }
    if (age > std::chrono::duration_cast<std::chrono::milliseconds>(kMaxStateAge).count()) {
      return Error{"", 0, 0,
                   "saved " + std::to_string(age / 60'000) + " min ago; older than " +
                       std::to_string(kMaxStateAge.count()) + " h is not trusted"};
    }
    // A time t saved on the old monotonic clock lay (saved_mono - t) before the save, which lay
    // `age` before now.
    const std::int64_t shift = monotonic_ms - age - saved_mono;
    const MoveTime moved = [shift](std::int64_t t) {
      if (t < -kMaxTime || t > kMaxTime) {
        throw std::out_of_range("a time is out of range");
      }
      return t + shift;
    };

    policy::PolicyState state;
    const auto& vms = j.at("vms");
    if (!vms.is_object() || vms.size() > kMaxStateVms) {
      return Error{"", 0, 0,
                   "vms: expected an object of at most " + std::to_string(kMaxStateVms) + " VMs"};
    }
    for (const auto& [uuid, v] : vms.items()) {
      state.vms.emplace(uuid, read_vm(v, moved, saved_unix));
    }
    const auto& alerts = j.at("alerts");
    if (!alerts.is_array() || alerts.size() > kMaxAlerts) {
      return Error{
          "", 0, 0,
          "alerts: expected an array of at most " + std::to_string(kMaxAlerts) + " alerts"};
    }
    for (const auto& a : alerts) {
      auto memory = read_alert(a, moved);
      if (!memory) {
        return memory.error();
      }
      state.alerts[{memory->alert.name, memory->alert.subject}] = std::move(*memory);
    }
    const auto& ksm = j.at("ksm");
    state.ksm.merging_since_full_scans = read_optional_u64(ksm, "merging_since_full_scans");
    const auto stopped = i64(ksm.at("stopped_for_cost_ms"));
    state.ksm.stopped_for_cost_ms = stopped < 0 ? -1 : moved(stopped);
    if (auto read = read_history(j.at("available_history"), moved, state); !read) {
      return read.error();
    }
    if (const auto it = j.find("last_not_ok_ms"); it != j.end() && !it->is_null()) {
      state.last_not_ok_ms = moved(i64(*it));
    }
    return state;
  } catch (const std::exception& e) {
    // Missing keys, mistyped values, times out of range; the message names the key or type.
    return Error{"", 0, 0, std::string("damaged: ") + e.what()};
  }
}

Status save_state_file(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  ::unlink(tmp.c_str());  // a leftover from a crash mid-save, or anything planted there
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) {
    return Error{tmp, 0, errno, "cannot create the state file"};
  }
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      const int err = n < 0 ? errno : ENOSPC;
      ::close(fd);
      ::unlink(tmp.c_str());
      return Error{tmp, 0, err, "cannot write the state file"};
    }
    done += static_cast<std::size_t>(n);
  }
  // On disk before the rename, so a crash leaves the old file or the new one, never a torn one.
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    return Error{tmp, 0, err, "cannot sync the state file"};
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return Error{path, 0, err, "cannot replace the state file"};
  }
  return Ok{};
}

Result<std::string> read_state_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0) {
    return Error{path, 0, errno, "cannot open the state file"};
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<std::uint64_t>(st.st_size) > kMaxStateBytes) {
    ::close(fd);
    return Error{path, 0, 0,
                 "not a regular file of at most " + std::to_string(kMaxStateBytes >> 20) + " MiB"};
  }
  std::string text(static_cast<std::size_t>(st.st_size), '\0');
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::read(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(done);
  return text;
}

std::string resolve_state_path(const std::string& configured) {
  if (configured != "auto") {
    return configured;
  }
  const char* dir = std::getenv("STATE_DIRECTORY");
  if (dir == nullptr || *dir != '/') {
    return "";
  }
  std::string first(dir);
  first = first.substr(0, first.find(':'));  // systemd separates several with ':'
  return first + "/policy-state.json";
}

}  // namespace memtide::daemon
