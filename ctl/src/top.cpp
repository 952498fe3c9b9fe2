// memtidectl top: a live view of the running daemon, redrawn every --interval seconds (1 by
// default) from its status: the host's line, then the VMs sorted by pressure (the least usable
// share of its balloon first), by what memtide does (the newest balloon command first), by name
// or by balloon size, each with its last command and the reason of its last decision.
//
// On a terminal the screen is redrawn in place and keys act at once: p, d, n, b pick the order,
// q (or Ctrl-C) quits; the terminal's settings are restored on the way out. Off a terminal each
// frame is printed after the last, for scripts: -n N (or --once) stops after N frames.
#include <algorithm>
#include <csignal>
#include <ctime>
#include <iostream>
#include <map>
#include <sstream>

#include <poll.h>
#include <termios.h>
#include <unistd.h>

#include <memtide/config/units.hpp>
#include <memtide/core/exit_code.hpp>

#include "commands.hpp"
#include "control_client.hpp"
#include "terminal.hpp"
#include "time_text.hpp"

namespace memtide::ctl {

namespace {

volatile std::sig_atomic_t g_stop = 0;

// Keys typed on the terminal arrive one at a time and unechoed while it lives; the settings
// before it, the cursor and SIGINT's behaviour come back when it ends.
class RawTerminal {
 public:
  RawTerminal() {
    if (isatty(STDIN_FILENO) != 1 || tcgetattr(STDIN_FILENO, &saved_) != 0) {
      return;
    }
    termios raw = saved_;
    raw.c_lflag &= ~static_cast<tcflag_t>(ICANON | ECHO);
    raw.c_cc[VMIN] = 0;
    raw.c_cc[VTIME] = 0;
    active_ = tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) {
      tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    }
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;
  bool active() const { return active_; }

