// memtided entry point: parse the command line, load the configuration, dispatch to a mode.
#include <cerrno>
#include <iostream>

#include <malloc.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memtide/collectors/collect.hpp>
#include <memtide/config/files.hpp>
#include <memtide/config/overrides.hpp>
#include <memtide/report/json_text.hpp>
#include <memtide/report/snapshot_json.hpp>

#include "daemon.hpp"
#include "options.hpp"

using namespace memtide;
using namespace memtide::daemon;

namespace {

int once(const config::Config& config) {
  collectors::HostRoots roots{config.daemon.procfs, config.daemon.sysfs};
  auto worker = collectors::make_libvirt_worker(config);
  collectors::Collector collector(std::move(roots), std::move(worker), config.libvirt.timeout);
  auto snapshot = collector.collect();
  if (!snapshot) {
    std::cerr << "memtided: " << snapshot.error().to_string() << '\n';
    return kExitFailure;
  }
  if (!snapshot->hypervisor_up) {
    std::cerr << "memtided: no VM figures: " << snapshot->hypervisor_error << '\n';
  }
  std::cout << report::dump_json(report::to_json(*snapshot), 2) << '\n';
  return kExitOk;
}

int run_main(int argc, char** argv) {
  // Each libvirt connection has a worker thread that collects at the same moment as the others:
  // sharing two arenas, ten of them waited on each other's malloc locks for a fifth of their
  // tick (scripts/bench, part 3). With one connection the resident set stayed as it was with two
  // arenas: 7.1 MiB beyond the test driver at 1,000 VMs after scrapes.
  mallopt(M_ARENA_MAX, 8);
  // Blocks of 256 KiB or more (a 1,000-VM metrics page and its gzip, a tick's vector of VMs) are
  // mapped for themselves and given back when freed. Left to itself, glibc raises this
  // threshold after the first such block is freed and serves the next ones from a heap, whose
  // freed middle stays resident: 3 MiB more at 1,000 VMs after scrapes (scripts/bench). The
  // price is a few mmap/munmap calls and page faults per tick: a vector of VMs (800 KiB at
  // 1,000 VMs) mapped afresh costs 200 faults, so the collection sorts in place rather than
  // into new vectors.
  mallopt(M_MMAP_THRESHOLD, 256 * 1024);
  // Every guest's QEMU process keeps a descriptor open (its statm, re-read each tick), so a host
  // of more guests than the usual soft limit of 1024 must not run short. memtided waits with
  // poll and epoll only (never select), so the soft limit may be the hard one.
  if (rlimit files{}; getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  const auto parsed = parse_options(std::vector<std::string>(argv + 1, argv + argc));
  if (!parsed.error.empty()) {
    std::cerr << "memtided: " << parsed.error << "\nTry 'memtided --help'.\n";
    return kExitUsage;
  }
  const Options& options = parsed.options;
  switch (options.mode) {
    case Options::Mode::help:
      std::cout << usage_text();
      return kExitOk;
    case Options::Mode::version:
      std::cout << "memtided " MEMTIDE_VERSION "\n";
      return kExitOk;
    case Options::Mode::check_config:
      return config::check_config_file(options.config_path, std::cout) ? kExitOk
                                                                       : kExitInvalidConfig;
    case Options::Mode::once:
    case Options::Mode::run:
      break;
  }
  auto loaded =
      config::load_config_or_defaults(options.config_path, options.config_path_given, std::cerr);
  if (!loaded) {
    return kExitInvalidConfig;
  }
  const auto config = config::with_overrides(std::move(loaded), options.overrides);
  if (options.mode == Options::Mode::once) {
    return once(*config);
  }
  Logger log(options.log_target, config->daemon.log_level);
  Daemon daemon(options, config, log);
  return daemon.run();
}
}  // namespace

int main(int argc, char** argv) {
  try {
    return run_main(argc, argv);
  } catch (const std::exception& e) {
    // Library layers return errors as values; anything thrown is a bug or resource exhaustion.
    std::cerr << "memtided: fatal: " << e.what() << '\n';
    return kExitFailure;
  }
}
