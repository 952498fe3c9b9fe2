#include "args.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <map>
#include <string_view>

#include <memtide/config/files.hpp>
#include <memtide/config/units.hpp>
#include <memtide/core/command_line.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/core/text.hpp>

namespace memtide::ctl {

namespace {

const char* kUsage = R"(Usage: memtidectl COMMAND [OPTIONS]

Commands:
  restore        give every VM memtide manages its maximum memory back (what memtided does on
                 stop with daemon.on_stop: restore); works without a running daemon
  check-config   validate a configuration file (default /etc/memtide/memtide.yaml)
  simulate       replay a recorded trace (daemon.record) through the policy of --config and
                 print each balloon command and alert it decides, then summary figures
  scan PID...    page-content statistics of processes (no daemon needed): zero, duplicate and
                 volatile page shares and the memory KSM could save. Guest RAM of QEMU processes
                 (mappings marked mergeable); all private anonymous memory of other processes
  status         the running daemon's view: host, alerts, every VM with why it was or was not
                 resized, and the last balloon commands
  explain VM     why the daemon did or did not resize VM (name or UUID)
  top            a live view of the daemon, redrawn every --interval seconds: the host, then the
                 VMs by pressure (keys: p pressure, d what memtide does, n name, b balloon; q
                 quits); -n N or --once for scripts
  history [VM...]
                 what the daemon did and saw over time: each VM's balloon commands and alerts,
                 with a chart of its balloon, floor and usable memory on a terminal (VMs are
                 names or globs; all when none); with --trace, what the policy of --config
                 decides on a recorded trace instead
  pause          stop applying balloon commands (decisions are still made and logged)
  resume         apply them again
  reload         make the daemon reload its configuration; prints why a bad file was rejected

Options:
  -c, --config FILE   configuration (default /etc/memtide/memtide.yaml; built-in defaults
                      when the default path is absent)
      --connect URI   libvirt URI instead of libvirt.uri
  -n, --dry-run       restore: show what would change, change nothing
      --if-service-failed
                      restore: only when systemd's SERVICE_RESULT says memtided did not stop
                      cleanly and daemon.on_stop is restore (the unit's ExecStopPost)
  -t, --trace FILE    simulate, history: a trace to replay; repeat for rotated files, oldest
                      first (--trace trace.jsonl.1 --trace trace.jsonl)
      --since DUR     history: only what happened in the last DUR (30s, 10m, 2h, 48h; default
                      all there is)
  -q, --quiet         simulate: print the summary only
      --plot FILE     simulate: also write an SVG of the host's MemAvailable, each VM's memory
                      as recorded and the balloon targets the policy decides, over the trace
      --json          print JSON (every command)
      --vm GLOB       status: only the VMs whose name matches GLOB (repeatable)
      --sort KEY      status: order VMs by name (default), class, balloon, max, floor, usable,
                      target or held (maximum minus balloon); sizes largest first
      --utc           status: times in UTC (RFC 3339) rather than local with their age
      --passes N      scan: passes over each process (default 2; volatility needs 2)
      --interval S    scan: seconds between passes; top: between frames (default 1)
  -n, --iterations N  top: stop after N frames (-n is --dry-run for restore)
      --once          top: one frame, then stop
  -s, --socket PATH   the daemon's control socket (default: daemon.control_socket of the
                      configuration, /run/memtide/control.sock)
      --pid PID       reload: when the control socket does not exist (daemon.control_socket
                      ""), send SIGHUP to PID instead; the result is then only in the journal
                      (the unit's ExecReload)
  -h, --help          this help
  -V, --version       the version

An option's value follows it (--config FILE) or is joined with = (--config=FILE). An option that
the command does not take is an error.

Exit codes: 0 success, 1 a VM could not be restored, libvirt is unreachable, a trace cannot be
read or holds no snapshot, the daemon cannot be reached or refused the request, 2 invalid
configuration, 64 bad command line.
)";

// --passes N (a whole 1..3600) or --interval S (0..3600 s) into `args`; the usage error, or "".
std::string parse_number(const std::string& a, const std::optional<std::string>& v, Args& args) {
  char* end = nullptr;
  const double number = v ? std::strtod(v->c_str(), &end) : 0;
  // NaN compares false with everything: finiteness is checked first, and passes are whole.
  const bool whole = a == "--passes";
  if (!v || end == v->c_str() || *end != '\0' || !std::isfinite(number) ||
      number < (whole ? 1 : 0) || number > 3600 || (whole && number != std::floor(number))) {
    return a + " needs a number (passes a whole 1..3600, interval 0..3600 s)" +
           (v ? ", got '" + shorten_utf8(*v, 40) + "'" : std::string());
  }
  if (whole) {
    args.passes = static_cast<int>(number);
  } else {
    args.interval_s = number;
  }
  return "";
}

// The commands each option applies to; options not listed here (--help, --version) apply to
// all. Control commands find the daemon's socket through --config too.
const std::map<std::string_view, std::vector<std::string_view>>& option_commands() {
  static const std::map<std::string_view, std::vector<std::string_view>> kTable = {
      {"--config",
       {"restore", "check-config", "simulate", "status", "explain", "history", "top", "pause",
        "resume", "reload"}},
      {"--connect", {"restore"}},
      {"--dry-run", {"restore"}},
      {"--if-service-failed", {"restore"}},
      {"--trace", {"simulate", "history"}},
      {"--since", {"history"}},
      {"--quiet", {"simulate"}},
      {"--plot", {"simulate"}},
      {"--json",
       {"restore", "check-config", "simulate", "scan", "status", "explain", "history", "pause",
        "resume", "reload"}},
      {"--passes", {"scan"}},
      {"--interval", {"scan", "top"}},
      {"--iterations", {"top"}},
      {"--once", {"top"}},
      {"--socket", {"status", "explain", "history", "top", "pause", "resume", "reload"}},
      {"--pid", {"reload"}},
      {"--vm", {"status"}},
      {"--sort", {"status"}},
      {"--utc", {"status", "history"}},
  };
  return kTable;
}

// The long name of option `a` ("-c" -> "--config"), or "" when it is none.
std::string long_name(const std::string& a) {
  static const std::map<std::string_view, std::string_view> kShort = {
      {"-c", "--config"}, {"-n", "--dry-run"}, {"-t", "--trace"},  {"-q", "--quiet"},
      {"-s", "--socket"}, {"-h", "--help"},    {"-V", "--version"}};
  if (const auto it = kShort.find(a); it != kShort.end()) {
    return std::string(it->second);
  }
  if (option_commands().count(a) != 0 || a == "--help" || a == "--version") {
    return a;
  }
  return "";
}

// The usage error for an option given to a command that does not take it, or "".
std::string misplaced_option(const std::string& command, const std::vector<std::string>& given) {
  for (const auto& name : given) {
    const auto it = option_commands().find(name);
    if (it == option_commands().end()) {
      continue;
    }
    const auto& commands = it->second;
    if (std::find(commands.begin(), commands.end(), command) == commands.end()) {
      std::string message = name;
      message += " does not apply to ";
      message += command;
      message += " (it is for:";
      for (const auto c : commands) {
        message += c == commands.front() ? " " : ", ";
        message += c;
      }
      message += ")";
      return message;
    }
  }
  return "";
}

}  // namespace

const std::vector<std::string_view>& status_sort_keys() {
  static const std::vector<std::string_view> kKeys = {"name",  "class",  "balloon", "max",
                                                      "floor", "usable", "target",  "held"};
  return kKeys;
}

int usage_error(const std::string& message) {
  std::cerr << "memtidectl: " << message << "\nTry 'memtidectl --help'.\n";
  return kExitUsage;
}

namespace {

// Applies option `name` (its long name) to `o`, taking its value from `next` when it has one.
// Returns the usage error, or "".
std::string apply_option(const std::string& name, const std::string& spelled,
                         const std::function<std::optional<std::string>()>& next, Args& o) {
  const auto needs = [&spelled](const char* what) { return spelled + " needs " + what; };
  if (name == "--config" || name == "--trace" || name == "--socket" || name == "--connect" ||
      name == "--vm" || name == "--plot") {
    auto v = next();
    if (!v || v->empty()) {
      return needs(name == "--socket"    ? "a path"
                   : name == "--connect" ? "a URI"
                   : name == "--vm"      ? "a name or glob"
                                         : "a file");
    }
    if (name == "--config") {
      o.config_path = *v;
      o.config_given = true;
    } else if (name == "--trace") {
      o.traces.push_back(*v);
    } else if (name == "--socket") {
      o.socket = *v;
    } else if (name == "--connect") {
      o.connect = *v;
    } else if (name == "--plot") {
      o.plot = *v;
    } else {
      o.vm_globs.push_back(*v);
    }
  } else if (name == "--sort") {
    auto v = next();
    const auto& keys = status_sort_keys();
    if (!v || std::find(keys.begin(), keys.end(), *v) == keys.end()) {
      std::string message = "--sort takes one of";
      for (const auto k : keys) {
        message += k == keys.front() ? " " : ", ";
        message += k;
      }
      return message + (v ? ", got '" + shorten_utf8(*v, 40) + "'" : std::string());
    }
    o.sort = *v;
  } else if (name == "--since") {
    const auto v = next();
    const auto d = v ? config::parse_duration(*v) : Result<std::chrono::milliseconds>(Error{});
    if (!v || !d || d->count() <= 0) {
      return "--since needs a duration such as 30s, 10m or 2h" +
             (v ? ", got '" + shorten_utf8(*v, 40) + "'" : std::string());
    }
    o.since = *d;
  } else if (name == "--iterations") {
    const auto v = next();
    char* end = nullptr;
    const long n = v ? std::strtol(v->c_str(), &end, 10) : 0;
    if (!v || end == v->c_str() || *end != '\0' || n < 1 || n > 1'000'000) {
      return spelled + " needs a number of frames, 1 or more" +
             (v ? ", got '" + shorten_utf8(*v, 40) + "'" : std::string());
    }
    o.iterations = static_cast<int>(n);
  } else if (name == "--passes" || name == "--interval") {
    return parse_number(name, next(), o);
  } else if (name == "--pid") {
    const auto v = next();
    char* end = nullptr;
    const long pid = v ? std::strtol(v->c_str(), &end, 10) : 0;
    if (!v || end == v->c_str() || *end != '\0' || pid < 2 || pid > INT32_MAX) {
      return "--pid needs a process ID" +
             (v ? ", got '" + shorten_utf8(*v, 40) + "'" : std::string());
    }
    o.reload_pid = static_cast<int>(pid);
  } else {
    // Flags.
    o.dry_run = o.dry_run || name == "--dry-run";
    o.if_service_failed = o.if_service_failed || name == "--if-service-failed";
    o.quiet = o.quiet || name == "--quiet";
    o.json = o.json || name == "--json";
    o.utc = o.utc || name == "--utc";
    if (name == "--once") {
      o.iterations = 1;
    }
  }
  return "";
}

// An argument that is not an option: the command, check-config's file, explain's VM or scan's
// PIDs. Returns whether it was one of those.
bool take_operand(const std::string& a, Args& o) {
  if (a.empty() || a[0] == '-') {
    return false;
  }
  if (o.command.empty()) {
    o.command = a;
  } else if (o.command == "check-config" && !o.config_given) {
    o.config_path = a;
    o.config_given = true;
  } else if (o.command == "explain" || o.command == "scan" || o.command == "history") {
    o.operands.push_back(a);
  } else {
    return false;
  }
  return true;
}

}  // namespace

Parsed parse_args(const std::vector<std::string>& args) {
  Parsed out;
  Args& o = out.args;
  o.config_path = config::kDefaultConfigPath;
  if (args.empty()) {
    return {o, usage_error("a command is required")};
  }
  std::vector<std::string> given;  // long names of the options given
  CommandLine line(args);
  while (!line.done()) {
    const auto word = line.next();
    // top's -n counts frames, as top(1)'s does; everywhere else -n is --dry-run.
    const std::string name =
        word.name == "-n" && o.command == "top" ? "--iterations" : long_name(word.name);
    if (name.empty()) {
      if (word.inline_value || !take_operand(word.text, o)) {
        return {o, usage_error("unexpected argument '" + shorten_utf8(word.text, 40) + "'")};
      }
      continue;
    }
    if (name == "--help" || name == "--version") {
      std::cout << (name == "--help" ? kUsage : "memtidectl " MEMTIDE_VERSION "\n");
      return {o, kExitOk};
    }
    given.push_back(name);
    // Once the command is known, an option it does not take is refused before its value is
    // looked for; options before the command are checked at the end.
    if (!o.command.empty()) {
      if (auto error = misplaced_option(o.command, {name}); !error.empty()) {
        return {o, usage_error(error)};
      }
    }
    if (auto error = apply_option(
            name, word.name, [&line] { return line.value(); }, o);
        !error.empty()) {
      return {o, usage_error(error)};
    }
    if (line.unused_inline_value()) {
      return {o, usage_error(name + " takes no value")};
    }
  }
  if (auto error = misplaced_option(o.command, given); !error.empty()) {
    return {o, usage_error(error)};
  }
  return out;
}

}  // namespace memtide::ctl
