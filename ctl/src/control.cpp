#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>

#include <memtide/config/units.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/core/text.hpp>
#include <memtide/report/json_text.hpp>

#include "commands.hpp"
#include "control_client.hpp"

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

// "on", "off", or "unknown" for a balloon option the daemon has not read.
std::string on_off(const nlohmann::json& v) {
  return v.is_boolean() ? (v.get<bool>() ? "on" : "off") : "unknown";
}

void print_explain(const nlohmann::json& r) {
  const auto& vm = r["vm"];
  std::cout << vm["name"].get<std::string>() << " (" << vm["uuid"].get<std::string>()
            << "): " << vm["explanation"].get<std::string>() << "\n  balloon "
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
  std::cout << "; memory pinned: " << (pinned.empty() ? "no" : pinned)
            << "\n  host: " << r["host"].get<std::string>() << '\n';
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
    std::cout << report::dump_json(r, 2) << '\n';
  } else if (command == "status") {
    print_status(r);
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
