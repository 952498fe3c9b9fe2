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

using namespace memtide;
using namespace memtide::daemon;

namespace {

const char* kUsage = R"(Usage: memtidectl COMMAND [OPTIONS]

Commands:
  restore        give every VM memtide manages its maximum memory back (what memtided does on
                 stop with daemon.on_stop: restore); works without a running daemon
  check-config   validate a configuration file (default /etc/memtide/memtide.yaml)

Options:
  -c, --config FILE   configuration (default /etc/memtide/memtide.yaml; built-in defaults
                      when the default path is absent)
      --connect URI   libvirt URI instead of libvirt.uri
  -n, --dry-run       restore: show what would change, change nothing
  -h, --help          this help
  -V, --version       the version

Exit codes: 0 success, 1 a VM could not be restored or libvirt is unreachable, 2 invalid
configuration, 64 bad command line.
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

int run(const std::vector<std::string>& args) {
  if (args.empty()) {
    return usage_error("a command is required");
  }
  std::string command;
  std::string config_path = kDefaultConfigPath;
  bool config_given = false;
  std::optional<std::string> connect;
  bool dry_run = false;
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
  if (command != "restore") {
    return usage_error(command.empty() ? "a command is required"
                                       : "unknown command '" + command + "'");
  }
  const auto config = load_config_or_defaults(config_path, config_given, std::cerr);
  if (!config) {
    return kExitInvalidConfig;
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
