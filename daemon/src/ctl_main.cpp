// memtidectl: the operator's command line. Commands that need no running daemon talk to libvirt
// or read files directly.
#include <iostream>
#include <string>
#include <vector>

#include <unistd.h>

#include <memtide/collectors/host_source.hpp>
#include <memtide/config/loader.hpp>

#include "collect.hpp"
#include "config_files.hpp"
#include "options.hpp"
#include "restore.hpp"
#include "simulate.hpp"
#include "trace.hpp"

using namespace memtide;
using namespace memtide::daemon;

namespace {

const char* kUsage = R"(Usage: memtidectl COMMAND [OPTIONS]

Commands:
  restore        give every VM memtide manages its maximum memory back (what memtided does on
                 stop with daemon.on_stop: restore); works without a running daemon
  check-config   validate a configuration file (default /etc/memtide/memtide.yaml)
  simulate       replay a recorded trace (daemon.record) through the policy of --config and
                 print each balloon command and alert it decides, then summary figures

Options:
  -c, --config FILE   configuration (default /etc/memtide/memtide.yaml; built-in defaults
                      when the default path is absent)
      --connect URI   libvirt URI instead of libvirt.uri
  -n, --dry-run       restore: show what would change, change nothing
  -t, --trace FILE    simulate: a trace to replay; repeat for rotated files, oldest first
                      (--trace trace.jsonl.1 --trace trace.jsonl)
  -q, --quiet         simulate: print the summary only
      --json          simulate: print one JSON object (events, summary, skipped lines)
  -h, --help          this help
  -V, --version       the version

Exit codes: 0 success, 1 a VM could not be restored, libvirt is unreachable, or a trace cannot
be read or holds no snapshot, 2 invalid configuration, 64 bad command line.
)";

int usage_error(const std::string& message) {
  std::cerr << "memtidectl: " << message << "\nTry 'memtidectl --help'.\n";
  return kExitUsage;
}

int restore(const config::Config& config, const std::optional<std::string>& connect, bool dry_run) {
  auto worker = make_libvirt_worker(config, connect, config.daemon.procfs);
  std::int64_t now = 0;
  auto vms = worker->collect(now, config.libvirt.timeout);
  if (!vms) {
    std::cerr << "memtidectl: " << vms.error().message << '\n';
    return kExitFailure;
  }
  int failures = 0;
  for (const auto& outcome :
       restore_balloons(*worker, *vms, config, dry_run, config.libvirt.timeout)) {
    std::cout << describe(outcome) << '\n';
    failures += outcome.kind == RestoreOutcome::Kind::failed ? 1 : 0;
  }
  return failures == 0 ? kExitOk : kExitFailure;
}

int simulate(std::shared_ptr<const config::Config> config, const std::vector<std::string>& traces,
             bool quiet, bool json) {
  Replay replay(std::move(config));
  nlohmann::ordered_json events = nlohmann::ordered_json::array();
  nlohmann::ordered_json skipped = nlohmann::ordered_json::array();
  for (const auto& trace : traces) {
    auto status = read_trace(
        trace,
        [&](Snapshot&& snapshot) {
          for (const auto& event : replay.feed(snapshot)) {
            if (json) {
              events.push_back(to_json(event));
            } else if (!quiet) {
              std::cout << describe(event) << '\n';
            }
          }
        },
        [&](const Error& error) {
          skipped.push_back(error.to_string());
          std::cerr << "memtidectl: skipped " << error.to_string() << '\n';
        });
    if (!status) {
      std::cerr << "memtidectl: " << status.error().to_string() << '\n';
      return kExitFailure;
    }
  }
  if (json) {
    nlohmann::ordered_json out = {
        {"events", events}, {"summary", to_json(replay.summary())}, {"skipped", skipped}};
    std::cout << out.dump(2) << '\n';
  } else {
    if (!quiet && replay.summary().ticks > 0) {
      std::cout << '\n';
    }
    std::cout << describe(replay.summary());
    if (!skipped.empty()) {
      std::cout << "skipped lines: " << skipped.size() << '\n';
    }
  }
  if (replay.summary().ticks == 0) {
    std::cerr << "memtidectl: the trace holds no snapshot\n";
    return kExitFailure;
  }
  return kExitOk;
}

int run(const std::vector<std::string>& args) {
  if (args.empty()) {
    return usage_error("a command is required");
  }
  std::string command;
  std::string config_path = kDefaultConfigPath;
  bool config_given = false;
  std::optional<std::string> connect;
  bool dry_run = false;
  std::vector<std::string> traces;
  bool quiet = false;
  bool json = false;
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
      return kExitOk;
    }
    if (a == "-V" || a == "--version") {
      std::cout << "memtidectl " MEMTIDE_VERSION "\n";
      return kExitOk;
    }
    if (a == "-c" || a == "--config") {
      auto v = next();
      if (!v) {
        return usage_error(a + " needs a file");
      }
      config_path = *v;
      config_given = true;
    } else if (a == "--connect") {
      connect = next();
      if (!connect) {
        return usage_error("--connect needs a URI");
      }
    } else if (a == "-n" || a == "--dry-run") {
      dry_run = true;
    } else if (a == "-t" || a == "--trace") {
      auto v = next();
      if (!v) {
        return usage_error(a + " needs a file");
      }
      traces.push_back(*v);
    } else if (a == "-q" || a == "--quiet") {
      quiet = true;
    } else if (a == "--json") {
      json = true;
    } else if (command.empty() && !a.empty() && a[0] != '-') {
      command = a;
    } else if (command == "check-config" && !config_given && !a.empty() && a[0] != '-') {
      config_path = a;
      config_given = true;
    } else {
      return usage_error("unexpected argument '" + a + "'");
    }
  }
  if (command == "check-config") {
    return check_config_file(config_path, std::cout);
  }
  if (command != "restore" && command != "simulate") {
    return usage_error(command.empty() ? "a command is required"
                                       : "unknown command '" + command + "'");
  }
  if (command == "simulate" && traces.empty()) {
    return usage_error("simulate needs --trace FILE");
  }
  const auto config = load_config_or_defaults(config_path, config_given, std::cerr);
  if (!config) {
    return kExitInvalidConfig;
  }
  if (command == "simulate") {
    return simulate(config, traces, quiet, json);
  }
  return restore(*config, connect, dry_run);
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
