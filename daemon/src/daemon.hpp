// The long-running process: an sd-event loop with a periodic tick, signal handling for
// stop/reload, and the systemd notification protocol (READY, STATUS, RELOADING, STOPPING;
// WATCHDOG pings are sent by sd-event itself when WATCHDOG_USEC is set).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>

#include "collect.hpp"
#include "log.hpp"
#include "options.hpp"

struct sd_event;
struct sd_event_source;
struct signalfd_siginfo;

namespace memtide::daemon {

class Daemon {
 public:
  // `config` is the configuration already loaded (and validated) by main(); reloads read
  // `options.config_path` again.
  Daemon(Options options, std::shared_ptr<const config::Config> config, Logger& log);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Runs until SIGTERM/SIGINT. Returns the process exit code.
  int run();

 private:
  static int on_signal(sd_event_source* source, const signalfd_siginfo* info, void* self);
  static int on_timer(sd_event_source* source, std::uint64_t usec, void* self);

  void tick();
  void reload();
  // Runs the daemon.on_stop action, then ends the loop.
  void stop();
  void arm_timer(std::uint64_t now_usec);
  void apply(std::shared_ptr<const config::Config> config);
  void notify_status();
  void report_vms(const Snapshot& snapshot);

  Options options_;
  std::shared_ptr<const config::Config> config_;
  Logger& log_;
  std::unique_ptr<Collector> collector_;

  sd_event* event_ = nullptr;
  sd_event_source* timer_ = nullptr;

  std::uint64_t ticks_ = 0;
  std::optional<Snapshot> last_snapshot_;  // last successful collection
  std::string last_collect_error_;         // to log a failure once, not every tick
  std::string last_reload_error_;          // shown in STATUS= until the next good reload
  std::string last_hypervisor_error_;      // to log libvirt going down and up once each
  std::map<std::string, std::string> reported_metadata_errors_;  // uuid -> errors logged
};

}  // namespace memtide::daemon
