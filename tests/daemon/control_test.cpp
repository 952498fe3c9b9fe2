// The control socket of a running memtided, through memtidectl and through raw clients that
// misbehave.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-event.h>

#include "../support/run_command.hpp"
#include "../support/run_in_pty.hpp"
#include "../support/running_daemon.hpp"
#include "control_socket.hpp"

namespace {

using memtide::testing::RunningDaemon;
using namespace std::chrono_literals;

// The test driver's guest is kept short of memory, so every tick wants to grow it.
class ControlledDaemon : public RunningDaemon {
 public:
  std::string extra_config() const override {
    return "libvirt: {stats_period: 1s}\nclasses:\n  - name: all\n    match: {name: \"*\"}\n"
           "    balloon: {guest_free: 60%, max_step: 64MiB, deadband: 1MiB}\n";
  }
  // memtidectl with the test's socket; returns stdout ("" on a non-zero exit).
  std::string ctl(const std::string& args) const {
    return memtide::testing::run_command(std::string(MEMTIDECTL_BINARY) + " " + args +
                                         " --socket " + control_socket() + " 2>&1");
  }
  int ctl_status(const std::string& args) const {
    return std::system((std::string(MEMTIDECTL_BINARY) + " " + args + " --socket " +
                        control_socket() + " >/dev/null 2>&1")
                           .c_str());
  }
  int connect_raw() const {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", control_socket().c_str());
    if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      close(fd);
      return -1;
    }
    return fd;
  }
  nlohmann::json raw(const std::string& bytes) const {
    const int fd = connect_raw();
    send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    std::string reply;
    char buf[4096];
    ssize_t n = 0;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
      reply.append(buf, static_cast<std::size_t>(n));
    }
    close(fd);
    return nlohmann::json::parse(reply, nullptr, false);
  }
  int count(const std::string& needle) const {
    const std::string l = log();
    int n = 0;
    for (auto at = l.find(needle); at != std::string::npos; at = l.find(needle, at + 1)) {
      ++n;
    }
    return n;
  }
};

// Domains named with bidirectional controls ("Trojan Source") and a wide character the old
// width table missed: status and explain show the controls escaped, and the rows stay aligned.
class BidiNamedGuests : public ControlledDaemon {
 public:
  std::string uri() const override {
    return std::string("test://") + MEMTIDE_FIXTURES + "/libvirt/node-bidi.xml";
  }
};

TEST_F(BidiNamedGuests, StatusAndExplainShowControlsEscapedAndAligned) {
  std::this_thread::sleep_for(1500ms);
  const auto status = ctl("status");
  for (const char* raw : {"\xE2\x80\xAE", "\xE2\x81\xA6", "\xE2\x81\xA9"}) {
    EXPECT_EQ(status.find(raw), std::string::npos) << status;
  }
  EXPECT_NE(status.find("web<U+202E>1-bd"), std::string::npos) << status;
  EXPECT_NE(status.find("<U+2066>db<U+2069>-\xF0\x9F\x9A\x80"), std::string::npos) << status;
  // The column after the name starts at the same screen column on both rows.
  std::vector<std::size_t> class_columns;
  std::istringstream lines(status);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("-bd ") == std::string::npos &&
        line.find("\xF0\x9F\x9A\x80 ") == std::string::npos) {
      continue;
    }
    const auto at = line.find(" all ");
    ASSERT_NE(at, std::string::npos) << line;
    // Columns before the class: bytes, less 2 for the 4-byte rocket shown in 2 columns.
    const std::size_t rockets =
        line.substr(0, at).find("\xF0\x9F\x9A\x80") == std::string::npos ? 0 : 1;
    class_columns.push_back(at - rockets * 2);
  }
  ASSERT_EQ(class_columns.size(), 2u) << status;
  EXPECT_EQ(class_columns[0], class_columns[1]) << status;
  const auto explain =
      ctl("explain 'web\xE2\x80\xAE"
          "1-bd'");
  EXPECT_NE(explain.find("web<U+202E>1-bd"), std::string::npos) << explain;
  EXPECT_EQ(explain.find("\xE2\x80\xAE"), std::string::npos) << explain;
}

