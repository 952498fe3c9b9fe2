#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <optional>
#include <tuple>

#include <fnmatch.h>

#include <memtide/config/units.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/core/text.hpp>
#include <memtide/report/json_text.hpp>

#include "commands.hpp"
#include "control_client.hpp"
#include "terminal.hpp"
#include "time_text.hpp"

namespace memtide::ctl {

namespace {

using config::format_size;

std::string size_or_dash(const nlohmann::json& v) {
  return v.is_number_unsigned() ? format_size(v.get<std::uint64_t>()) : "-";
}

// `j[key]`, or null when a daemon of another version did not send it.
nlohmann::json member(const nlohmann::json& j, const char* key) {
  return j.contains(key) ? j[key] : nlohmann::json();
}

// Whether `name` matches one of `globs` (all names when there are none).
bool selected(const std::string& name, const std::vector<std::string>& globs) {
  return globs.empty() || std::any_of(globs.begin(), globs.end(), [&name](const auto& g) {
           return fnmatch(g.c_str(), name.c_str(), 0) == 0;
         });
}

// The reply's VMs and recent commands narrowed to --vm, and the VMs in --sort order: by name,
// or by a size, largest first (VMs without the figure last), ties by name.
void select_and_sort(nlohmann::json& r, const Args& args) {
  auto& vms = r["vms"];
  nlohmann::json kept = nlohmann::json::array();
  for (auto& vm : vms) {
    if (selected(vm.value("name", std::string()), args.vm_globs)) {
      kept.push_back(std::move(vm));
    }
  }
  auto key = [&args](const nlohmann::json& vm) -> std::optional<double> {
    auto size = [&vm](const char* field) -> std::optional<double> {
      const auto it = vm.find(field);
      return it != vm.end() && it->is_number() ? std::optional<double>(it->get<double>())
                                               : std::nullopt;
    };
    if (args.sort == "held") {
      const auto max = size("max_bytes");
      const auto balloon = size("balloon_bytes");
      return max && balloon ? std::optional<double>(*max - *balloon) : std::nullopt;
    }
    return size((args.sort + "_bytes").c_str());
  };
  std::stable_sort(kept.begin(), kept.end(), [&](const nlohmann::json& a, const nlohmann::json& b) {
    const auto name_a = a.value("name", std::string());
    const auto name_b = b.value("name", std::string());
    if (args.sort == "class") {
      const auto class_a = a.value("class", std::string());
      const auto class_b = b.value("class", std::string());
      return std::tie(class_a, name_a) < std::tie(class_b, name_b);
    }
    if (args.sort != "name") {
      const auto ka = key(a);
      const auto kb = key(b);
      if (ka.has_value() != kb.has_value()) {
        return ka.has_value();
      }
      if (ka && *ka != *kb) {
        return *ka > *kb;
      }
    }
    return name_a < name_b;
  });
  vms = std::move(kept);
  if (r.contains("recent_commands") && !args.vm_globs.empty()) {
    nlohmann::json recent = nlohmann::json::array();
    for (auto& c : r["recent_commands"]) {
      if (selected(c.value("vm", std::string()), args.vm_globs)) {
        recent.push_back(std::move(c));
      }
    }
    r["recent_commands"] = std::move(recent);
  }
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
  // "converged" needs no word: the figures hold still. Else say the scanner is at work.
  if (const auto schedule = p.value("schedule", std::string()); schedule == "rescanning") {
    cell += " (rescan)";
  } else if (schedule == "converging") {
    cell += " (converging)";
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

// In a dry run, one line: what memtide would have done (the recent commands it decided and did
// not apply) and how to let it act.
void print_dry_run_summary(const nlohmann::json& recent) {
  std::uint64_t count = 0;
  std::uint64_t shrink = 0;
  std::uint64_t grow = 0;
  for (const auto& c : recent) {
    if (c["outcome"].get<std::string>() != "dry run") {
      continue;
    }
    const auto from = c["from_bytes"].get<std::uint64_t>();
    const auto to = c["to_bytes"].get<std::uint64_t>();
    ++count;
    if (to < from) {
      shrink += from - to;
    } else {
      grow += to - from;
    }
  }
  std::cout << "  dry run: "
            << (count == 0 ? std::string("no balloon command decided yet")
                           : std::to_string(count) + " balloon command(s) decided, not applied (" +
                                 format_size(shrink) + " to take back, " + format_size(grow) +
                                 " to give; listed below)")
            << "; to act, set daemon.dry_run: false and reload\n";
}

// With several libvirt daemons: a line per connection, and per socket refused.
void print_connections(const nlohmann::json& connections) {
  for (const auto& c : connections) {
    const auto status = c["status"].get<std::string>();
    std::cout << "libvirt " << (c["discovered"].get<bool>() ? "socket " : "connection ")
              << for_terminal(c["name"].get<std::string>()) << " ("
              << for_terminal(c["uri"].get<std::string>()) << "): ";
    if (status == "up") {
      std::cout << "up, " << c["guests"].get<std::uint64_t>() << " guests\n";
    } else if (status == "down") {
      std::cout << "DOWN (" << for_terminal(c["error"].get<std::string>()) << "); its "
                << c["guests"].get<std::uint64_t>() << " guests' last figures stand\n";
    } else {
      std::cout << "refused: " << for_terminal(c["error"].get<std::string>()) << '\n';
    }
  }
}

void print_status(const nlohmann::json& r, bool utc) {
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
  if (d["dry_run"].get<bool>()) {
    print_dry_run_summary(r["recent_commands"]);
  }
  std::cout << "host at " << time_text(h["collected_at"].get<std::string>(), utc)
            << ": MemAvailable " << size_or_dash(h["available_bytes"]) << " of "
            << size_or_dash(h["total_bytes"]) << ", reserve " << size_or_dash(h["reserve_bytes"])
            << "; "
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
  print_connections(member(h, "libvirt_connections"));
  for (const auto& m : member(h, "other_managers")) {
    std::string left;
    for (const auto& what : m["left_to_it"]) {
      left += (left.empty() ? "" : " and ") + what.get<std::string>();
    }
    std::cout << "other memory manager " << m["name"].get<std::string>() << " (pid "
              << m["pid"].get<int>() << ")"
              << (left.empty() ? ": memtide acts anyway (daemon.coexist: force)"
                               : ": " + left + " left to it")
              << '\n';
  }
  if (r["alerts"].empty()) {
    std::cout << "alerts: none\n";
  }
  for (const auto& a : r["alerts"]) {
    std::cout << "alert " << a["name"].get<std::string>() << " ("
              << a["severity"].get<std::string>()
              << "): " << for_terminal(a["summary"].get<std::string>()) << '\n';
  }
  print_ksm(r["ksm"]);
  std::vector<std::vector<std::string>> rows = {
      {"VM", "CLASS", "BALLOON", "MAX", "FLOOR", "USABLE", "TARGET", "STATS", "PAGES", "WHY"}};
  for (const auto& vm : r["vms"]) {
    const auto connection = member(vm, "connection");
    rows.push_back({connection.is_string() && !connection.get<std::string>().empty()
                        ? connection.get<std::string>() + "/" + vm["name"].get<std::string>()
                        : vm["name"].get<std::string>(),
                    vm["managed"].get<bool>() ? vm["class"].get<std::string>() : "-",
                    size_or_dash(vm["balloon_bytes"]), size_or_dash(vm["max_bytes"]),
                    size_or_dash(vm["floor_bytes"]), size_or_dash(vm["usable_bytes"]),
                    size_or_dash(vm["target_bytes"]), vm["stats_status"].get<std::string>(),
                    page_scan_cell(vm["page_scan"]), vm["explanation"].get<std::string>()});
  }
  std::cout << '\n';
  print_table(std::move(rows), output_columns());
  if (!r["recent_commands"].empty()) {
    std::cout << "\nrecent balloon commands (oldest first):\n";
  }
  for (const auto& c : r["recent_commands"]) {
    std::cout << "  " << time_text(c["at"].get<std::string>(), utc) << "  "
              << for_terminal(c["vm"].get<std::string>()) << ": " << size_or_dash(c["from_bytes"])
              << " -> " << size_or_dash(c["to_bytes"]) << " (" << c["cause"].get<std::string>()
              << ", " << c["outcome"].get<std::string>() << ")\n";
  }
}

// "on", "off", or "unknown" for a balloon option the daemon has not read.
std::string on_off(const nlohmann::json& v) {
  return v.is_boolean() ? (v.get<bool>() ? "on" : "off") : "unknown";
}

// "  virtio-mem virtiomem0 (node 0): 490 MiB plugged of 490 MiB requested, up to 1 GiB in
// 2 MiB blocks, configured 256 MiB", and what the guest has not unplugged.
void print_virtio_mem(const nlohmann::json& d) {
  std::cout << "  virtio-mem "
            << for_terminal(d["alias"].is_string() ? d["alias"].get<std::string>() : "?");
  if (d["node"].is_number_unsigned()) {
    std::cout << " (node " << d["node"].get<std::uint64_t>() << ")";
  }
  std::cout << ": " << size_or_dash(d["plugged_bytes"]) << " plugged of "
            << size_or_dash(d["requested_bytes"]) << " requested, up to "
            << size_or_dash(d["max_bytes"]) << " in " << size_or_dash(d["block_bytes"])
            << " blocks, configured " << size_or_dash(d["configured_bytes"]);
  auto bytes = [&d](const char* key) {
    return d[key].is_number_unsigned() ? d[key].get<std::uint64_t>() : 0;
  };
  const auto plugged = bytes("plugged_bytes");
  const auto requested = bytes("requested_bytes");
  if (plugged > requested) {
    std::cout << "; " << format_size(plugged - requested)
              << " not unplugged yet (the guest is unplugging, or uses that memory)";
  }
  std::cout << '\n';
}

void print_explain(const nlohmann::json& r) {
  const auto& vm = r["vm"];
  std::cout << for_terminal(vm["name"].get<std::string>()) << " (" << vm["uuid"].get<std::string>()
            << "): " << for_terminal(vm["explanation"].get<std::string>()) << "\n  balloon "
            << size_or_dash(vm["balloon_bytes"]) << " of " << size_or_dash(vm["max_bytes"])
            << ", floor " << size_or_dash(vm["floor_bytes"]) << ", usable "
            << size_or_dash(vm["usable_bytes"]) << ", statistics "
            << vm["stats_status"].get<std::string>() << ", class "
            << (vm["class"].get<std::string>().empty() ? "-" : vm["class"].get<std::string>())
            << "\n  balloon options: autodeflate " << on_off(member(vm, "balloon_autodeflate"))
            << ", free page reporting " << on_off(member(vm, "balloon_free_page_reporting"));
  const auto pins = member(vm, "memory_pins");
  std::string pinned;
  for (const auto& pin : pins) {
    pinned += (pinned.empty() ? "" : ", ") + pin.get<std::string>();
  }
  std::cout << "; memory pinned: " << (pinned.empty() ? "no" : pinned) << '\n';
  for (const auto& d : member(vm, "virtio_mem")) {
    print_virtio_mem(d);
  }
  if (const auto& p = member(vm, "page_scan"); p.is_object()) {
    std::cout << "  page scan: " << page_scan_cell(p);
    if (const auto schedule = p.value("schedule", std::string()); !schedule.empty()) {
      std::cout << "; " << schedule << ": "
                << for_terminal(p.value("schedule_reason", std::string()));
    }
    std::cout << '\n';
  }
  std::cout << "  host: " << r["host"].get<std::string>() << '\n';
  for (const auto& advice : member(vm, "advice")) {
    std::cout << "  advice: " << advice.get<std::string>() << '\n';
  }
}

}  // namespace

int signal_reload(int pid, const std::string& socket) {
  if (::kill(pid, SIGHUP) != 0) {
    std::cerr << "memtidectl: no control socket at " << socket << ", and SIGHUP to PID " << pid
              << " failed: " << std::strerror(errno) << '\n';
    return kExitFailure;
  }
  std::cout << "no control socket at " << socket << ": sent SIGHUP to PID " << pid
            << "; whether the file was accepted is in the journal\n";
  return kExitOk;
}

std::string percent_text(double ratio) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f%%", ratio * 100);
  return buf;
}

int control(const std::string& socket, const Args& args) {
  const std::string& command = args.command;
  const auto& operands = args.operands;
  nlohmann::json request = {{"command", command}};
  if (command == "explain") {
    if (operands.size() != 1) {
      return usage_error("explain needs one VM name or UUID");
    }
    request["vm"] = operands[0];
  } else if (!operands.empty()) {
    return usage_error(command + " takes no operand");
  }
  auto reply = ask_daemon(socket, request);
  if (!reply) {
    return kExitFailure;
  }
  nlohmann::json& r = *reply;
  if (command == "status" && r.contains("vms") && r["vms"].is_array()) {
    select_and_sort(r, args);
  }
  if (args.json) {
    std::cout << report::dump_json(r, 2) << '\n';
  } else if (command == "status") {
    print_status(r, args.utc);
  } else if (command == "explain") {
    print_explain(r);
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

}  // namespace memtide::ctl
