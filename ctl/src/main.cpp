// memtidectl: the operator's command line. Commands that need no running daemon talk to libvirt
// or read files directly.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

#include <memtide/collectors/host_source.hpp>
#include <memtide/collectors/page_scanner.hpp>
#include <memtide/config/loader.hpp>
#include <memtide/config/units.hpp>
#include <memtide/core/text.hpp>

#include "collect.hpp"
#include "config_files.hpp"
#include "control_socket.hpp"
#include "json_text.hpp"
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
  -h, --help          this help
  -V, --version       the version

Exit codes: 0 success, 1 a VM could not be restored, libvirt is unreachable, a trace cannot be
read or holds no snapshot, the daemon cannot be reached or refused the request, 2 invalid
configuration, 64 bad command line.
)";

int usage_error(const std::string& message) {
  std::cerr << "memtidectl: " << message << "\nTry 'memtidectl --help'.\n";
  return kExitUsage;
}

int restore(const config::Config& config, const std::optional<std::string>& connect, bool dry_run,
            bool if_service_failed) {
  if (if_service_failed) {
    // Run by systemd as ExecStopPost: SERVICE_RESULT says how memtided ended. A clean stop has
    // already done what daemon.on_stop says; a crash, a kill or a watchdog timeout has not.
    const char* result = std::getenv("SERVICE_RESULT");
    if (result == nullptr || std::string(result) == "success") {
      return kExitOk;
    }
    if (config.daemon.on_stop != config::OnStop::restore) {
      std::cout << "memtided ended (" << result << "); daemon.on_stop is keep: nothing to do\n";
      return kExitOk;
    }
    std::cout << "memtided ended without restoring (" << result << "); restoring\n";
  }
  auto worker = make_libvirt_worker(config, connect, config.daemon.procfs);
  const auto run = restore_within(*worker, config, dry_run, config.libvirt.timeout,
                                  std::chrono::steady_clock::now() + kRestoreBudget);
  if (run.collect_error) {
    std::cerr << "memtidectl: " << run.collect_error->message << '\n';
    return kExitFailure;
  }
  int failures = 0;
  for (const auto& outcome : run.outcomes) {
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
    std::cout << dump_json(out, 2) << '\n';
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

using config::format_size;

std::string size_or_dash(const nlohmann::json& v) {
  return v.is_number_unsigned() ? format_size(v.get<std::uint64_t>()) : "-";
}

// Columns padded to their widest cell; the last column is not padded.
void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) {
        line += std::string(width[i] - row[i].size() + 2, ' ');
      }
    }
    std::cout << line << '\n';
  }
}

std::string percent_text(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", ratio * 100);
  return buf;
}

// "dup 45% zero 30% vol 2%", or the scan's status when there are no figures.
std::string page_scan_cell(const nlohmann::json& p) {
  if (p.is_null()) {
    return "-";
  }
  if (p["status"] != "scanned" || !p["duplicate_ratio"].is_number()) {
    return p["status"].get<std::string>();
  }
  std::string cell = "dup " + percent_text(p["duplicate_ratio"].get<double>()) + " zero " +
                     percent_text(p["zero_ratio"].get<double>());
  if (p["volatile_ratio"].is_number()) {
    cell += " vol " + percent_text(p["volatile_ratio"].get<double>());
  }
  return cell;
}

void print_ksm(const nlohmann::json& k) {
  std::cout << "KSM " << k["mode"].get<std::string>();
  if (!k["available"].get<bool>()) {
    std::cout << ": not available on this kernel\n";
    return;
  }
  const auto run = k["run"].get<std::uint64_t>();
  std::cout << ": " << (run == 1 ? "merging" : run == 2 ? "stopped, unmerged" : "stopped");
  if (run == 1) {
    std::cout << ", " << k["pages_to_scan"].get<std::uint64_t>() << " pages every "
              << k["sleep_ms"].get<std::uint64_t>() << " ms";
  }
  if (k["ksmd_cpu_ratio"].is_number()) {
    std::cout << ", ksmd " << percent_text(k["ksmd_cpu_ratio"].get<double>()) << " of a core";
  }
  std::cout << "; saves " << size_or_dash(k["actual_savings_bytes"]);
  const auto& e = k["estimate"];
  if (e.is_object()) {
    const auto resident = e["resident_bytes"].get<std::uint64_t>();
    std::cout << ", page scan estimates " << size_or_dash(e["savings_bytes"]);
    if (resident > 0) {
      std::cout << " ("
                << percent_text(static_cast<double>(e["savings_bytes"].get<std::uint64_t>()) /
                                static_cast<double>(resident))
                << " of " << format_size(resident) << " in " << e["vms"].get<std::uint64_t>()
                << " VMs)";
    }
  }
  std::cout << "\n  " << k["decision"].get<std::string>() << '\n';
}