TEST_F(ControlledDaemon, SocketIsRootOnly) {
  struct stat st {};
  ASSERT_EQ(stat(control_socket().c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(ControlledDaemon, StatusAndExplainShowTheDecisions) {
  std::this_thread::sleep_for(1500ms);  // statistics period set, a few commands issued
  const auto status = ctl("status");
  EXPECT_NE(status.find("balloon commands applied"), std::string::npos) << status;
  EXPECT_NE(status.find("test  all"), std::string::npos) << status;
  EXPECT_NE(status.find("guest short of memory: 50% usable, target 60%"), std::string::npos)
      << status;
  EXPECT_NE(status.find("(guest-need, applied)"), std::string::npos) << status;
  const auto j = nlohmann::json::parse(ctl("status --json"));
  ASSERT_EQ(j["vms"].size(), 1u);
  EXPECT_EQ(j["vms"][0]["name"], "test");
  EXPECT_EQ(j["vms"][0]["managed"], true);
  EXPECT_GT(j["vms"][0]["balloon_bytes"].get<std::uint64_t>(), 2ULL << 30);
  EXPECT_FALSE(j["recent_commands"].empty());
  const auto explain = ctl("explain test");
  EXPECT_NE(explain.find("test (6695eb01-f6a4-8304-79aa-97f2502e193f): "), std::string::npos)
      << explain;
  EXPECT_NE(ctl("explain 6695eb01-f6a4-8304-79aa-97f2502e193f").find("test ("), std::string::npos);
  EXPECT_EQ(ctl_status("explain nosuchvm"), 1 << 8);
  EXPECT_NE(
      memtide::testing::run_command(std::string(MEMTIDECTL_BINARY) + " explain nosuchvm --socket " +
                                    control_socket() + " 2>&1; true")
          .find("no running VM named 'nosuchvm'"),
      std::string::npos);
}

// The history holds every command the daemon sent, as status lists them, with their figures.
TEST_F(ControlledDaemon, HistoryShowsTheCommandsTheDaemonSent) {
  std::this_thread::sleep_for(1500ms);
  const auto status = nlohmann::json::parse(ctl("status --json"));
  const auto history = nlohmann::json::parse(ctl("history test --since 10m --json"));
  ASSERT_TRUE(history["ok"].get<bool>()) << history;
  std::vector<std::string> sent;
  for (const auto& c : status["recent_commands"]) {
    sent.push_back(c["vm"].get<std::string>() + " " + c["at"].get<std::string>() + " " +
                   std::to_string(c["from_bytes"].get<std::uint64_t>()) + " -> " +
                   std::to_string(c["to_bytes"].get<std::uint64_t>()));
  }
  std::vector<std::string> recorded;
  for (const auto& e : history["entries"]) {
    if (e["kind"] == "command") {
      recorded.push_back(e["vm"].get<std::string>() + " " + e["at"].get<std::string>() + " " +
                         std::to_string(e["balloon_bytes"].get<std::uint64_t>()) + " -> " +
                         std::to_string(e["target_bytes"].get<std::uint64_t>()));
      EXPECT_EQ(e["what"], "guest-need") << e;
      EXPECT_EQ(e["result"], "applied") << e;
      EXPECT_GT(e["usable_bytes"].get<std::uint64_t>(), 0u) << e;
      EXPECT_EQ(e["max_bytes"].get<std::uint64_t>(), 8ULL << 30) << e;
    }
  }
  ASSERT_FALSE(sent.empty()) << status;
  // Status keeps the last 50; the history has those (and any sent after status answered).
  for (const auto& c : sent) {
    EXPECT_NE(std::find(recorded.begin(), recorded.end(), c), recorded.end()) << c;
  }
  // As a table: one row per command.
  const auto table = ctl("history test --since 10m");
  EXPECT_NE(table.find("TIME"), std::string::npos) << table;
  EXPECT_NE(table.find("guest-need, applied"), std::string::npos) << table;
  EXPECT_EQ(table.find("in use  : usable"), std::string::npos) << "no chart off a terminal";
  EXPECT_NE(ctl("history nosuchvm").find("no balloon command or alert"), std::string::npos);
}

// On a terminal the history draws each VM's chart above the table.
TEST_F(ControlledDaemon, HistoryDrawsAChartOnATerminal) {
  std::this_thread::sleep_for(1500ms);
  const auto run = memtide::testing::run_in_pty(
      {MEMTIDECTL_BINARY, "history", "--since", "1m", "--socket", control_socket()}, 100);
  ASSERT_TRUE(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0) << run.output;
  const auto chart = run.output.find("8 GiB |");
  const auto legend = run.output.find("# in use  : usable");
  const auto table = run.output.find("TIME");
  ASSERT_NE(chart, std::string::npos) << run.output;
  ASSERT_NE(legend, std::string::npos) << run.output;
  ASSERT_NE(table, std::string::npos) << run.output;
  EXPECT_LT(chart, legend);
  EXPECT_LT(legend, table);
  // The guest grew: a '^' under the chart, and its balloon drawn.
  const std::string marks = run.output.substr(chart, legend - chart);
  EXPECT_NE(marks.find('^'), std::string::npos) << marks;
  EXPECT_NE(marks.find('#'), std::string::npos) << marks;
  // No line is wider than the terminal (counted in characters: all of them take one column).
  std::size_t start = 0;
  for (auto end = run.output.find("\r\n"); end != std::string::npos;
       start = end + 2, end = run.output.find("\r\n", start)) {
    const std::string line = run.output.substr(start, end - start);
    const auto characters = std::count_if(line.begin(), line.end(), [](char c) {
      return (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    });
    EXPECT_LE(characters, 100) << line;
  }
}

// memtidectl top on a terminal: it redraws in place, takes keys at once and quits on q.
TEST_F(ControlledDaemon, TopRunsOnATerminalAndQuitsOnQ) {
  std::this_thread::sleep_for(1500ms);
  const auto run = memtide::testing::run_in_pty(
      {MEMTIDECTL_BINARY, "top", "--interval", "0.2", "--socket", control_socket()}, 120, "dq",
      "LAST COMMAND");
  ASSERT_TRUE(WIFEXITED(run.status) && WEXITSTATUS(run.status) == 0) << run.output;
  EXPECT_EQ(run.output.find("\x1b[H\x1b[2J"), 0u) << "the first frame clears the screen";
  EXPECT_NE(run.output.find("order: pressure"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("order: doing"), std::string::npos) << "d was taken at once";
  EXPECT_NE(run.output.find("host ok: MemAvailable"), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("test "), std::string::npos) << run.output;
  EXPECT_NE(run.output.find("(guest-need)"), std::string::npos) << run.output;
}

// Off a terminal, for scripts: --once prints one frame, plain, and ends; -n counts frames.
TEST_F(ControlledDaemon, TopOnceForScripts) {
  std::this_thread::sleep_for(1500ms);
  const auto once = ctl("top --once");
  EXPECT_NE(once.find("VM    BALLOON"), std::string::npos) << once;
  EXPECT_EQ(once.find('\x1b'), std::string::npos) << once;
  const auto two = ctl("top -n 2 --interval 0.1");
  const auto frames = [](const std::string& text) {
    int n = 0;
    for (auto at = text.find("VM    BALLOON"); at != std::string::npos;
         at = text.find("VM    BALLOON", at + 1)) {
      ++n;
    }
    return n;
  };
  EXPECT_EQ(frames(once), 1) << once;
  EXPECT_EQ(frames(two), 2) << two;
  EXPECT_EQ(ctl_status("top -n 0"), 64 << 8);
}

// The history is kept across a restart, beside the policy state.
class StatefulDaemon : public ControlledDaemon {
 public:
  std::string daemon_settings() const override {
    return ", state_file: " + dir_ + "/policy-state.json";
  }
};

TEST_F(StatefulDaemon, HistorySurvivesARestart) {
  std::this_thread::sleep_for(1500ms);
  const auto before = nlohmann::json::parse(ctl("history --json"));
  ASSERT_FALSE(before["entries"].empty()) << before;
  ASSERT_TRUE(WIFEXITED(stop()));
  EXPECT_TRUE(std::filesystem::exists(dir_ + "/decision-history.json"));
  start();
  // start() returns once metrics are served; the control socket follows (slowly under TSan).
  std::string reply;
  for (int i = 0; i < 100 && reply.empty(); ++i) {
    reply = ctl("history --json");
    std::this_thread::sleep_for(100ms);
  }
  const auto after = nlohmann::json::parse(reply);
  ASSERT_GE(after["entries"].size(), before["entries"].size()) << after;
  for (std::size_t i = 0; i < before["entries"].size(); ++i) {
    EXPECT_EQ(after["entries"][i], before["entries"][i]) << i;
  }
  EXPECT_NE(log().find("decision history restored"), std::string::npos) << log();
}

TEST_F(ControlledDaemon, PauseStopsActionsAndResumeRestartsThem) {
  std::this_thread::sleep_for(1500ms);
  ASSERT_EQ(ctl("pause"), "balloon actions paused");
  const int applied = count("notice: balloon test");
  std::this_thread::sleep_for(1000ms);
  EXPECT_EQ(count("notice: balloon test"), applied) << "a command was applied while paused";
  EXPECT_GT(count("paused, not applied: balloon test"), 0) << log();
  // Each kind of balloon line has its journal event (memtided(8)).
  EXPECT_EQ(count("MEMTIDE_EVENT=balloon-not-applied MEMTIDE_DOMAIN=test"),
            count("paused, not applied: balloon test"));
  EXPECT_NE(ctl("status").find("PAUSED"), std::string::npos);
  ASSERT_EQ(ctl("resume"), "balloon actions resumed");
  std::this_thread::sleep_for(1000ms);
  EXPECT_GT(count("notice: balloon test"), applied) << log();
  EXPECT_EQ(count("MEMTIDE_EVENT=balloon MEMTIDE_DOMAIN=test"), count("notice: balloon test"));
}

// `systemctl reload` runs the unit's ExecReload: it must fail, and say why, on a rejected file.
TEST_F(ControlledDaemon, TheUnitsReloadCommandFailsOnARejectedFile) {
  std::ifstream unit(MEMTIDE_UNIT);
  std::string command;
  for (std::string line; std::getline(unit, line);) {
    if (line.rfind("ExecReload=", 0) == 0) {
      command = line.substr(11);
    }
  }
  ASSERT_EQ(command,
            "/usr/sbin/memtidectl reload --config /etc/memtide/memtide.yaml --pid $MAINPID");
  auto replace = [&command](const std::string& from, const std::string& to) {
    command.replace(command.find(from), from.size(), to);
  };
  replace("/usr/sbin/memtidectl", MEMTIDECTL_BINARY);
  replace("/etc/memtide/memtide.yaml", dir_ + "/memtide.yaml");
  replace("$MAINPID", std::to_string(pid_));
  EXPECT_EQ(std::system((command + " >/dev/null 2>&1").c_str()), 0);
  // A file memtidectl itself cannot load: exit 2 with the errors, and the daemon, told with
  // SIGHUP, logs the rejection and keeps its configuration.
  const auto rejections = count("keeping the running configuration");
  std::ofstream(dir_ + "/memtide.yaml", std::ios::app) << "bogus_section: 1\n";
  const auto said = memtide::testing::run_command(command + " 2>&1; echo exit $?");
  EXPECT_NE(said.find("unknown key 'bogus_section'"), std::string::npos) << said;
  EXPECT_NE(said.find("exit 2"), std::string::npos) << said;
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(count("keeping the running configuration"), rejections + 1) << log();
  // Without a control socket the daemon is sent SIGHUP; its answer is in the journal.
  const auto before = count("keeping the running configuration");
  const auto signalled =
      memtide::testing::run_command(std::string(MEMTIDECTL_BINARY) + " reload --socket " + dir_ +
                                    "/none.sock --pid " + std::to_string(pid_) + " 2>&1");
  EXPECT_NE(signalled.find("sent SIGHUP to PID " + std::to_string(pid_)), std::string::npos)
      << signalled;
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(count("keeping the running configuration"), before + 1) << log();
  expect_ticking();
}

TEST_F(ControlledDaemon, ReloadReportsARejectedFile) {
  EXPECT_NE(ctl("reload").find("configuration reloaded from"), std::string::npos);
  std::ofstream(dir_ + "/memtide.yaml", std::ios::app) << "bogus_section: 1\n";
  const auto rejected = ctl("reload");
  EXPECT_EQ(ctl_status("reload"), 1 << 8);
  const auto again = memtide::testing::run_command(
      std::string(MEMTIDECTL_BINARY) + " reload --socket " + control_socket() + " 2>&1; true");
  EXPECT_NE(again.find("reload rejected, previous configuration kept"), std::string::npos) << again;
  EXPECT_NE(again.find("unknown key 'bogus_section'"), std::string::npos) << again;
  expect_ticking();
}

// status narrows and orders the VMs (--vm, --sort), fits the table to the terminal and shows
// local times with their age (--utc: as the daemon sends them); options take "--opt=value" as
// well as "--opt value", and an option the command does not take is refused.
TEST_F(ControlledDaemon, StatusSelectsSortsAndFitsTheTerminal) {
  std::this_thread::sleep_for(1000ms);
  const auto all = ctl("status --vm=te* --sort held");
  EXPECT_NE(all.find("\ntest "), std::string::npos) << all;
  EXPECT_NE(all.find(" ago)"), std::string::npos) << all;  // "host at 14:02:11 (1 s ago)"
  const auto none = ctl("status --vm nomatch");
  EXPECT_EQ(none.find("\ntest "), std::string::npos) << none;
  const auto json = nlohmann::json::parse(ctl("status --json --vm nomatch"), nullptr, false);
  ASSERT_TRUE(json.is_object());
  EXPECT_TRUE(json["vms"].empty());
  EXPECT_NE(ctl("status --utc").find("host at 20"), std::string::npos);

  // No table line is wider than $COLUMNS: the explanation, last, is cut with an ellipsis.
  const auto narrow = memtide::testing::run_command(
      "COLUMNS=120 " + std::string(MEMTIDECTL_BINARY) + " status --socket " + control_socket());
  const auto table = narrow.substr(narrow.find("\nVM ") + 1);
  std::istringstream lines(table);
  int rows = 0;
  for (std::string line; std::getline(lines, line) && !line.empty();) {
    const auto columns = std::count_if(line.begin(), line.end(), [](char c) {
      return (static_cast<unsigned char>(c) & 0xC0) != 0x80;  // UTF-8 lead bytes: ASCII text
    });
    EXPECT_LE(columns, 120) << line;
    ++rows;
  }
  EXPECT_GE(rows, 2) << narrow;
  EXPECT_NE(table.find("\xE2\x80\xA6"), std::string::npos) << table;  // something was cut

  constexpr int kUsage = 64 << 8;  // exit code 64 from std::system
  EXPECT_EQ(ctl_status("status --passes 3"), kUsage);
  const auto refused = memtide::testing::run_command(std::string(MEMTIDECTL_BINARY) +
                                                     " status --passes 3 2>&1; true");
  EXPECT_NE(refused.find("--passes does not apply to status (it is for: scan)"), std::string::npos)
      << refused;
  EXPECT_EQ(ctl_status("status --sort bogus"), kUsage);
  EXPECT_EQ(ctl_status("pause --json=yes"), kUsage);  // a flag takes no value
}

// A drop-in added beside the running daemon's file takes effect on reload and is named in the
// status and the journal line; a bad one is refused at its own file and line.
TEST_F(ControlledDaemon, ReloadReadsDropIns) {
  std::filesystem::create_directory(dir_ + "/memtide.d");
  std::ofstream(dir_ + "/memtide.d/50-dry-run.yaml") << "daemon:\n  dry_run: true\n";
  EXPECT_NE(ctl("reload").find("configuration reloaded from"), std::string::npos);
  const auto status = nlohmann::json::parse(ctl("status --json"), nullptr, false);
  ASSERT_TRUE(status.is_object());
  EXPECT_EQ(status["daemon"]["config_dropins"],
            nlohmann::json::array({dir_ + "/memtide.d/50-dry-run.yaml"}))
      << status["daemon"].dump();
  EXPECT_TRUE(status["daemon"]["dry_run"].get<bool>()) << status["daemon"].dump();
  EXPECT_NE(log().find("MEMTIDE_CONFIG_DROPINS=" + dir_ + "/memtide.d/50-dry-run.yaml"),
            std::string::npos);
  std::ofstream(dir_ + "/memtide.d/60-bad.yaml") << "# a comment\nksm: {mode: sometimes}\n";
  const auto rejected = memtide::testing::run_command(
      std::string(MEMTIDECTL_BINARY) + " reload --socket " + control_socket() + " 2>&1; true");
  EXPECT_NE(rejected.find(dir_ + "/memtide.d/60-bad.yaml:2:"), std::string::npos) << rejected;
  expect_ticking();
}

TEST_F(ControlledDaemon, BadRequestsGetErrorRepliesAndTheDaemonCarriesOn) {
  EXPECT_EQ(raw("not json\n")["error"], "the request is not valid JSON");
  EXPECT_EQ(raw("[1, 2]\n")["error"], "a request is an object with a \"command\" string");
  EXPECT_EQ(raw("{\"command\": 7}\n")["error"], "a request is an object with a \"command\" string");
  EXPECT_NE(raw("{\"command\": \"format-disk\"}\n")["error"].get<std::string>().find(
                "unknown command 'format-disk'"),
            std::string::npos);
  EXPECT_EQ(raw("{\"command\": \"explain\"}\n")["error"],
            "explain needs \"vm\": a VM name or UUID");
  EXPECT_EQ(raw(std::string(100'000, 'x'))["error"], "request larger than 64 KiB");
  EXPECT_EQ(raw("{\"command\": \"status\"}")["ok"], true);  // no newline, then end of stream
  expect_ticking();
}

TEST_F(ControlledDaemon, IdleClientsAreDroppedAndCannotLockOthersOut) {
  std::vector<int> idle;
  for (int i = 0; i < 24; ++i) {  // more than the 16 served at once
    idle.push_back(connect_raw());
  }
  expect_ticking();                     // the loop is not blocked by them
  std::this_thread::sleep_for(2500ms);  // past the 2 s request timeout
  EXPECT_EQ(raw("{\"command\": \"status\"}\n")["ok"], true);
  for (const int fd : idle) {
    // Closed by the daemon after its timeout (nothing to read), never served, or turned away
    // with the busy reply.
    char buf[512] = {};
    const ssize_t n = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
    if (n > 0) {
      EXPECT_NE(std::string(buf).find("memtided is busy"), std::string::npos) << buf;
    }
    close(fd);
  }
}

// With every client slot held, memtidectl says the daemon is busy (it used to report a
// misleading "Broken pipe"), and a slot freed is served again.
TEST_F(ControlledDaemon, AClientTurnedAwayIsToldTheDaemonIsBusy) {
  std::vector<int> held;
  for (int i = 0; i < 16; ++i) {
    held.push_back(connect_raw());
  }
  std::this_thread::sleep_for(300ms);  // all accepted by the loop
  const std::string out = memtide::testing::run_command(
      std::string(MEMTIDECTL_BINARY) + " status --socket " + control_socket() + " 2>&1; true");
  EXPECT_NE(out.find("memtided is busy"), std::string::npos) << out;
  EXPECT_EQ(out.find("Broken pipe"), std::string::npos) << out;
  for (const int fd : held) {
    close(fd);
  }
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(ctl_status("status"), 0);
}

// The control socket replaces only a socket: pointing it at a regular file is an error, and the
// file is left as it was.
TEST(ControlSocketPath, ARegularFileIsNeverReplaced) {
  char tmpl[] = "/tmp/memtide-ctl-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/precious";
  std::ofstream(path) << "keep me\n";
  sd_event* event = nullptr;
  ASSERT_GE(sd_event_new(&event), 0);
  auto server = memtide::daemon::ControlServer::start(
      event, path, [](const nlohmann::json&) { return nlohmann::json::object(); });
  EXPECT_FALSE(server.ok());
  if (!server.ok()) {
    EXPECT_NE(server.error().message.find("not a socket"), std::string::npos);
  }
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "keep me");
  // A stale socket is replaced, and only the socket this server bound is removed at the end.
  const std::string sock = dir + "/control.sock";
  {
    auto first = memtide::daemon::ControlServer::start(
        event, sock, [](const nlohmann::json&) { return nlohmann::json::object(); });
    ASSERT_TRUE(first.ok()) << first.error().to_string();
    unlink(sock.c_str());
    std::ofstream(sock) << "someone else's\n";
  }
  struct stat st {};
  EXPECT_EQ(stat(sock.c_str(), &st), 0) << "the server removed a file it had not bound";
  sd_event_unref(event);
  std::system(("rm -rf '" + dir + "'").c_str());
}

// The same daemon on a host where oVirt MOM runs: a copy of a captured host tree whose procfs
// also holds a root process named momd.
class YieldingDaemon : public ControlledDaemon {
 public:
  YieldingDaemon() {
    char tmpl[] = "/tmp/memtide-tree-XXXXXX";
    tree_ = mkdtemp(tmpl);
    std::filesystem::copy(std::string(MEMTIDE_FIXTURES) + "/hosts/debian12-6.18", tree_,
                          std::filesystem::copy_options::recursive);
    const std::string mom = tree_ + "/proc/4242";
    std::filesystem::create_directories(mom);
    std::ofstream(mom + "/comm") << "momd\n";
    std::ofstream(mom + "/cmdline") << std::string("/usr/bin/python3\0/usr/sbin/momd\0", 32);
    std::ofstream(mom + "/status") << "Name:\tmomd\nUid:\t0\t0\t0\t0\n";
  }
  ~YieldingDaemon() override { std::filesystem::remove_all(tree_); }
  std::string daemon_settings() const override {
    return ", procfs: " + tree_ + "/proc, sysfs: " + tree_ + "/sys";
  }
  std::string tree_;
};

TEST_F(YieldingDaemon, LeavesBalloonsToMomUntilItIsGone) {
  std::this_thread::sleep_for(1500ms);  // the guest has wanted memory for several ticks
  auto j = nlohmann::json::parse(ctl("status --json"));
  EXPECT_EQ(j["host"]["other_managers"],
            nlohmann::json::parse(
                R"([{"name": "momd", "pid": 4242, "left_to_it": ["balloons", "ksm"]}])"));
  EXPECT_TRUE(j["recent_commands"].empty()) << j["recent_commands"];
  EXPECT_EQ(j["vms"][0]["managed"], false);
  EXPECT_NE(j["vms"][0]["explanation"].get<std::string>().find(
                "momd (pid 4242) resizes balloons on this host"),
            std::string::npos)
      << j["vms"][0]["explanation"];
  EXPECT_EQ(j["alerts"][0]["name"], "other-memory-manager") << j["alerts"];
  EXPECT_NE(ctl("status").find("other memory manager momd (pid 4242): balloons and ksm left to it"),
            std::string::npos)
      << ctl("status");
  EXPECT_EQ(count("momd (pid 4242) resizes balloons and tunes KSM on this host: memtide leaves "
                  "both to it (daemon.coexist: force makes memtide act anyway)"),
            1)
      << log();

  std::filesystem::remove_all(tree_ + "/proc/4242");  // MOM stops: seen within a pass (5 s)
  for (int i = 0; i < 80 && count("no other memory manager runs any more") == 0; ++i) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(count("no other memory manager runs any more"), 1) << log();
  std::this_thread::sleep_for(1000ms);  // a tick or more under control again
  j = nlohmann::json::parse(ctl("status --json"));
  EXPECT_TRUE(j["host"]["other_managers"].empty());
  EXPECT_EQ(j["vms"][0]["managed"], true);
  EXPECT_FALSE(j["recent_commands"].empty());
}

}  // namespace
