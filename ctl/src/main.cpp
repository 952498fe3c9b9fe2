// memtidectl: the operator's command line. Commands that need no running daemon talk to libvirt
// or read files directly; the others ask memtided over its control socket. One file per command.
#include <csignal>
#include <iostream>
#include <string>
#include <vector>

#include <sys/stat.h>

#include <memtide/config/files.hpp>
#include <memtide/config/overrides.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/core/text.hpp>
#include <memtide/report/control_protocol.hpp>

#include "args.hpp"
#include "commands.hpp"

using namespace memtide;
using namespace memtide::ctl;

namespace {

int run(const std::vector<std::string>& argv) {
  auto parsed = parse_args(argv);
  if (parsed.exit_code) {
    return *parsed.exit_code;
  }
  const Args& a = parsed.args;
  if (a.command == "check-config") {
    if (a.json) {
      return ctl::check_config_json(a.config_path);
    }
    return config::check_config_file(a.config_path, std::cout) ? kExitOk : kExitInvalidConfig;
  }
  if (a.command == "scan") {
    return ctl::scan(a.operands, a.passes, a.interval_s, a.json);
  }
  const bool control_command = a.command == "status" || a.command == "explain" ||
                               a.command == "pause" || a.command == "resume" ||
                               a.command == "reload" || a.command == "top" ||
                               (a.command == "history" && a.traces.empty());
  if (control_command) {
    std::string path = report::kDefaultControlSocket;
    if (a.socket) {
      path = *a.socket;
    } else if (const auto config =
                   config::load_config_or_defaults(a.config_path, a.config_given, std::cerr)) {
      path = config->daemon.control_socket;
    } else {
      // The errors are printed: the daemon would reject the file for the same reasons. The
      // unit's reload (--pid) still tells it, so that its status and journal say so too.
      if (a.command == "reload" && a.reload_pid) {
        ::kill(*a.reload_pid, SIGHUP);
      }
      return kExitInvalidConfig;
    }
    struct stat st {};
    if (a.command == "reload" && a.reload_pid && ::stat(path.c_str(), &st) != 0) {
      return ctl::signal_reload(*a.reload_pid, path);
    }
    if (a.command == "history") {
      return ctl::history(path, a);
    }
    return a.command == "top" ? ctl::top(path, a) : ctl::control(path, a);
  }
  if (a.command != "restore" && a.command != "simulate" && a.command != "history") {
    return usage_error(a.command.empty() ? "a command is required"
                                         : "unknown command '" + shorten_utf8(a.command, 40) + "'");
  }
  if (a.command == "simulate" && a.traces.empty()) {
    return usage_error("simulate needs --trace FILE");
  }
  const auto config = config::load_config_or_defaults(a.config_path, a.config_given, std::cerr);
  if (!config) {
    return kExitInvalidConfig;
  }
  if (a.command == "simulate") {
    return ctl::simulate(config, a.traces, a.quiet, a.json, a.plot);
  }
  if (a.command == "history") {
    return ctl::history_of_traces(config, a);
  }
  config::Overrides overrides;
  overrides.libvirt_uri = a.connect;
  return ctl::restore(*config::with_overrides(config, overrides), a.dry_run, a.if_service_failed,
                      a.json);
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(std::vector<std::string>(argv + 1, argv + argc));
  } catch (const std::exception& e) {
    std::cerr << "memtidectl: fatal: " << e.what() << '\n';
    return kExitFailure;
  }
}
