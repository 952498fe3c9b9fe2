// memtided as a real process: the systemd notification protocol over a real AF_UNIX datagram
// socket passed as NOTIFY_SOCKET, signals, reloads, exit codes and --once output.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <nlohmann/json.hpp>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/config/units.hpp>
#include <memtide/core/text.hpp>

#include "../support/run_command.hpp"
#include "../support/run_in_pty.hpp"

namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A private temporary directory, removed with its files at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/memtide-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::system(("rm -rf '" + path_ + "'").c_str()); }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  void write(const std::string& name, const std::string& text) const {
    // Write and rename so the daemon never sees a half-written file.
    std::ofstream(file(name + ".tmp")) << text;
    ASSERT_EQ(rename(file(name + ".tmp").c_str(), file(name).c_str()), 0);
  }
  std::string read(const std::string& name) const {
    std::ifstream in(file(name));
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }

 private:
  std::string path_;
};

// The receiving end of the sd_notify protocol, as systemd sets it up: a thread reads every
// datagram as it comes, as systemd does. (An unread socket fills after net.unix.max_dgram_qlen
// datagrams, 10 by default, and then the daemon's next sd_notify blocks its tick loop: a test
// that stopped reading one daemon's socket saw that daemon ignore SIGTERM.)
class NotifySocket {
 public:
  explicit NotifySocket(std::string path) : path_(std::move(path)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path_.c_str());
    bound_ = bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    reader_ = std::thread([this] { read_all(); });
  }
  ~NotifySocket() {
    stop_ = true;
    reader_.join();
    close(fd_);
    unlink(path_.c_str());
  }
  bool bound() const { return bound_; }
  const std::string& path() const { return path_; }

  // Waits for a datagram containing `needle` (one of its newline-separated assignments, or a
  // substring of one) among those not yet passed over by an earlier wait; returns the whole
  // datagram, or "" on timeout.
  std::string wait_for(const std::string& needle, std::chrono::milliseconds timeout = 10s) {
    std::unique_lock lock(mutex_);
    std::string found;
    arrived_.wait_for(lock, timeout, [&] {
      while (next_ < received_.size()) {
        const std::string& msg = received_[next_++];
        if (msg.find(needle) != std::string::npos) {
          found = msg;
          return true;
        }
      }
      return false;
    });
    return found;
  }

 private:
  void read_all() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) {
        continue;
      }
      char buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        continue;
      }
      {
        const std::lock_guard lock(mutex_);
        received_.emplace_back(buf, static_cast<std::size_t>(n));
      }
      arrived_.notify_all();
    }
  }

  std::string path_;
  int fd_ = -1;
  bool bound_ = false;
  std::atomic<bool> stop_{false};
  std::mutex mutex_;
  std::condition_variable arrived_;
  std::vector<std::string> received_;  // every datagram, in order
  std::size_t next_ = 0;               // the first one no wait has passed over
  std::thread reader_;
};

// Starts memtided with stdout/stderr in files; kills it at the end if still running.
class DaemonProcess {
 public:
  DaemonProcess(const std::vector<std::string>& args, const std::string& notify_socket,
                const std::string& watchdog_usec, const std::string& out, const std::string& err) {
    pid_ = fork();
    if (pid_ == 0) {
      setenv("NOTIFY_SOCKET", notify_socket.c_str(), 1);
      if (!watchdog_usec.empty()) {
        setenv("WATCHDOG_USEC", watchdog_usec.c_str(), 1);
      }
      unsetenv("WATCHDOG_PID");
      unsetenv("JOURNAL_STREAM");
      const int o = open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      const int e = open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(o, STDOUT_FILENO);
      dup2(e, STDERR_FILENO);
      std::vector<char*> argv;
      argv.push_back(const_cast<char*>(MEMTIDED_BINARY));
      for (const auto& a : args) {
        argv.push_back(const_cast<char*>(a.c_str()));
      }
      argv.push_back(nullptr);
      execv(MEMTIDED_BINARY, argv.data());
      _exit(127);
    }
  }
  ~DaemonProcess() {
    if (pid_ > 0 && !exited_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  void signal(int sig) const { kill(pid_, sig); }
  pid_t pid() const { return pid_; }

  // Exit status, or -1 if it did not exit in time.
  int wait(std::chrono::milliseconds timeout = 10s) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exited_ = true;
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      usleep(10'000);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  bool exited_ = false;
};

struct Ran {
  int status;
  std::string out;
  std::string err;
};

Ran run(const std::vector<std::string>& args) {
  TempDir dir;
  DaemonProcess p(args, "", "", dir.file("out"), dir.file("err"));
  const int status = p.wait(30s);
  return {status, dir.read("out"), dir.read("err")};
}

const char* kConfig200ms =
    "daemon:\n  interval: 200ms\n  log_level: debug\n"
    "host:\n  swap_forecast: {window: 10s}\n";

TEST(DaemonProcess, ReadyAndWatchdogArriveOnTheNotifySocket) {
  TempDir dir;
  dir.write("memtide.yaml", kConfig200ms);
  NotifySocket notify(dir.file("notify"));
  ASSERT_TRUE(notify.bound());
  DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--log-target", "stderr"},
                       notify.path(), "500000", dir.file("out"), dir.file("err"));
  EXPECT_NE(notify.wait_for("READY=1"), "") << dir.read("err");
  EXPECT_NE(notify.wait_for("STATUS=tick"), "");
  // With WATCHDOG_USEC=500ms the pings must come at least every 500ms; wait for a few.
  for (int i = 0; i < 3; ++i) {
    EXPECT_NE(notify.wait_for("WATCHDOG=1", 2s), "") << "ping " << i;
  }
  daemon.signal(SIGTERM);
  EXPECT_NE(notify.wait_for("STOPPING=1"), "");
  EXPECT_EQ(daemon.wait(), 0);
  EXPECT_NE(dir.read("err").find("memtided stopped"), std::string::npos) << dir.read("err");
}

// Each guest keeps a descriptor open in memtided (its QEMU process's statm): started with a
// soft limit of 256, it raises it to the hard limit so a host of thousands of guests fits.
TEST(DaemonProcess, RaisesItsDescriptorLimitToTheHardLimit) {
  TempDir dir;
  dir.write("memtide.yaml", kConfig200ms);
  NotifySocket notify(dir.file("notify"));
  ASSERT_TRUE(notify.bound());
  rlimit saved{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
  if (saved.rlim_max <= 256) {
    GTEST_SKIP() << "the hard limit is already at most 256";
  }
  rlimit low = saved;
  low.rlim_cur = 256;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--log-target", "stderr"},
                       notify.path(), "", dir.file("out"), dir.file("err"));
  setrlimit(RLIMIT_NOFILE, &saved);
  ASSERT_NE(notify.wait_for("READY=1"), "") << dir.read("err");
  std::ifstream limits("/proc/" + std::to_string(daemon.pid()) + "/limits");
  std::string line;
  std::string open_files;
  while (std::getline(limits, line)) {
    if (line.rfind("Max open files", 0) == 0) {
      open_files = line;
    }
  }
  std::istringstream fields(open_files.substr(std::string("Max open files").size()));
  std::string soft;
  std::string hard;
  fields >> soft >> hard;
  EXPECT_EQ(soft, hard) << open_files;
  EXPECT_EQ(hard, saved.rlim_max == RLIM_INFINITY ? "unlimited" : std::to_string(saved.rlim_max));
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
}

// daemon.interval is kept to the millisecond: sd-event's default timer accuracy (250 ms) once
// turned an interval of 100 ms into 4 ticks a second.
TEST(DaemonProcess, ShortIntervalsAreKept) {
  TempDir dir;
  dir.write("memtide.yaml", "daemon:\n  interval: 100ms\nhost:\n  swap_forecast: {window: 10s}\n");
  NotifySocket notify(dir.file("notify"));
  DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--connect", "test:///default",
                        "--log-target", "stderr"},
                       notify.path(), "", dir.file("out"), dir.file("err"));
  ASSERT_NE(notify.wait_for("STATUS=tick 3 "), "") << dir.read("err");
  const auto start = Clock::now();
  ASSERT_NE(notify.wait_for("STATUS=tick 13 "), "") << dir.read("err");
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
  // Ten intervals of 100 ms; at the old 250 ms accuracy they took 2.5 s.
  EXPECT_LT(ms, 2000) << "10 ticks took " << ms << " ms";
  EXPECT_GE(ms, 900);
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
}