 private:
  termios saved_{};
  bool active_ = false;
};

std::string size_cell(const nlohmann::json& v) {
  return v.is_number_unsigned() ? config::format_size(v.get<std::uint64_t>()) : "-";
}

std::string text_of(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : "";
}

std::optional<double> number_of(const nlohmann::json& j, const char* key) {
  return j.is_object() && j.contains(key) && j[key].is_number()
             ? std::optional<double>(j[key].get<double>())
             : std::nullopt;
}

// The usable share of a VM's balloon, when both are known.
std::optional<double> usable_share(const nlohmann::json& vm) {
  const auto usable = number_of(vm, "usable_bytes");
  const auto balloon = number_of(vm, "balloon_bytes");
  return usable && balloon && *balloon > 0 ? std::optional<double>(*usable / *balloon)
                                           : std::nullopt;
}

// Sorts `vms` by `key` ('p' pressure, 'd' doing, 'n' name, 'b' balloon); ties by name.
void sort_vms(std::vector<nlohmann::json>& vms, char key,
              const std::map<std::string, nlohmann::json>& last_command) {
  const auto name = [](const nlohmann::json& vm) { return text_of(vm, "name"); };
  std::stable_sort(vms.begin(), vms.end(), [&](const nlohmann::json& a, const nlohmann::json& b) {
    if (key == 'p') {
      const auto sa = usable_share(a).value_or(2);
      const auto sb = usable_share(b).value_or(2);
      if (sa != sb) {
        return sa < sb;
      }
    } else if (key == 'd') {
      const auto ia = last_command.find(name(a));
      const auto ib = last_command.find(name(b));
      const std::string ta = ia == last_command.end() ? "" : text_of(ia->second, "at");
      const std::string tb = ib == last_command.end() ? "" : text_of(ib->second, "at");
      if (ta != tb) {
        return ta > tb;  // RFC 3339 UTC times order as text; none ("") last
      }
    } else if (key == 'b') {
      const auto ba = number_of(a, "balloon_bytes").value_or(-1);
      const auto bb = number_of(b, "balloon_bytes").value_or(-1);
      if (ba != bb) {
        return ba > bb;
      }
    }
    return name(a) < name(b);
  });
}

// "+64 MiB 3 s ago (guest-need)" for a VM's newest command.
std::string command_cell(const nlohmann::json& c, std::time_t now) {
  const auto from = number_of(c, "from_bytes");
  const auto to = number_of(c, "to_bytes");
  if (!from || !to) {
    return "-";
  }
  const bool grow = *to >= *from;
  const auto by = static_cast<std::uint64_t>(grow ? *to - *from : *from - *to);
  const auto at = parse_utc(text_of(c, "at"));
  return (grow ? "+" : "-") + config::format_size(by) + (at ? " " + age_text(*at, now) : "") +
         " (" + text_of(c, "cause") + ")";
}

const char* order_name(char key) {
  return key == 'p' ? "pressure" : key == 'd' ? "doing" : key == 'n' ? "name" : "balloon";
}

// One screen of the view.
std::string frame(const nlohmann::json& r, char key, std::optional<std::size_t> columns,
                  std::optional<std::size_t> rows) {
  std::ostringstream out;
  const auto& d = r.contains("daemon") ? r["daemon"] : nlohmann::json();
  const auto& h = r.contains("host") ? r["host"] : nlohmann::json();
  const std::time_t now = std::time(nullptr);
  std::string head = "memtided " + text_of(d, "version") + ", tick " +
                     std::to_string(static_cast<long long>(number_of(d, "ticks").value_or(0))) +
                     (d.value("paused", false) ? ", PAUSED" : "") +
                     (d.value("dry_run", false) ? ", dry run" : "") + " - " +
                     clock_text(now * 1000, false);
  std::string host = "host " + text_of(h, "level") + ": MemAvailable " +
                     size_cell(h.value("available_bytes", nlohmann::json())) + " of " +
                     size_cell(h.value("total_bytes", nlohmann::json())) + ", reserve " +
                     size_cell(h.value("reserve_bytes", nlohmann::json())) + "; " +
                     text_of(h, "summary");
  const std::size_t width = columns.value_or(100000);
  out << fit(for_terminal(head), width) << '\n' << fit(for_terminal(host), width) << '\n';
  std::size_t alerts = r.contains("alerts") && r["alerts"].is_array() ? r["alerts"].size() : 0;
  out << fit("alerts firing: " + std::to_string(alerts) + "; order: " + order_name(key) +
                 " (p pressure, d doing, n name, b balloon; q quits)",
             width)
      << "\n\n";
  std::map<std::string, nlohmann::json> last_command;
  if (r.contains("recent_commands") && r["recent_commands"].is_array()) {
    for (const auto& c : r["recent_commands"]) {
      last_command[text_of(c, "vm")] = c;  // oldest first: the last one stays
    }
  }
  std::vector<nlohmann::json> vms;
  if (r.contains("vms") && r["vms"].is_array()) {
    vms.assign(r["vms"].begin(), r["vms"].end());
  }
  sort_vms(vms, key, last_command);
  std::vector<std::vector<std::string>> table = {
      {"VM", "BALLOON", "USABLE", "FLOOR", "MAX", "LAST COMMAND", "WHY"}};
  // Four lines above the table and its header: the rest of the screen holds VMs.
  const std::size_t room = rows ? (*rows > 6 ? *rows - 6 : 1) : vms.size();
  for (std::size_t i = 0; i < vms.size() && i < room; ++i) {
    const auto& vm = vms[i];
    const auto share = usable_share(vm);
    const auto c = last_command.find(text_of(vm, "name"));
    table.push_back({text_of(vm, "name"), size_cell(vm.value("balloon_bytes", nlohmann::json())),
                     size_cell(vm.value("usable_bytes", nlohmann::json())) +
                         (share ? " (" + percent_text(*share) + ")" : ""),
                     size_cell(vm.value("floor_bytes", nlohmann::json())),
                     size_cell(vm.value("max_bytes", nlohmann::json())),
                     c == last_command.end() ? "-" : command_cell(c->second, now),
                     text_of(vm, "explanation")});
  }
  print_table(std::move(table), columns, out);
  if (vms.size() > room) {
    out << "... and " << vms.size() - room << " more VMs\n";
  }
  return out.str();
}

// Waits up to `ms` for a key; 0 when none came (or stdin is no terminal).
char wait_for_key(bool keys, int ms) {
  if (!keys) {
    timespec t{ms / 1000, static_cast<long>(ms % 1000) * 1'000'000};
    nanosleep(&t, nullptr);
    return 0;
  }
  pollfd p{STDIN_FILENO, POLLIN, 0};
  if (poll(&p, 1, ms) <= 0) {
    return 0;
  }
  char c = 0;
  return read(STDIN_FILENO, &c, 1) == 1 ? c : 0;
}

}  // namespace

int top(const std::string& socket, const Args& args) {
  const bool screen = isatty(STDOUT_FILENO) == 1;
  RawTerminal terminal;
  g_stop = 0;
  struct sigaction stop {};
  stop.sa_handler = [](int) { g_stop = 1; };
  struct sigaction old_int {};
  struct sigaction old_term {};
  sigaction(SIGINT, &stop, &old_int);
  sigaction(SIGTERM, &stop, &old_term);
  char key = 'p';
  int shown = 0;
  int code = kExitOk;
  const int interval_ms = std::max(100, static_cast<int>(args.interval_s * 1000));
  while (g_stop == 0) {
    auto reply = ask_daemon(socket, {{"command", "status"}});
    if (!reply) {
      code = kExitFailure;
      break;
    }
    const std::string text =
        frame(*reply, key, output_columns(), screen ? output_rows() : std::nullopt);
    // The first frame clears the screen; each one then starts at home and clears what the last
    // one left below it.
    std::cout << (screen ? (shown == 0 ? "\x1b[H\x1b[2J" : "\x1b[H") + text + "\x1b[J"
                         : text + "\n")
              << std::flush;
    if (args.iterations && ++shown >= *args.iterations) {
      break;
    }
    // Keys redraw at once; the interval runs on otherwise.
    const char c = wait_for_key(terminal.active(), interval_ms);
    if (c == 'q' || c == 'Q') {
      break;
    }
    if (c == 'p' || c == 'd' || c == 'n' || c == 'b') {
      key = c;
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return code;
}

}  // namespace memtide::ctl
