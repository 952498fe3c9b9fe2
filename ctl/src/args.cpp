#include "args.hpp"

#include <cmath>
#include <cstdlib>
#include <iostream>

#include <memtide/config/files.hpp>
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
  -t, --trace FILE    simulate: a trace to replay; repeat for rotated files, oldest first
                      (--trace trace.jsonl.1 --trace trace.jsonl)
  -q, --quiet         simulate: print the summary only
      --json          simulate, scan, status, explain: print JSON
      --passes N      scan: passes over each process (default 2; volatility needs 2)
      --interval S    scan: seconds between passes (default 1)
  -s, --socket PATH   the daemon's control socket (default: daemon.control_socket of the
                      configuration, /run/memtide/control.sock)
      --pid PID       reload: when the control socket does not exist (daemon.control_socket
                      ""), send SIGHUP to PID instead; the result is then only in the journal
                      (the unit's ExecReload)
  -h, --help          this help
  -V, --version       the version

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

}  // namespace

int usage_error(const std::string& message) {
  std::cerr << "memtidectl: " << message << "\nTry 'memtidectl --help'.\n";
  return kExitUsage;
}

Parsed parse_args(const std::vector<std::string>& args) {
  Parsed out;
  Args& o = out.args;
  o.config_path = config::kDefaultConfigPath;
  if (args.empty()) {
    return {o, usage_error("a command is required")};
  }
  for (std::size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    auto next = [&]() -> std::optional<std::string> {
      if (i + 1 >= args.size()) {
        return std::nullopt;
      }
      return args[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return {o, kExitOk};
    }
    if (a == "-V" || a == "--version") {
      std::cout << "memtidectl " MEMTIDE_VERSION "\n";
      return {o, kExitOk};
    }
    if (a == "-c" || a == "--config") {
      auto v = next();
      if (!v) {
        return {o, usage_error(a + " needs a file")};
      }
      o.config_path = *v;
      o.config_given = true;
    } else if (a == "--connect") {
      o.connect = next();
      if (!o.connect) {
        return {o, usage_error("--connect needs a URI")};
      }
    } else if (a == "-n" || a == "--dry-run") {
      o.dry_run = true;
    } else if (a == "-t" || a == "--trace") {
      auto v = next();
      if (!v) {
        return {o, usage_error(a + " needs a file")};
      }
      o.traces.push_back(*v);
    } else if (a == "--if-service-failed") {
      o.if_service_failed = true;
    } else if (a == "-q" || a == "--quiet") {
      o.quiet = true;
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--passes" || a == "--interval") {
      if (auto error = parse_number(a, next(), out.args); !error.empty()) {
        return {o, usage_error(error)};
      }
    } else if (a == "--pid") {
      const auto v = next();
      char* end = nullptr;
      const long pid = v ? std::strtol(v->c_str(), &end, 10) : 0;
      if (!v || end == v->c_str() || *end != '\0' || pid < 2 || pid > INT32_MAX) {
        return {o, usage_error("--pid needs a process ID" +
                               (v ? ", got '" + shorten_utf8(*v, 40) + "'" : std::string()))};
      }
      o.reload_pid = static_cast<int>(pid);
    } else if (a == "-s" || a == "--socket") {
      o.socket = next();
      if (!o.socket) {
        return {o, usage_error(a + " needs a path")};
      }
    } else if (o.command.empty() && !a.empty() && a[0] != '-') {
      o.command = a;
    } else if (o.command == "check-config" && !o.config_given && !a.empty() && a[0] != '-') {
      o.config_path = a;
      o.config_given = true;
    } else if ((o.command == "explain" || o.command == "scan") && !a.empty() && a[0] != '-') {
      o.operands.push_back(a);
    } else {
      return {o, usage_error("unexpected argument '" + shorten_utf8(a, 40) + "'")};
    }
  }
  return out;
}

}  // namespace memtide::ctl