void print_status(const nlohmann::json& r) {
  const auto& d = r["daemon"];
  const auto& h = r["host"];
  std::cout << "memtided " << d["version"].get<std::string>() << ": tick "
            << d["ticks"].get<std::uint64_t>() << ", balloon commands "
            << (d["dry_run"].get<bool>()  ? "NOT APPLIED (dry run)"
                : d["paused"].get<bool>() ? "PAUSED (memtidectl resume)"
                                          : "applied")
            << "\n  config "
            << (d["config"].get<std::string>().empty() ? "(built-in defaults)"
                                                       : d["config"].get<std::string>())
            << (d["last_reload_error"].get<std::string>().empty()
                    ? ""
                    : " (last reload rejected: " + d["last_reload_error"].get<std::string>() + ")")
            << "; metrics "
            << (d["metrics"].get<std::string>().empty() ? "off" : d["metrics"].get<std::string>())
            << '\n';
  std::cout << "host at " << h["collected_at"].get<std::string>() << ": MemAvailable "
            << size_or_dash(h["available_bytes"]) << " of " << size_or_dash(h["total_bytes"])
            << ", reserve " << size_or_dash(h["reserve_bytes"]) << "; "
            << (h.contains("level") && h["level"].is_string() ? h["level"].get<std::string>()
                                                              : std::string("?"))
            << ": " << h["summary"].get<std::string>() << "; swap forecast "
            << (h["seconds_to_swap"].is_number()
                    ? std::to_string(std::llround(h["seconds_to_swap"].get<double>())) + " s"
                    : std::string("none"))
            << (h["libvirt_up"].get<bool>()
                    ? ""
                    : "; libvirt DOWN: " + h["libvirt_error"].get<std::string>())
            << '\n';
  if (r["alerts"].empty()) {
    std::cout << "alerts: none\n";
  }
  for (const auto& a : r["alerts"]) {
    std::cout << "alert " << a["name"].get<std::string>() << " ("
              << a["severity"].get<std::string>() << "): " << a["summary"].get<std::string>()
              << '\n';
  }
  print_ksm(r["ksm"]);
  std::vector<std::vector<std::string>> rows = {
      {"VM", "CLASS", "BALLOON", "MAX", "FLOOR", "USABLE", "TARGET", "STATS", "PAGES", "WHY"}};
  for (const auto& vm : r["vms"]) {
    rows.push_back({vm["name"].get<std::string>(),
                    vm["managed"].get<bool>() ? vm["class"].get<std::string>() : "-",
                    size_or_dash(vm["balloon_bytes"]), size_or_dash(vm["max_bytes"]),
                    size_or_dash(vm["floor_bytes"]), size_or_dash(vm["usable_bytes"]),
                    size_or_dash(vm["target_bytes"]), vm["stats_status"].get<std::string>(),
                    page_scan_cell(vm["page_scan"]), vm["explanation"].get<std::string>()});
  }
  std::cout << '\n';
  print_table(rows);
  if (!r["recent_commands"].empty()) {
    std::cout << "\nrecent balloon commands (oldest first):\n";
  }
  for (const auto& c : r["recent_commands"]) {
    std::cout << "  " << c["at"].get<std::string>() << "  " << c["vm"].get<std::string>() << ": "
              << size_or_dash(c["from_bytes"]) << " -> " << size_or_dash(c["to_bytes"]) << " ("
              << c["cause"].get<std::string>() << ", " << c["outcome"].get<std::string>() << ")\n";
  }
}