TEST(DaemonProcess, NoWatchdogPingsWithoutWatchdogUsec) {
  TempDir dir;
  dir.write("memtide.yaml", kConfig200ms);
  NotifySocket notify(dir.file("notify"));
  DaemonProcess daemon({"--config", dir.file("memtide.yaml")}, notify.path(), "", dir.file("out"),
                       dir.file("err"));
  ASSERT_NE(notify.wait_for("READY=1"), "");
  EXPECT_EQ(notify.wait_for("WATCHDOG=1", 1500ms), "");
  daemon.signal(SIGINT);
  EXPECT_EQ(daemon.wait(), 0);
}

TEST(DaemonProcess, SighupWithBrokenConfigKeepsTheRunningOne) {
  TempDir dir;
  dir.write("memtide.yaml", kConfig200ms);
  NotifySocket notify(dir.file("notify"));
  DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--log-target", "stderr"},
                       notify.path(), "", dir.file("out"), dir.file("err"));
  ASSERT_NE(notify.wait_for("READY=1"), "");
  ASSERT_NE(notify.wait_for("every 200ms"), "");

  // Line 3 has an unknown unit: the reload must fail and name it.
  dir.write("memtide.yaml", "daemon:\n  log_level: debug\n  interval: 2 parsecs\n");
  daemon.signal(SIGHUP);
  const auto reloading = notify.wait_for("RELOADING=1");
  ASSERT_NE(reloading, "");
  EXPECT_NE(reloading.find("MONOTONIC_USEC="), std::string::npos) << reloading;
  EXPECT_NE(notify.wait_for("READY=1"), "");
  const auto status = notify.wait_for("last reload failed");
  ASSERT_NE(status, "");
  EXPECT_NE(status.find("every 200ms"), std::string::npos) << status;  // old interval in force

  // Ticks go on at the old cadence after the failed reload.
  EXPECT_NE(notify.wait_for("STATUS=tick"), "");
  const auto err = dir.read("err");
  EXPECT_NE(err.find(dir.file("memtide.yaml") + ":3:13: daemon.interval: unknown duration unit"),
            std::string::npos)
      << err;
  EXPECT_NE(err.find("keeping the running configuration"), std::string::npos) << err;

  // A valid file is then taken, and the failure note goes away.
  dir.write("memtide.yaml", "daemon:\n  interval: 300ms\nhost:\n  swap_forecast: {window: 10s}\n");
  daemon.signal(SIGHUP);
  const auto good = notify.wait_for("every 300ms");
  ASSERT_NE(good, "") << dir.read("err");
  EXPECT_EQ(good.find("reload failed"), std::string::npos) << good;
  EXPECT_NE(dir.read("err").find("configuration reloaded"), std::string::npos);

  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
}

// A reload that finds the file empty (an editor or configuration manager caught mid-write) keeps
// the running configuration instead of switching to the built-in defaults; so does a FIFO put in
// the file's place, which once hung the reload on the event loop.
TEST(DaemonProcess, SighupWithAnEmptyFileOrAFifoKeepsTheRunningConfig) {
  TempDir dir;
  dir.write("memtide.yaml", kConfig200ms);
  NotifySocket notify(dir.file("notify"));
  DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--log-target", "stderr"},
                       notify.path(), "", dir.file("out"), dir.file("err"));
  ASSERT_NE(notify.wait_for("every 200ms"), "");
  for (const std::string content : {"", "# being rewritten\n", "\n\n"}) {
    dir.write("memtide.yaml", content);
    daemon.signal(SIGHUP);
    const auto status = notify.wait_for("last reload failed");
    ASSERT_NE(status, "") << dir.read("err");
    EXPECT_NE(status.find("every 200ms"), std::string::npos) << status;
    dir.write("memtide.yaml", kConfig200ms);
    daemon.signal(SIGHUP);
    ASSERT_NE(notify.wait_for("RELOADING=1"), "");
    ASSERT_NE(notify.wait_for("READY=1"), "");
  }
  EXPECT_NE(dir.read("err").find("holds no settings"), std::string::npos) << dir.read("err");

  ASSERT_EQ(unlink(dir.file("memtide.yaml").c_str()), 0);
  ASSERT_EQ(mkfifo(dir.file("memtide.yaml").c_str(), 0600), 0);
  daemon.signal(SIGHUP);
  const auto status = notify.wait_for("last reload failed", 5s);
  ASSERT_NE(status, "") << dir.read("err");
  EXPECT_NE(dir.read("err").find("not a regular file"), std::string::npos) << dir.read("err");
  EXPECT_NE(notify.wait_for("STATUS=tick"), "");  // the loop goes on
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  // --check-config refuses a FIFO at once too.
  const auto check = run({"--check-config", dir.file("memtide.yaml")});
  EXPECT_EQ(check.status, 2);
  EXPECT_NE(check.out.find("not a regular file"), std::string::npos) << check.out;
}

TEST(DaemonProcess, InvalidConfigAtStartExitsTwoBeforeReady) {
  TempDir dir;
  dir.write("memtide.yaml", "ksm:\n  mode: sometimes\n");
  NotifySocket notify(dir.file("notify"));
  DaemonProcess daemon({"--config", dir.file("memtide.yaml")}, notify.path(), "", dir.file("out"),
                       dir.file("err"));
  EXPECT_EQ(daemon.wait(), 2);
  EXPECT_EQ(notify.wait_for("READY=1", 200ms), "");
  EXPECT_NE(dir.read("err").find(":2:9: ksm.mode: unknown value 'sometimes'"), std::string::npos)
      << dir.read("err");
}

TEST(DaemonProcess, CollectionFailureIsLoggedAndTheDaemonKeepsRunning) {
  TempDir dir;
  dir.write("memtide.yaml", kConfig200ms);
  NotifySocket notify(dir.file("notify"));
  DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--procfs", dir.file("noproc"),
                        "--log-target", "stderr"},
                       notify.path(), "", dir.file("out"), dir.file("err"));
  ASSERT_NE(notify.wait_for("READY=1"), "");
  EXPECT_NE(notify.wait_for("collection failing"), "");
  EXPECT_NE(notify.wait_for("STATUS=tick 3 "), "");  // still ticking
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  const auto err = dir.read("err");
  // Logged once, not once per tick.
  const auto first = err.find("collection failed");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("collection failed", first + 1), std::string::npos) << err;
}

