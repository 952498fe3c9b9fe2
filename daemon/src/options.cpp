#include "options.hpp"

#include <memtide/core/command_line.hpp>
#include <memtide/core/text.hpp>

namespace memtide::daemon {

std::string usage_text() {
  return R"(Usage: memtided [OPTIONS]

Memory-overcommit daemon for KVM hosts: watches host and guest memory, steers virtio
balloons and KSM from YAML policies, and warns before the host swaps.

Options:
  -c, --config FILE        configuration file (default /etc/memtide/memtide.yaml; when the
                           default is absent, built-in defaults are used)
      --check-config FILE  validate FILE, print every error as FILE:LINE:COLUMN: key: message,
                           and exit (0 valid, 2 invalid)
      --once               collect one snapshot, print it as JSON on stdout, and exit
      --procfs DIR         read procfs from DIR instead of daemon.procfs (default /proc)
      --sysfs DIR          read sysfs from DIR instead of daemon.sysfs (default /sys)
      --connect URI        libvirt URI instead of libvirt.uri (default qemu:///system)
      --dry-run            decide and log every tick, but change no balloon (daemon.dry_run)
      --metrics-listen ADDR:PORT
                           serve /metrics there instead of metrics.listen ("" turns it off)
      --control-socket PATH
                           memtidectl's socket instead of daemon.control_socket ("" off)
      --log-target TARGET  auto (journal when started by systemd, else stderr), journal, stderr
  -h, --help               show this help and exit
  -V, --version            print the version and exit

Signals: SIGHUP reloads the configuration (an invalid file keeps the running one);
SIGTERM and SIGINT stop the daemon.

Exit codes: 0 success, 1 runtime failure, 2 invalid configuration, 64 bad command line.
)";
}

namespace {

// The options that override one setting of the configuration file with their argument.
std::optional<std::string> config::Overrides::*overriding_option(const std::string& arg) {
  static const std::pair<const char*, std::optional<std::string> config::Overrides::*> kOptions[] =
      {{"--procfs", &config::Overrides::procfs},
       {"--sysfs", &config::Overrides::sysfs},
       {"--connect", &config::Overrides::libvirt_uri},
       {"--control-socket", &config::Overrides::control_socket},
       {"--metrics-listen", &config::Overrides::metrics_listen}};
  for (const auto& [name, member] : kOptions) {
    if (arg == name) {
      return member;
    }
  }
  return nullptr;
}

}  // namespace

ParsedOptions parse_options(const std::vector<std::string>& args) {
  ParsedOptions parsed;
  Options& o = parsed.options;
  CommandLine line(args);
  while (!line.done()) {
    const auto word = line.next();
    const std::string& arg = word.name;
    // Fetches the option's argument, from "--opt=value" or the next word.
    auto value = [&](std::string& out) -> bool {
      auto v = line.value();
      if (!v) {
        parsed.error = "option " + arg + " needs an argument";
        return false;
      }
      out = std::move(*v);
      return true;
    };
    std::string v;
    if (arg == "-h" || arg == "--help") {
      o.mode = Options::Mode::help;
    } else if (arg == "-V" || arg == "--version") {
      o.mode = Options::Mode::version;
    } else if (arg == "--once") {
      o.mode = Options::Mode::once;
    } else if (arg == "--dry-run") {
      o.overrides.dry_run = true;
    } else if (arg == "-c" || arg == "--config") {
      if (!value(o.config_path)) {
        return parsed;
      }
      o.config_path_given = true;
    } else if (arg == "--check-config") {
      if (!value(o.config_path)) {
        return parsed;
      }
      o.config_path_given = true;
      o.mode = Options::Mode::check_config;
    } else if (const auto setting = overriding_option(arg)) {
      if (!value(v)) {
        return parsed;
      }
      o.overrides.*setting = v;
    } else if (arg == "--log-target") {
      if (!value(v)) {
        return parsed;
      }
      if (!parse_log_target(v, o.log_target)) {
        parsed.error =
            "--log-target must be auto, journal or stderr, got '" + shorten_utf8(v, 40) + "'";
        return parsed;
      }
    } else {
      parsed.error = "unknown argument '" + shorten_utf8(word.text, 40) + "'";
      return parsed;
    }
    if (line.unused_inline_value()) {
      parsed.error = "option " + arg + " takes no argument";
      return parsed;
    }
  }
  return parsed;
}

}  // namespace memtide::daemon