int control(const std::string& socket, const std::string& command,
            const std::vector<std::string>& operands, bool json) {
  nlohmann::json request = {{"command", command}};
  if (command == "explain") {
    if (operands.size() != 1) {
      return usage_error("explain needs one VM name or UUID");
    }
    request["vm"] = operands[0];
  } else if (!operands.empty()) {
    return usage_error(command + " takes no operand");
  }
  auto reply = control_request(socket, request, std::chrono::seconds(10));
  if (!reply) {
    std::cerr << "memtidectl: " << reply.error().to_string() << '\n';
    return kExitFailure;
  }
  const nlohmann::json& r = *reply;
  if (!r.value("ok", false)) {
    std::cerr << "memtidectl: " << r.value("error", std::string("request refused")) << '\n';
    return kExitFailure;
  }
  if (json) {
    std::cout << dump_json(r, 2) << '\n';
  } else if (command == "status") {
    print_status(r);
  } else if (command == "explain") {
    const auto& vm = r["vm"];
    std::cout << vm["name"].get<std::string>() << " (" << vm["uuid"].get<std::string>()
              << "): " << vm["explanation"].get<std::string>() << "\n  balloon "
              << size_or_dash(vm["balloon_bytes"]) << " of " << size_or_dash(vm["max_bytes"])
              << ", floor " << size_or_dash(vm["floor_bytes"]) << ", usable "
              << size_or_dash(vm["usable_bytes"]) << ", statistics "
              << vm["stats_status"].get<std::string>() << ", class "
              << (vm["class"].get<std::string>().empty() ? "-" : vm["class"].get<std::string>())
              << "\n  host: " << r["host"].get<std::string>() << '\n';
  } else if (command == "pause" || command == "resume") {
    std::cout << (r["paused"].get<bool>() ? "balloon actions paused\n"
                                          : "balloon actions resumed\n");
  } else if (command == "reload") {
    std::cout << "configuration reloaded"
              << (r["config"].get<std::string>().empty()
                      ? ""
                      : " from " + r["config"].get<std::string>())
              << '\n';
  }
  return kExitOk;
}

std::string rate_text(double bytes_per_second) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f GB/s", bytes_per_second / 1e9);
  return buf;
}

