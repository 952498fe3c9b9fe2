// Runs a program on a pseudo-terminal, as an operator's shell would, for tests of what
// memtidectl prints on a terminal.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace memtide::testing {

struct PtyRun {
  std::string output;  // all it printed, with the terminal's "\r\n" line ends
  int status = -1;     // its wait status; -1 when it had to be killed at the deadline
};

// Runs `argv` (argv[0] a path) on a new terminal of `columns` x 40 with $COLUMNS unset. When
// `input` is given, it is typed once `input_after` has been printed. The program is killed after
// `timeout`.
inline PtyRun run_in_pty(const std::vector<std::string>& argv, unsigned short columns = 100,
                         const std::string& input = "", const std::string& input_after = "",
                         std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
  PtyRun run;
  winsize ws{};
  ws.ws_col = columns;
  ws.ws_row = 40;
  int master = -1;
  const pid_t pid = forkpty(&master, nullptr, nullptr, &ws);
  if (pid < 0) {
    return run;
  }
  if (pid == 0) {
    unsetenv("COLUMNS");
    std::vector<char*> args;
    for (const auto& a : argv) {
      args.push_back(const_cast<char*>(a.c_str()));
    }
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool typed = input.empty();
  for (;;) {
    if (!typed && run.output.find(input_after) != std::string::npos) {
      typed = write(master, input.data(), input.size()) == static_cast<ssize_t>(input.size());
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      close(master);
      return run;
    }
    pollfd p{master, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100))) <= 0) {
      continue;
    }
    char buf[4096];
    const ssize_t n = read(master, buf, sizeof buf);
    if (n <= 0) {
      break;  // EIO: the program ended and the terminal closed
    }
    run.output.append(buf, static_cast<std::size_t>(n));
  }
  waitpid(pid, &run.status, 0);
  close(master);
  return run;
}

}  // namespace memtide::testing
