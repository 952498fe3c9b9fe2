// A memtided process for tests that talk to it over its sockets: started against libvirt's test
// driver with a 200 ms tick, debug logging to a file, /metrics on a free loopback port and the
// control socket in a private directory; stopped with SIGTERM (and expected to exit 0) at the
// end of the test.
#pragma once

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

namespace memtide::testing {

class RunningDaemon : public ::testing::Test {
 public:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-http-XXXXXX";
    dir_ = mkdtemp(tmpl);
    std::ofstream(dir_ + "/memtide.yaml")
        << "daemon: {interval: 200ms, log_level: debug, control_socket: " << control_socket()
        << daemon_settings() << "}\nhost: {swap_forecast: {window: 10s}}\n"
        << extra_config();
    start();
  }
  void TearDown() override {
    const int status = stop();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << log();
    std::system(("rm -rf '" + dir_ + "'").c_str());
  }
  // Starts memtided on the test's configuration (again after stop(): same directory, state and
  // socket); returns once it serves metrics.
  void start() {
    port_ = 0;
    pid_ = fork();
    if (pid_ == 0) {
      const int err = open((dir_ + "/err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(err, STDERR_FILENO);
      execl(MEMTIDED_BINARY, MEMTIDED_BINARY, "--config", (dir_ + "/memtide.yaml").c_str(),
            "--connect", uri().c_str(), "--log-target", "stderr", "--metrics-listen", "127.0.0.1:0",
            static_cast<char*>(nullptr));
      _exit(127);
    }
    const std::regex listening("serving metrics on 127\\.0\\.0\\.1:([0-9]+)");
    for (int i = 0; i < 100 && port_ == 0; ++i) {
      std::smatch m;
      const std::string log = this->log();
      if (std::regex_search(log, m, listening)) {
        port_ = static_cast<std::uint16_t>(std::stoi(m[1]));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ASSERT_NE(port_, 0) << log();
  }
  // Stops it with SIGTERM; returns its wait status.
  int stop() {
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    return status;
  }
  // The libvirt connection memtided manages.
  virtual std::string uri() const { return "test:///default"; }
  // YAML appended to the test's configuration (sections other than daemon and host).
  virtual std::string extra_config() const { return ""; }
  // More keys of the daemon section, each after ", " ("procfs: /tmp/x/proc, ...").
  virtual std::string daemon_settings() const { return ""; }
  std::string control_socket() const { return dir_ + "/control.sock"; }
  std::string log() const {
    std::ifstream in(dir_ + "/err");
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  // The tick count in the latest debug line "tick N:".
  int ticks() const {
    const std::string l = log();
    const auto at = l.rfind("debug: tick ");
    return at == std::string::npos ? 0 : std::stoi(l.substr(at + 12));
  }
  // Waits for the loop to tick again.
  void expect_ticking() {
    const int before = ticks();
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    EXPECT_GT(ticks(), before) << "the loop stopped ticking";
  }

  std::string dir_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace memtide::testing