int scan(const std::vector<std::string>& pids, int passes, double interval_s, bool json) {
  if (pids.empty()) {
    return usage_error("scan needs at least one PID");
  }
  nlohmann::ordered_json out = nlohmann::ordered_json::array();
  int failures = 0;
  for (const auto& text : pids) {
    if (text.empty() || text.find_first_not_of("0123456789") != std::string::npos ||
        text.size() > 9) {
      return usage_error("not a PID: '" + shorten_utf8(text, 40) + "'");
    }
    const int pid = std::stoi(text);
    // QEMU marks guest RAM mergeable; any other process is judged by all its private
    // anonymous memory (what prctl(PR_SET_MEMORY_MERGE) would offer KSM).
    auto regions =
        collectors::candidate_regions("/proc", pid, collectors::CandidateMemory::mergeable);
    std::string candidates = "mergeable";
    if (regions && regions->empty()) {
      regions = collectors::candidate_regions("/proc", pid,
                                              collectors::CandidateMemory::private_anonymous);
      candidates = "private-anonymous";
    }
    if (!regions) {
      std::cerr << "memtidectl: " << regions.error().to_string() << '\n';
      ++failures;
      continue;
    }
    collectors::PageScanner scanner;
    std::optional<collectors::PageScanFigures> last;
    for (int pass = 0; pass < passes; ++pass) {
      if (pass > 0) {
        std::this_thread::sleep_for(std::chrono::duration<double>(interval_s));
      }
      auto figures = scanner.scan(pid, *regions);
      if (!figures) {
        std::cerr << "memtidectl: " << figures.error().to_string() << '\n';
        last.reset();
        break;
      }
      last = *figures;
    }
    if (!last) {
      ++failures;
      continue;
    }
    const auto& f = *last;
    const double scanned = static_cast<double>(f.resident_pages * f.page_size_bytes);
    const double rate = f.seconds > 0 ? scanned / f.seconds : 0;
    if (json) {
      out.push_back({{"pid", pid},
                     {"candidates", candidates},
                     {"candidate_bytes", f.candidate_pages * f.page_size_bytes},
                     {"resident_bytes", f.resident_pages * f.page_size_bytes},
                     {"zero_ratio", f.zero_ratio()},
                     {"duplicate_ratio", f.duplicate_ratio()},
                     {"volatile_ratio", f.volatile_ratio ? nlohmann::ordered_json(*f.volatile_ratio)
                                                         : nlohmann::ordered_json()},
                     {"estimated_savings_bytes", f.estimated_savings_bytes()},
                     {"scan_seconds", f.seconds},
                     {"passes", passes}});
      continue;
    }
    std::cout << "PID " << pid << ": " << format_size(f.candidate_pages * f.page_size_bytes) << " "
              << candidates << ", " << format_size(f.resident_pages * f.page_size_bytes)
              << " resident, scanned in " << f.seconds << " s (" << rate_text(rate) << ")\n"
              << "  zero " << percent_text(f.zero_ratio()) << ", duplicate "
              << percent_text(f.duplicate_ratio()) << ", volatile "
              << (f.volatile_ratio ? percent_text(*f.volatile_ratio) : std::string("-"))
              << "; KSM could save about " << format_size(f.estimated_savings_bytes()) << '\n';
  }
  if (json) {
    std::cout << dump_json(out, 2) << '\n';
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
  bool if_service_failed = false;
  std::vector<std::string> traces;
  bool quiet = false;
  bool json = false;
  std::optional<std::string> socket;
  std::vector<std::string> operands;
  int passes = 2;
  double interval_s = 1;
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
    } else if (a == "--if-service-failed") {
      if_service_failed = true;
    } else if (a == "-q" || a == "--quiet") {
      quiet = true;
    } else if (a == "--json") {
      json = true;
    } else if (a == "--passes" || a == "--interval") {
      const auto v = next();
      char* end = nullptr;
      const double number = v ? std::strtod(v->c_str(), &end) : 0;
      // NaN compares false with everything: finiteness is checked first, and passes are whole.
      const bool whole = a == "--passes";
      if (!v || end == v->c_str() || *end != '\0' || !std::isfinite(number) ||
          number < (whole ? 1 : 0) || number > 3600 || (whole && number != std::floor(number))) {
        return usage_error(a + " needs a number (passes a whole 1..3600, interval 0..3600 s)" +
                           (v ? ", got '" + shorten_utf8(*v, 40) + "'" : std::string()));
      }
      if (a == "--passes") {
        passes = static_cast<int>(number);
      } else {
        interval_s = number;
      }
    } else if (a == "-s" || a == "--socket") {
      socket = next();
      if (!socket) {
        return usage_error(a + " needs a path");
      }
    } else if (command.empty() && !a.empty() && a[0] != '-') {
      command = a;
    } else if (command == "check-config" && !config_given && !a.empty() && a[0] != '-') {
      config_path = a;
      config_given = true;
    } else if ((command == "explain" || command == "scan") && !a.empty() && a[0] != '-') {
      operands.push_back(a);
    } else {
      return usage_error("unexpected argument '" + shorten_utf8(a, 40) + "'");
    }
  }
  if (command == "check-config") {
    return check_config_file(config_path, std::cout);
  }
  if (command == "scan") {
    return scan(operands, passes, interval_s, json);
  }
  const bool control_command = command == "status" || command == "explain" || command == "pause" ||
                               command == "resume" || command == "reload";
  if (control_command) {
    std::string path = kDefaultControlSocket;
    if (socket) {
      path = *socket;
    } else if (const auto config = load_config_or_defaults(config_path, config_given, std::cerr)) {
      path = config->daemon.control_socket;
    } else {
      return kExitInvalidConfig;
    }
    return control(path, command, operands, json);
  }
  if (command != "restore" && command != "simulate") {
    return usage_error(command.empty() ? "a command is required"
                                       : "unknown command '" + shorten_utf8(command, 40) + "'");
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
  return restore(*config, connect, dry_run, if_service_failed);
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