TEST(DaemonOnce, PrintsFiguresMatchingThisHost) {
  const auto r = run({"--once", "--config", MEMTIDE_CONFFILE});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  struct sysinfo si {};
  ASSERT_EQ(sysinfo(&si), 0);
  EXPECT_EQ(j["host"]["meminfo"]["total_bytes"].get<std::uint64_t>(),
            static_cast<std::uint64_t>(si.totalram) * si.mem_unit);
  EXPECT_TRUE(j["host"]["vmstat"]["page_faults_total"].is_number());
  std::ifstream ksm_run("/sys/kernel/mm/ksm/run");
  if (ksm_run) {
    int run_value = -1;
    ksm_run >> run_value;
    EXPECT_EQ(j["ksm"]["run"].get<int>(), run_value);
  }
}

TEST(DaemonOnce, ReadsAFixtureTree) {
  const std::string tree = std::string(MEMTIDE_FIXTURES) + "/hosts/old-kernel-4.14";
  const auto r = run({"--once", "--config", MEMTIDE_CONFFILE, "--procfs", tree + "/proc", "--sysfs",
                      tree + "/sys"});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["host"]["meminfo"]["total_bytes"], 8054844ULL * 1024);
  EXPECT_TRUE(j["host"]["pressure"]["memory"].is_null());
  EXPECT_EQ(j["unavailable"], nlohmann::json({"pressure/memory", "pressure/io", "pressure/cpu"}));
}

