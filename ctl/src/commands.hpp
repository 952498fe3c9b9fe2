// memtidectl's commands, one file each. Each returns the process exit code (core/exit_code.hpp)
// and prints its own errors.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <memtide/config/config.hpp>

#include "args.hpp"

namespace memtide::ctl {

// restore: every managed VM back to its maximum (restore.cpp); `json`: one JSON object.
int restore(const config::Config& config, bool dry_run, bool if_service_failed, bool json);

// check-config --json: the main file and its drop-ins checked, as one JSON object
// (check_config.cpp). Without --json, config::check_config_file prints the same as memtided.
int check_config_json(const std::string& path);

// simulate: replays traces through the policy of `config` (simulate.cpp); with `plot_path`,
// also writes an SVG of the host, the VMs and the decisions over the trace.
int simulate(std::shared_ptr<const config::Config> config, const std::vector<std::string>& traces,
             bool quiet, bool json, const std::string& plot_path);

// scan PID...: page-content statistics of processes (scan.cpp).
int scan(const std::vector<std::string>& pids, int passes, double interval_s, bool json);

// status, explain, pause, resume, reload: asks the daemon at `socket` (control.cpp). `args`
// gives the command, its operands, --json and status's --vm, --sort and --utc.
int control(const std::string& socket, const Args& args);

// history: what the daemon at `socket` did and saw, for args.operands' VMs since args.since
// (history.cpp); history_of_traces: the same decided by the policy of `config` on args.traces.
int history(const std::string& socket, const Args& args);
int history_of_traces(std::shared_ptr<const config::Config> config, const Args& args);

// top: a live view of the daemon at `socket` (top.cpp).
int top(const std::string& socket, const Args& args);

// reload without a control socket (`socket` does not exist): SIGHUP to `pid` (control.cpp).
int signal_reload(int pid, const std::string& socket);

// "12.5%" for a ratio of 0.125.
std::string percent_text(double ratio);

}  // namespace memtide::ctl