TEST(DaemonOnce, UnreadableProcfsExitsOne) {
  const auto r = run({"--once", "--config", MEMTIDE_CONFFILE, "--procfs", "/nonexistent"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("/nonexistent/meminfo"), std::string::npos) << r.err;
}

TEST(DaemonCli, CheckConfigExitCodes) {
  const auto good = run({"--check-config", MEMTIDE_CONFFILE});
  EXPECT_EQ(good.status, 0) << good.out;
  EXPECT_NE(good.out.find("valid"), std::string::npos);

  const std::string bad_file =
      std::string(MEMTIDE_FIXTURES) + "/config/invalid/size_decimal_unit.yaml";
  const auto bad = run({"--check-config", bad_file});
  EXPECT_EQ(bad.status, 2);
  EXPECT_NE(bad.out.find(bad_file + ":3:12: host.reserve: unknown size unit 'GB'"),
            std::string::npos)
      << bad.out;
  EXPECT_NE(bad.out.find("1 error in"), std::string::npos) << bad.out;

  EXPECT_EQ(run({"--check-config", "/nonexistent.yaml"}).status, 2);
}

TEST(DaemonCli, MissingExplicitConfigExitsTwo) {
  EXPECT_EQ(run({"--once", "--config", "/nonexistent/memtide.yaml"}).status, 2);
}

TEST(DaemonCli, UsageVersionHelp) {
  EXPECT_EQ(run({"--no-such-flag"}).status, 64);
  const auto version = run({"--version"});
  EXPECT_EQ(version.status, 0);
  EXPECT_EQ(version.out.rfind("memtided ", 0), 0u) << version.out;
  const auto help = run({"--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("--check-config"), std::string::npos);
}

}  // namespace

namespace {

// libvirt's test driver lives inside the memtided process: its default domain "test" runs at
// 2 GiB of an 8 GiB maximum. What memtided does to it on stop shows in its log.
std::string stop_log(const std::string& on_stop, const std::string& daemon_keys = "",
                     const std::vector<std::string>& flags = {}) {
  TempDir dir;
  dir.write("memtide.yaml", "daemon:\n  interval: 200ms\n  on_stop: " + on_stop + "\n" +
                                daemon_keys + "host:\n  swap_forecast: {window: 10s}\n");
  NotifySocket notify(dir.file("notify"));
  std::vector<std::string> args{"--config",        dir.file("memtide.yaml"), "--connect",
                                "test:///default", "--log-target",           "stderr"};
  args.insert(args.end(), flags.begin(), flags.end());
  DaemonProcess daemon(args, notify.path(), "", dir.file("out"), dir.file("err"));
  EXPECT_NE(notify.wait_for("1 VMs"), "") << dir.read("err");
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  return dir.read("err");
}

TEST(DaemonStop, RestoreGivesManagedVmsTheirMaximum) {
  const auto log = stop_log("restore");
  EXPECT_NE(log.find("restored on stop: test: 2 GiB -> 8 GiB"), std::string::npos) << log;
}

// A dry run changed no balloon, so its stop gives none back: the guest stays at 2 GiB, and the
// log says what a restore would have done. Both ways of asking for a dry run.
TEST(DaemonStop, DryRunRestoresNothing) {
  for (const auto& log :
       {stop_log("restore", "  dry_run: true\n"), stop_log("restore", "", {"--dry-run"})}) {
    EXPECT_EQ(log.find("notice: restored on stop"), std::string::npos) << log;
    EXPECT_NE(log.find("dry run, not restored on stop: test: would go 2 GiB -> 8 GiB"),
              std::string::npos)
        << log;
  }
}

TEST(DaemonStop, KeepLeavesBalloonsAlone) {
  const auto log = stop_log("keep");
  EXPECT_EQ(log.find("restored on stop"), std::string::npos) << log;
  EXPECT_NE(log.find("memtided stopped"), std::string::npos) << log;
}

Ran run_ctl(const std::vector<std::string>& args) {
  TempDir dir;
  const pid_t pid = fork();
  if (pid == 0) {
    const int o = open(dir.file("out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    const int e = open(dir.file("err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    dup2(o, STDOUT_FILENO);
    dup2(e, STDERR_FILENO);
    std::vector<char*> argv{const_cast<char*>(MEMTIDECTL_BINARY)};
    for (const auto& a : args) {
      argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);
    execv(MEMTIDECTL_BINARY, argv.data());
    _exit(127);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, dir.read("out"), dir.read("err")};
}

TEST(Memtidectl, RestoreAndDryRun) {
  const auto dry = run_ctl({"restore", "--dry-run", "--connect", "test:///default"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(dry.out, "test: would go 2 GiB -> 8 GiB\n");
  const auto real = run_ctl({"restore", "--connect", "test:///default"});
  EXPECT_EQ(real.status, 0) << real.err;
  EXPECT_EQ(real.out, "test: 2 GiB -> 8 GiB\n");
}

// Long work shows how far it got on a terminal (stderr), and nothing anywhere else: the progress
// line is erased before the results, which stay the same.
TEST(Progress, ShownOnATerminalOnly) {
  // A small process of its own to scan (this test's, under a sanitizer, maps terabytes).
  const pid_t sleeper = fork();
  if (sleeper == 0) {
    execl("/bin/sleep", "sleep", "60", static_cast<char*>(nullptr));
    _exit(127);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reap{sleeper};
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // exec'd
  const std::string me = std::to_string(sleeper);
  const auto scan = memtide::testing::run_in_pty(
      {MEMTIDECTL_BINARY, "scan", me, "--passes", "2", "--interval", "0.2"});
  ASSERT_TRUE(WIFEXITED(scan.status) && WEXITSTATUS(scan.status) == 0) << scan.output;
  EXPECT_NE(scan.output.find("\r\x1b[Kscanning PID " + me + " (1 of 1): pass 2 of 2"),
            std::string::npos)
      << scan.output;
  EXPECT_NE(scan.output.find("PID " + me + ": "), std::string::npos) << scan.output;
  const auto piped = run_ctl({"scan", me, "--passes", "1"});
  EXPECT_EQ(piped.status, 0) << piped.err;
  EXPECT_EQ((piped.out + piped.err).find('\x1b'), std::string::npos) << piped.err;

  const auto sim = memtide::testing::run_in_pty({MEMTIDE_SIM_BINARY, "--random", "20"}, 200, "", "",
                                                std::chrono::seconds(60));
  ASSERT_TRUE(WIFEXITED(sim.status) && WEXITSTATUS(sim.status) == 0) << sim.output;
  EXPECT_NE(sim.output.find("\r\x1b[Kscenario 1 of 20"), std::string::npos) << sim.output;
  // Erased before the table.
  EXPECT_LT(sim.output.rfind("\r\x1b[K"), sim.output.find("Random scenarios: 20"));
  const auto sim_piped =
      memtide::testing::run_command(std::string(MEMTIDE_SIM_BINARY) + " --random 20 2>&1");
  EXPECT_NE(sim_piped.find("Random scenarios: 20"), std::string::npos);
  EXPECT_EQ(sim_piped.find('\x1b'), std::string::npos);
}

// memtide-sim --plot: one named scenario at one ratio, each policy side by side.
TEST(SimPlot, WritesEachPolicySideBySide) {
  TempDir dir;
  const auto out =
      memtide::testing::run_command(std::string(MEMTIDE_SIM_BINARY) + " -s steady -r 1.0 --plot " +
                                    dir.file("s.svg") + " >/dev/null 2>&1; echo $?");
  EXPECT_EQ(out, "0");
  const std::string svg = dir.read("s.svg");
  for (const char* title :
       {"MemAvailable: memtide", "host swap: oVirt MOM", "guest memory: Proxmox"}) {
    EXPECT_NE(svg.find(title), std::string::npos) << title;
  }
  EXPECT_EQ(memtide::testing::run_command(std::string(MEMTIDE_SIM_BINARY) + " --plot " +
                                          dir.file("x.svg") + " 2>&1; echo $?")
                .substr(0, 22),
            "memtide-sim: --plot ne");
}

// Beside another balloon manager (a root momd in the configured procfs) restore leaves the
// balloons to it, unless daemon.coexist is force.
TEST(Memtidectl, RestoreLeavesBalloonsToAnotherManager) {
  TempDir dir;
  const std::string mom = dir.file("proc/4242");
  std::filesystem::create_directories(mom);
  std::ofstream(mom + "/comm") << "momd\n";
  std::ofstream(mom + "/cmdline") << std::string("momd\0", 5);
  std::ofstream(mom + "/status") << "Name:\tmomd\nUid:\t0\t0\t0\t0\n";
  dir.write("auto.yaml", "daemon: {procfs: " + dir.file("proc") + "}\n");
  dir.write("force.yaml", "daemon: {procfs: " + dir.file("proc") + ", coexist: force}\n");
  const auto left =
      run_ctl({"restore", "--config", dir.file("auto.yaml"), "--connect", "test:///default"});
  EXPECT_EQ(left.status, 0) << left.err;
  EXPECT_EQ(left.out,
            "balloons are left to momd (pid 4242) (daemon.coexist: auto): nothing restored\n");
  const auto forced =
      run_ctl({"restore", "--config", dir.file("force.yaml"), "--connect", "test:///default"});
  EXPECT_EQ(forced.status, 0) << forced.err;
  EXPECT_EQ(forced.out, "test: 2 GiB -> 8 GiB\n");
}

// The unit's ExecStopPost safety net: acts only when systemd says memtided did not stop cleanly
// (SERVICE_RESULT other than "success") and daemon.on_stop is restore.
TEST(Memtidectl, RestoreIfServiceFailed) {
  auto with_result = [](const char* result, const std::vector<std::string>& extra = {}) {
    if (result != nullptr) {
      setenv("SERVICE_RESULT", result, 1);
    } else {
      unsetenv("SERVICE_RESULT");
    }
    std::vector<std::string> args{"restore", "--if-service-failed", "--connect", "test:///default"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_ctl(args);
    unsetenv("SERVICE_RESULT");
    return r;
  };
  EXPECT_EQ(with_result(nullptr).out, "");    // not run by systemd
  EXPECT_EQ(with_result("success").out, "");  // memtided restored on its way out
  const auto crashed = with_result("core-dump");
  EXPECT_EQ(crashed.status, 0) << crashed.err;
  EXPECT_NE(crashed.out.find("test: 2 GiB -> 8 GiB"), std::string::npos) << crashed.out;
  const auto watchdog = with_result("watchdog");
  EXPECT_NE(watchdog.out.find("test: 2 GiB -> 8 GiB"), std::string::npos) << watchdog.out;
  TempDir dir;
  dir.write("keep.yaml", "daemon: {on_stop: keep}\n");
  const auto keep = with_result("signal", {"--config", dir.file("keep.yaml")});
  EXPECT_EQ(keep.status, 0);
  EXPECT_EQ(keep.out.find("->"), std::string::npos) << keep.out;
  EXPECT_NE(keep.out.find("on_stop is keep"), std::string::npos) << keep.out;
  // A dry run (as the package's first install configures it) changed nothing: the safety net
  // restores nothing either.
  dir.write("dry.yaml", "daemon: {dry_run: true}\n");
  const auto dry = with_result("watchdog", {"--config", dir.file("dry.yaml")});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(dry.out.find("->"), std::string::npos) << dry.out;
  EXPECT_NE(dry.out.find("it ran in dry run"), std::string::npos) << dry.out;
}

// Every regular file under `root` with its contents, to tell whether anything wrote there.
std::map<std::string, std::string> files_under(const std::string& root) {
  std::map<std::string, std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(root)) {
    if (e.is_regular_file()) {
      std::ifstream in(e.path());
      std::stringstream text;
      text << in.rdbuf();
      out[e.path().string()] = text.str();
    }
  }
  return out;
}

// A dry run changes nothing anywhere: memtided --dry-run through ticks under host pressure, a
// reload and a stop, then again killed and followed by the unit's safety net, against the libvirt
// test driver served by a private libvirtd (shared by memtided, memtidectl and this test, which
// holds its connection so the driver's state lasts) and a copy of a host's /proc and /sys whose
// KSM files it would tune. The guest's balloon, every file of the host tree, and the state
// file's record of commands stay as they were. Once, the stop gave the guest its maximum and the
// safety net did after a kill (it could not see --dry-run). The test driver has no QEMU process,
// so the huge-page release is not reached here (act.cpp skips it in a dry run).
TEST(DryRun, ChangesNothingTheHostOrLibvirtHolds) {
  if (geteuid() != 0 || access("/usr/sbin/libvirtd", X_OK) != 0) {
    GTEST_SKIP() << "needs root and /usr/sbin/libvirtd";
  }
  TempDir dir;
  // The libvirtd's own directory (it runs as nobody, who cannot enter `dir`).
  char tmpl[] = "/tmp/memtide-dry-libvirtd-XXXXXX";
  const std::string libvirtd = mkdtemp(tmpl);
  const std::string helper = std::string(MEMTIDE_SOURCE_DIR) + "/tests/support/session-libvirtd";
  // Undone whatever the test's outcome, after the connection below is closed.
  struct Cleanup {
    std::string stop;
    ~Cleanup() {
      unsetenv("SERVICE_RESULT");
      unsetenv("RUNTIME_DIRECTORY");
      memtide::testing::run_command(stop);
    }
  } cleanup{helper + " stop " + libvirtd};
  const std::string session = memtide::testing::run_command(helper + " start " + libvirtd);
  ASSERT_EQ(session.rfind("qemu+unix:///session", 0), 0u) << session;
  const std::string uri = "test+unix:///default?socket=" + libvirtd + "/run/libvirt/libvirt-sock";
  struct Holder {
    virConnectPtr conn = nullptr;
    virDomainPtr dom = nullptr;
    ~Holder() {
      if (dom != nullptr) {
        virDomainFree(dom);
      }
      if (conn != nullptr) {
        virConnectClose(conn);
      }
    }
  } held;
  held.conn = virConnectOpen(uri.c_str());
  ASSERT_NE(held.conn, nullptr);
  held.dom = virDomainLookupByName(held.conn, "test");
  ASSERT_NE(held.dom, nullptr);
  constexpr unsigned long kStartKiB = 2UL << 20;  // below the class's floor (2.4 GiB)
  ASSERT_EQ(virDomainSetMemoryFlags(held.dom, kStartKiB, VIR_DOMAIN_AFFECT_LIVE), 0);
  const auto balloon_kib = [&] {
    virDomainInfo info{};
    return virDomainGetInfo(held.dom, &info) == 0 ? info.memory : 0;
  };
  ASSERT_EQ(balloon_kib(), kStartKiB);

  // The host: a captured tree, with MemAvailable 1 GiB (below the reserve: pressure). The guest
  // starts below its floor, so every tick decides to raise it.
  const std::string tree = dir.file("tree");
  std::filesystem::copy(std::string(MEMTIDE_FIXTURES) + "/hosts/debian12-6.18", tree,
                        std::filesystem::copy_options::recursive);
  {
    std::ifstream in(tree + "/proc/meminfo");
    std::stringstream text;
    text << in.rdbuf();
    std::string meminfo = text.str();
    const auto at = meminfo.find("MemAvailable:");
    meminfo.replace(at, meminfo.find('\n', at) - at, "MemAvailable:    1048576 kB");
    std::ofstream(tree + "/proc/meminfo") << meminfo;
  }
  const auto host_before = files_under(tree);
  std::filesystem::create_directory(dir.file("run"));
  dir.write("memtide.yaml", "daemon:\n  interval: 200ms\n  on_stop: restore\n  state_file: " +
                                dir.file("state.json") + "\n  procfs: " + tree +
                                "/proc\n  sysfs: " + tree +
                                "/sys\nhost: {swap_forecast: {window: 10s}}\n"
                                "libvirt: {stats_period: 1s}\n"
                                "classes:\n  - name: all\n    match: {name: \"*\"}\n"
                                "    balloon: {guest_free: 10%}\n");
  setenv("RUNTIME_DIRECTORY", dir.file("run").c_str(), 1);
  const std::vector<std::string> args{"--config", dir.file("memtide.yaml"), "--connect",
                                      uri,        "--log-target",           "stderr",
                                      "--dry-run"};
  {
    NotifySocket notify(dir.file("notify"));
    DaemonProcess daemon(args, notify.path(), "", dir.file("out"), dir.file("err"));
    ASSERT_NE(notify.wait_for("STATUS=tick 4 "), "") << dir.read("err");
    daemon.signal(SIGHUP);
    ASSERT_NE(notify.wait_for("RELOADING=1"), "") << dir.read("err");
    ASSERT_NE(notify.wait_for("STATUS=tick 8 "), "") << dir.read("err");
    EXPECT_TRUE(std::filesystem::exists(dir.file("run/dry-run")));
    daemon.signal(SIGTERM);
    ASSERT_EQ(daemon.wait(), 0) << dir.read("err");
  }
  const std::string log = dir.read("err");
  EXPECT_NE(log.find("dry run, not applied: balloon test"), std::string::npos) << log;
  EXPECT_NE(log.find("configuration reloaded"), std::string::npos) << log;
  EXPECT_NE(log.find("dry run, not restored on stop"), std::string::npos) << log;
  EXPECT_EQ(balloon_kib(), kStartKiB) << log;
  EXPECT_TRUE(files_under(tree) == host_before) << "the host tree changed";
  const auto state = nlohmann::json::parse(dir.read("state.json"), nullptr, false);
  ASSERT_TRUE(state.is_object()) << dir.read("state.json");
  for (const auto& [uuid, vm] : state["vms"].items()) {
    EXPECT_TRUE(vm["last_target_bytes"].is_null()) << uuid << ": " << vm;
    EXPECT_EQ(vm["last_direction"], 0) << uuid << ": " << vm;
  }

  // Killed in a dry run: the safety net (ExecStopPost) finds the mark and restores nothing,
  // although the configuration alone says nothing of a dry run.
  {
    NotifySocket notify(dir.file("notify"));
    DaemonProcess daemon(args, notify.path(), "", dir.file("out"), dir.file("err2"));
    ASSERT_NE(notify.wait_for("STATUS=tick 3 "), "") << dir.read("err2");
    daemon.signal(SIGKILL);
    daemon.wait();
  }
  setenv("SERVICE_RESULT", "signal", 1);
  const std::vector<std::string> net{
      "restore", "--if-service-failed", "--config", dir.file("memtide.yaml"), "--connect", uri};
  const auto after_kill = run_ctl(net);
  EXPECT_NE(after_kill.out.find("it ran in dry run"), std::string::npos) << after_kill.out;
  EXPECT_EQ(balloon_kib(), kStartKiB) << after_kill.out;
  // Without the mark (memtided not in dry run), the same safety net restores the guest: the
  // check above can fail.
  std::filesystem::remove(dir.file("run/dry-run"));
  const auto acting = run_ctl(net);
  EXPECT_NE(acting.out.find("test: 2 GiB -> 8 GiB"), std::string::npos) << acting.out;
  EXPECT_EQ(balloon_kib(), 8UL << 20);
}

// One memtided per libvirt daemon, with libvirt.connections: each daemon claims its
// connections' URIs. A second memtided given the same URI as the first yields to it until it
// stops; one given another URI (here the same socket by another path) does not. Once, with
// connections configured, every memtided claimed the unused libvirt.uri and the third yielded
// too. Against libvirt's test driver served by a private libvirtd (in-process test URIs are
// never claimed).
TEST(DaemonClaim, EachConnectionsUriIsClaimed) {
  if (geteuid() != 0 || access("/usr/sbin/libvirtd", X_OK) != 0) {
    GTEST_SKIP() << "needs root and /usr/sbin/libvirtd";
  }
  TempDir dir;
  char tmpl[] = "/tmp/memtide-claim-libvirtd-XXXXXX";
  const std::string libvirtd = mkdtemp(tmpl);
  const std::string helper = std::string(MEMTIDE_SOURCE_DIR) + "/tests/support/session-libvirtd";
  struct Cleanup {
    std::string stop;
    ~Cleanup() { memtide::testing::run_command(stop); }
  } cleanup{helper + " stop " + libvirtd};
  const std::string session = memtide::testing::run_command(helper + " start " + libvirtd);
  ASSERT_EQ(session.rfind("qemu+unix:///session", 0), 0u) << session;
  const std::string uri = "test+unix:///default?socket=" + libvirtd + "/run/libvirt/libvirt-sock";
  const std::string other =
      "test+unix:///default?socket=" + libvirtd + "/run/libvirt/./libvirt-sock";
  const auto config = [&](const std::string& name, const std::string& to) {
    dir.write(name + ".yaml",
              "daemon: {interval: 200ms, control_socket: \"\", state_file: \"\"}\n"
              "host: {swap_forecast: {window: 10s}}\nksm: {mode: unmanaged}\n"
              "libvirt:\n  connections:\n    - {name: " +
                  name + ", uri: \"" + to + "\"}\n");
    return std::vector<std::string>{"--config", dir.file(name + ".yaml"), "--log-target",
                                    "stderr",   "--metrics-listen",       "127.0.0.1:0"};
  };
  const std::string yields = "memtided (pid";
  NotifySocket notify_a(dir.file("notify-a"));
  NotifySocket notify_b(dir.file("notify-b"));
  NotifySocket notify_c(dir.file("notify-c"));
  DaemonProcess a(config("a", uri), notify_a.path(), "", dir.file("out-a"), dir.file("err-a"));
  ASSERT_NE(notify_a.wait_for("STATUS=tick 3 "), "") << dir.read("err-a");
  DaemonProcess c(config("c", other), notify_c.path(), "", dir.file("out-c"), dir.file("err-c"));
  DaemonProcess b(config("b", uri), notify_b.path(), "", dir.file("out-b"), dir.file("err-b"));
  ASSERT_NE(notify_c.wait_for("STATUS=tick 5 "), "") << dir.read("err-c");
  ASSERT_NE(notify_b.wait_for("STATUS=tick 5 "), "") << dir.read("err-b");
  EXPECT_NE(dir.read("err-b").find(yields), std::string::npos) << dir.read("err-b");
  EXPECT_EQ(dir.read("err-c").find(yields), std::string::npos) << dir.read("err-c");
  EXPECT_EQ(dir.read("err-a").find(yields), std::string::npos) << dir.read("err-a");

  a.signal(SIGTERM);
  ASSERT_EQ(a.wait(), 0) << dir.read("err-a");
  const auto deadline = Clock::now() + 10s;
  while (Clock::now() < deadline &&
         dir.read("err-b").find("no other memory manager runs any more") == std::string::npos) {
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_NE(dir.read("err-b").find("no other memory manager runs any more"), std::string::npos)
      << dir.read("err-b");
}

// A configured dry run holds for a restore by hand too: it lists what it would do.
TEST(Memtidectl, RestoreKeepsTheConfiguredDryRun) {
  TempDir dir;
  dir.write("dry.yaml", "daemon: {dry_run: true}\n");
  const auto r =
      run_ctl({"restore", "--config", dir.file("dry.yaml"), "--connect", "test:///default"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("test: would go 2 GiB -> 8 GiB"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("test: 2 GiB -> 8 GiB"), std::string::npos) << r.out;
}

// Every memtidectl command prints JSON with --json: restore its per-VM outcomes, check-config the
// files read and every error where it is.
TEST(Memtidectl, RestoreAndCheckConfigPrintJson) {
  const auto dry = run_ctl({"restore", "--dry-run", "--json", "--connect", "test:///default"});
  ASSERT_EQ(dry.status, 0) << dry.err;
  const auto restored = nlohmann::json::parse(dry.out);
  EXPECT_TRUE(restored["skipped"].is_null());
  ASSERT_EQ(restored["vms"].size(), 1u);
  EXPECT_EQ(restored["vms"][0]["name"], "test");
  EXPECT_EQ(restored["vms"][0]["outcome"], "dry-run");
  EXPECT_EQ(restored["vms"][0]["from_bytes"], 2ULL << 30);
  EXPECT_EQ(restored["vms"][0]["to_bytes"], 8ULL << 30);

  TempDir dir;
  dir.write("memtide.yaml", "daemon: {interval: 2s}\n");
  std::filesystem::create_directories(dir.file("memtide.d"));
  dir.write("memtide.d/10-bad.yaml", "# a comment\nksm: {mode: sometimes}\n");
  const auto bad = run_ctl({"check-config", "--json", dir.file("memtide.yaml")});
  EXPECT_EQ(bad.status, 2) << bad.err;
  const auto checked = nlohmann::json::parse(bad.out);
  EXPECT_FALSE(checked["valid"].get<bool>());
  EXPECT_EQ(checked["files"],
            nlohmann::json::array({dir.file("memtide.yaml"), dir.file("memtide.d/10-bad.yaml")}));
  ASSERT_EQ(checked["errors"].size(), 1u);
  EXPECT_EQ(checked["errors"][0]["file"], dir.file("memtide.d/10-bad.yaml"));
  EXPECT_EQ(checked["errors"][0]["line"], 2);
  EXPECT_EQ(checked["errors"][0]["key"], "ksm.mode");
  const auto good = run_ctl({"check-config", "--json", MEMTIDE_CONFFILE});
  EXPECT_EQ(good.status, 0);
  EXPECT_TRUE(nlohmann::json::parse(good.out)["valid"].get<bool>());
}

TEST(Memtidectl, RestoreLeavesUnmanagedVms) {
  TempDir dir;
  dir.write(
      "memtide.yaml",
      "classes:\n  - name: pinned\n    match: {name: \"te*\"}\n    balloon: {enabled: false}\n");
  const auto r =
      run_ctl({"restore", "--config", dir.file("memtide.yaml"), "--connect", "test:///default"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "test: left alone (balloon turned off for class pinned)\n");
}

TEST(Memtidectl, ErrorsAndExitCodes) {
  EXPECT_EQ(run_ctl({}).status, 64);
  EXPECT_EQ(run_ctl({"frobnicate"}).status, 64);
  const auto unreachable =
      run_ctl({"restore", "--connect", "qemu+unix:///system?socket=/nonexistent"});
  EXPECT_EQ(unreachable.status, 1);
  EXPECT_NE(unreachable.err.find("cannot connect"), std::string::npos) << unreachable.err;
  const std::string bad = std::string(MEMTIDE_FIXTURES) + "/config/invalid/duplicate_key.yaml";
  const auto check = run_ctl({"check-config", bad});
  EXPECT_EQ(check.status, 2);
  EXPECT_NE(check.out.find(bad + ":5:3: daemon.interval: duplicate key"), std::string::npos)
      << check.out;
  EXPECT_EQ(run_ctl({"check-config", MEMTIDE_CONFFILE}).status, 0);
}

// Numbers on the command line are validated (NaN once passed every range check, and a NaN pass
// count exited 1 with no message), and echoed values are cut.
TEST(Memtidectl, BadNumbersAndHugeArgumentsAreUsageErrors) {
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"scan", "--passes", "nan", "1"},
                                             {"scan", "--interval", "nan", "1"},
                                             {"scan", "--passes", "inf", "1"},
                                             {"scan", "--passes", "1.5", "1"},
                                             {"scan", "--interval", "-1", "1"}}) {
    const auto r = run_ctl(args);
    EXPECT_EQ(r.status, 64) << args[1] << " " << args[2];
    EXPECT_NE(r.err.find("needs a number"), std::string::npos) << r.err;
  }
  const std::string huge(100'000, 'x');  // one argument may hold up to 128 KiB
  for (const auto& r : {run_ctl({huge}), run_ctl({"status", huge}), run({huge})}) {
    EXPECT_EQ(r.status, 64);
    EXPECT_LT(r.err.size(), 500u);
  }
}

}  // namespace

namespace {

// With guest_free at 60 %, the test driver's guest (1 GiB usable of 2 GiB) is short of memory
// and the policy grows it by one step (10 % of its 8 GiB maximum).
const char* kHungryClass =
    "daemon:\n  interval: 200ms\n  on_stop: keep\nhost:\n  swap_forecast: {window: 10s}\n"
    "libvirt:\n  stats_period: 1s\n"
    "classes:\n  - name: all\n    match: {name: \"*\"}\n    balloon: {guest_free: 60%}\n";

std::string policy_log(const std::vector<std::string>& extra) {
  TempDir dir;
  dir.write("memtide.yaml", kHungryClass);
  NotifySocket notify(dir.file("notify"));
  std::vector<std::string> args{"--config",        dir.file("memtide.yaml"), "--connect",
                                "test:///default", "--log-target",           "stderr"};
  args.insert(args.end(), extra.begin(), extra.end());
  DaemonProcess daemon(args, notify.path(), "", dir.file("out"), dir.file("err"));
  EXPECT_NE(notify.wait_for("STATUS=tick 4 "), "") << dir.read("err");
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0);
  return dir.read("err");
}

TEST(DaemonPolicy, GuestShortOfMemoryGetsABalloonCommand) {
  const auto log = policy_log({});
  EXPECT_NE(log.find("memtided: notice: balloon test: 2 GiB -> 2.8 GiB: guest short of memory: "
                     "50% usable, target 60%"),
            std::string::npos)
      << log;
  EXPECT_EQ(log.find("dry run"), std::string::npos) << log;
}

TEST(DaemonPolicy, DryRunDecidesButDoesNotAct) {
  const auto log = policy_log({"--dry-run"});
  EXPECT_NE(log.find("dry run, not applied: balloon test: 2 GiB -> 2.8 GiB"), std::string::npos)
      << log;
  EXPECT_EQ(log.find("notice: balloon test"), std::string::npos) << log;
}

// The daemon records what it decided on; memtidectl simulate replays the trace through the same
// configuration and must reach the same balloon commands, reasons included.
TEST(DaemonRecord, SimulateReproducesTheDaemonsDecisions) {
  TempDir dir;
  std::string config = kHungryClass;
  config.replace(config.find("  on_stop: keep\n"), 15,
                 "  on_stop: keep\n  record: {path: " + dir.file("trace.jsonl") + "}\n");
  dir.write("memtide.yaml", config);
  NotifySocket notify(dir.file("notify"));
  DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--connect", "test:///default",
                        "--log-target", "stderr"},
                       notify.path(), "", dir.file("out"), dir.file("err"));
  ASSERT_NE(notify.wait_for("STATUS=tick 6 "), "") << dir.read("err");
  daemon.signal(SIGTERM);
  ASSERT_EQ(daemon.wait(), 0);
  const std::string log = dir.read("err");

  // Balloon commands the daemon logged, in order: "test: FROM -> TO: reason".
  std::vector<std::string> logged;
  std::istringstream lines(log);
  for (std::string line; std::getline(lines, line);) {
    const auto at = line.find("notice: balloon ");
    if (at != std::string::npos) {
      const auto fields = line.find(" MEMTIDE_EVENT=");  // the stderr log appends journal fields
      logged.push_back(line.substr(at + 16, fields - at - 16));
    }
  }
  ASSERT_FALSE(logged.empty()) << log;

  const auto sim = run_ctl({"simulate", "--config", dir.file("memtide.yaml"), "--trace",
                            dir.file("trace.jsonl"), "--json"});
  ASSERT_EQ(sim.status, 0) << sim.err;
  const auto j = nlohmann::json::parse(sim.out);
  std::vector<std::string> replayed;
  for (const auto& e : j["events"]) {
    if (e["kind"] == "balloon") {
      replayed.push_back(e["subject"].get<std::string>() + ": " + e["text"].get<std::string>());
    }
  }
  // Recording and acting happen in the same tick, so the trace covers exactly the logged ticks.
  EXPECT_EQ(replayed, logged);
  EXPECT_GE(j["summary"]["ticks"].get<int>(), 6);
  EXPECT_EQ(j["skipped"].size(), 0u);

  const auto text = run_ctl(
      {"simulate", "-c", dir.file("memtide.yaml"), "-t", dir.file("trace.jsonl"), "--quiet"});
  EXPECT_EQ(text.status, 0);
  EXPECT_NE(text.out.find("balloon commands: " + std::to_string(logged.size()) + " ("),
            std::string::npos)
      << text.out;
  // --plot: an SVG of the host, the VM and the decisions, one line per series.
  const auto plotted = run_ctl({"simulate", "-c", dir.file("memtide.yaml"), "-t",
                                dir.file("trace.jsonl"), "--quiet", "--plot", dir.file("p.svg")});
  EXPECT_EQ(plotted.status, 0) << plotted.err;
  const std::string svg = dir.read("p.svg");
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u) << svg.substr(0, 200);
  EXPECT_NE(svg.find("<title>test</title>"), std::string::npos);  // the VM's lines
  std::size_t polylines = 0;
  for (auto at = svg.find("<polyline"); at != std::string::npos;
       at = svg.find("<polyline", at + 1)) {
    ++polylines;
  }
  EXPECT_EQ(polylines, 3u);  // MemAvailable, the VM as recorded, the VM's decided targets
  // --quiet on a terminal says how far the replay got, then erases it before the summary.
  const auto on_terminal =
      memtide::testing::run_in_pty({MEMTIDECTL_BINARY, "simulate", "-c", dir.file("memtide.yaml"),
                                    "-t", dir.file("trace.jsonl"), "--quiet"});
  EXPECT_NE(on_terminal.output.find("\r\x1b[Kreplaying " + dir.file("trace.jsonl") + ": 1 ticks"),
            std::string::npos)
      << on_terminal.output;
  EXPECT_EQ(text.err.find('\x1b'), std::string::npos) << text.err;
  EXPECT_EQ(run_ctl({"simulate", "--trace", dir.file("absent")}).status, 1);
  EXPECT_EQ(run_ctl({"simulate"}).status, 64);

  // history --trace: the same commands, in the same order, as entries of the decision history.
  const auto history = run_ctl({"history", "test", "--config", dir.file("memtide.yaml"), "--trace",
                                dir.file("trace.jsonl"), "--json"});
  ASSERT_EQ(history.status, 0) << history.err;
  const auto entries = nlohmann::json::parse(history.out)["entries"];
  std::vector<std::string> commands;
  for (const auto& e : entries) {
    if (e["kind"] == "command") {
      EXPECT_EQ(e["result"], "replayed");
      commands.push_back(e["vm"].get<std::string>() + ": " +
                         memtide::config::format_size(e["balloon_bytes"].get<std::uint64_t>()) +
                         " -> " +
                         memtide::config::format_size(e["target_bytes"].get<std::uint64_t>()) +
                         ": " + e["detail"].get<std::string>());
    }
  }
  EXPECT_EQ(commands, logged);
}

// A domain's metadata with long non-ASCII values: the warning quoting them once carried a
// character cut in half, and the trace's strict JSON writer ended the daemon on its first tick.
TEST(DaemonRecord, HostileMetadataNeitherEndsTheDaemonNorBreaksTheTrace) {
  TempDir dir;
  std::string config = kHungryClass;
  config.replace(config.find("  on_stop: keep\n"), 15,
                 "  on_stop: keep\n  record: {path: " + dir.file("trace.jsonl") + "}\n");
  dir.write("memtide.yaml", config);
  NotifySocket notify(dir.file("notify"));
  const std::string uri = std::string("test://") + MEMTIDE_FIXTURES + "/libvirt/node-hostile.xml";
  DaemonProcess daemon(
      {"--config", dir.file("memtide.yaml"), "--connect", uri, "--log-target", "stderr"},
      notify.path(), "", dir.file("out"), dir.file("err"));
  ASSERT_NE(notify.wait_for("STATUS=tick 4 "), "") << dir.read("err");
  daemon.signal(SIGTERM);
  ASSERT_EQ(daemon.wait(), 0) << dir.read("err");
  const std::string log = dir.read("err");
  EXPECT_NE(log.find("invalid memtide metadata ignored: floor:"), std::string::npos) << log;
  EXPECT_TRUE(memtide::is_valid_utf8(log));
  std::istringstream trace(dir.read("trace.jsonl"));
  int lines = 0;
  for (std::string line; std::getline(trace, line); ++lines) {
    const auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    ASSERT_EQ(j["vms"].size(), 1u);
    EXPECT_EQ(j["vms"][0]["name"], "caf\xC3\xA9-\xE6\x9D\xB1\xE4\xBA\xAC");
  }
  EXPECT_GE(lines, 4);
}

// Alert deliveries that fail are logged with their reason (they used to be only counted), and
// not once per attempt.
TEST(DaemonAlerts, FailedDeliveriesAreLoggedWithTheirReason) {
  TempDir dir;
  dir.write("memtide.yaml",
            std::string(kConfig200ms) + "alerts:\n  alertmanager: {url: \"http://127.0.0.1:1\"}\n");
  NotifySocket notify(dir.file("notify"));
  // No libvirtd at this socket: libvirt-down fires after two ticks and is sent to Alertmanager.
  DaemonProcess daemon(
      {"--config", dir.file("memtide.yaml"), "--connect",
       "qemu+unix:///system?socket=" + dir.file("no-libvirtd"), "--log-target", "stderr"},
      notify.path(), "", dir.file("out"), dir.file("err"));
  ASSERT_NE(notify.wait_for("alert(s) firing"), "") << dir.read("err");
  std::string log;
  for (int i = 0; i < 100; ++i) {
    log = dir.read("err");
    if (log.find("alert-delivery-failed") != std::string::npos) {
      break;
    }
    notify.wait_for("(draining)", 100ms);  // an unread notify socket would block sd_notify
  }
  EXPECT_NE(log.find("alert delivery to alertmanager failed"), std::string::npos) << log;
  EXPECT_NE(log.find("http://127.0.0.1:1/api/v2/alerts: "), std::string::npos) << log;
  notify.wait_for("(draining)", 3s);  // two more failed attempts (1 s and 2 s backoff)
  log = dir.read("err");
  std::size_t lines = 0;
  for (auto at = log.find("alert-delivery-failed"); at != std::string::npos;
       at = log.find("alert-delivery-failed", at + 1)) {
    ++lines;
  }
  EXPECT_EQ(lines, 1u) << log;  // rate-limited to one line a minute
  daemon.signal(SIGTERM);
  EXPECT_EQ(daemon.wait(), 0) << dir.read("err");
}

// A restart mid-scenario: the guest is being grown when memtided stops (the test driver's guest
// starts again at 2 GiB, a balloon that has not moved yet); the restarted daemon reads the policy
// state back and waits for the command in flight instead of sending it again (without the state
// it sends at once: the burst of commands a restart used to cause).
TEST(DaemonState, ARestartKeepsThePolicysMemory) {
  TempDir dir;
  std::string config = kHungryClass;
  config.replace(config.find("  on_stop: keep\n"), 15,
                 "  on_stop: keep\n  state_file: " + dir.file("state.json") + "\n");
  // Ticks 1 s apart: the first run stops after its first command, well before a second.
  config.replace(config.find("interval: 200ms"), 15, "interval: 1s");
  dir.write("memtide.yaml", config);
  auto run_once = [&](const std::string& err, const std::string& until) {
    NotifySocket notify(dir.file("notify"));
    DaemonProcess daemon({"--config", dir.file("memtide.yaml"), "--connect", "test:///default",
                          "--log-target", "stderr"},
                         notify.path(), "", dir.file("out"), dir.file(err));
    EXPECT_NE(notify.wait_for(until), "") << dir.read(err);
    daemon.signal(SIGTERM);
    EXPECT_EQ(daemon.wait(), 0);
    return dir.read(err);
  };
  const std::string first = run_once("err1", "STATUS=tick 2 ");
  EXPECT_NE(first.find("no policy state at"), std::string::npos) << first;
  ASSERT_NE(first.find("notice: balloon test: 2 GiB -> 2.8 GiB"), std::string::npos) << first;
  ASSERT_EQ(first.find("notice: balloon test: 2.8 GiB"), std::string::npos) << first;
  struct stat st {};
  ASSERT_EQ(stat(dir.file("state.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  const std::string second = run_once("err2", "STATUS=tick 4 ");
  EXPECT_NE(second.find("policy state restored from " + dir.file("state.json") + ": 1 VM(s)"),
            std::string::npos)
      << second;
  EXPECT_EQ(second.find("notice: balloon test"), std::string::npos) << second;

  // A damaged state file is reported and ignored: the daemon starts fresh.
  dir.write("state.json", "{\"format\": 1, \"saved_unix_ms\": ");
  const std::string third = run_once("err3", "STATUS=tick 2 ");
  EXPECT_NE(third.find("not used, starting fresh"), std::string::npos) << third;
  EXPECT_NE(third.find("notice: balloon test: 2 GiB -> 2.8 GiB"), std::string::npos) << third;
}

// A drop-in anyone may write (here one that sets the alert hook) is refused at --check-config,
// located; it was once accepted with exit 0 and loaded by root's memtided.
TEST(DaemonCli, CheckConfigRefusesADropInOthersMayWrite) {
  TempDir dir;
  dir.write("memtide.yaml", "daemon: {interval: 2s}\n");
  std::filesystem::create_directory(dir.file("memtide.d"));
  dir.write("memtide.d/50-hook.yaml", "alerts: {exec: {command: /bin/true}}\n");
  EXPECT_EQ(run({"--check-config", dir.file("memtide.yaml")}).status, 0);
  chmod(dir.file("memtide.d/50-hook.yaml").c_str(), 0666);
  const auto r = run({"--check-config", dir.file("memtide.yaml")});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(
      (r.out + r.err).find(dir.file("memtide.d/50-hook.yaml") + ": writable by others (mode 0666)"),
      std::string::npos)
      << r.out << r.err;
}

// A configuration value with a byte that is not UTF-8 is refused at --check-config, located.
TEST(DaemonCli, CheckConfigRefusesInvalidUtf8) {
  TempDir dir;
  dir.write("memtide.yaml", "libvirt:\n  uri: \"qemu:///sys\xFFtem\"\n");
  const auto r = run({"--check-config", dir.file("memtide.yaml")});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE((r.out + r.err).find("memtide.yaml:2:20: invalid UTF-8"), std::string::npos)
      << r.out << r.err;
}

}  // namespace
