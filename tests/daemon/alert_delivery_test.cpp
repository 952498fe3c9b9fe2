// Alert sinks: the payloads, the exec hook run for real, and the Alertmanager client against a
// listening socket that answers like an HTTP server.
#include <algorithm>
#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include "alerts/delivery.hpp"

namespace memtide::daemon {
namespace {

using namespace std::chrono_literals;

AlertNotice notice(bool resolved) {
  return {{"guest-distress", "web-1", policy::Severity::warning, "web-1 at its floor", 0},
          resolved,
          1'800'000'000'000,
          1'800'000'060'000};
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) {
      return true;
    }
    std::this_thread::sleep_for(20ms);
  }
  return pred();
}

TEST(AlertPayloads, AlertmanagerV2AndExecBodies) {
  const auto target = alert_target_labels("host-a", "127.0.0.1:9847", {});
  const auto am = alertmanager_body({notice(false)}, target, "https://wiki.example/memtide");
  ASSERT_EQ(am.size(), 1u);
  // The names and labels the shipped Prometheus rules give the same alert
  // (packaging/prometheus/memtide-alerts.test.yml), so Alertmanager sees one alert.
  EXPECT_EQ(am[0]["labels"], nlohmann::json({{"alertname", "MemtideGuestDistress"},
                                             {"severity", "warning"},
                                             {"instance", "host-a:9847"},
                                             {"job", "memtide"},
                                             {"domain", "web-1"}}));
  EXPECT_EQ(am[0]["annotations"]["summary"], "web-1 at its floor");
  EXPECT_EQ(am[0]["annotations"]["runbook_url"],
            "https://wiki.example/memtide#memtideguestdistress");
  EXPECT_EQ(am[0]["startsAt"], "2027-01-15T08:00:00.000Z");
  EXPECT_EQ(am[0]["endsAt"], "2027-01-15T08:01:00.000Z");
  const auto host_alert =
      alertmanager_body({{{"host-swapping", "", policy::Severity::critical, "s", 0}, false, 0, 0}},
                        target, config::AlertsSection{}.runbook_base);
  EXPECT_EQ(host_alert[0]["labels"]["alertname"], "MemtideHostSwapping");
  EXPECT_FALSE(host_alert[0]["labels"].contains("domain"));
  const auto ex = exec_body(notice(true), "host-a");
  EXPECT_EQ(ex["status"], "resolved");
  EXPECT_EQ(ex["alert"], "guest-distress");
  EXPECT_EQ(ex["domain"], "web-1");
  EXPECT_EQ(ex["ends_at"], "2027-01-15T08:01:00.000Z");
  EXPECT_TRUE(exec_body(notice(false), "h")["ends_at"].is_null());
}

TEST(AlertPayloads, TheHostIsNamedAsPrometheusNamesItsTarget) {
  // Without metrics there is no port to name.
  EXPECT_EQ(alert_target_labels("h", "", {}),
            (std::map<std::string, std::string>{{"instance", "h"}, {"job", "memtide"}}));
  EXPECT_EQ(alert_target_labels("h", "[::1]:9100", {})["instance"], "h:9100");
  // alerts.alertmanager.labels replace the defaults and add to them.
  EXPECT_EQ(alert_target_labels("h", "0.0.0.0:9847",
                                {{"instance", "h.example.org:9847"}, {"cluster", "eu-1"}}),
            (std::map<std::string, std::string>{
                {"cluster", "eu-1"}, {"instance", "h.example.org:9847"}, {"job", "memtide"}}));
}

TEST(AlertNames, EveryAlertHasOneAlertmanagerName) {
  std::set<std::string> names;
  for (const char* name : policy::kAllAlertNames) {
    const auto camel = policy::alertname(name);
    EXPECT_EQ(camel.find('-'), std::string::npos) << camel;
    names.insert(camel);
  }
  EXPECT_EQ(names.size(), std::size(policy::kAllAlertNames));
  EXPECT_EQ(policy::alertname("host-swap-forecast"), "MemtideHostSwapForecast");
  EXPECT_EQ(policy::alertname("libvirt-down"), "MemtideLibvirtDown");
}

// The shipped Prometheus rules know every alert memtided raises by the name memtided sends to
// Alertmanager, and every rule links, at the installed runbooks page, a runbook that
// docs/runbooks.md has (a heading whose anchor is the alertname in lower case).
TEST(AlertNames, TheShippedRulesCarryEveryAlertUnderItsAlertmanagerName) {
  const YAML::Node rules = YAML::LoadFile(MEMTIDE_ALERT_RULES);
  std::ifstream file(MEMTIDE_DOCS "/runbooks.md");
  ASSERT_TRUE(file);
  const std::string runbooks((std::istreambuf_iterator<char>(file)),
                             std::istreambuf_iterator<char>());
  const std::string base = config::AlertsSection{}.runbook_base;
  EXPECT_EQ(base, "file:///usr/share/doc/memtide/runbooks.md") << "where the package installs it";
  std::map<std::string, std::string> expr_by_alert;  // alertname -> its rules' exprs
  for (const auto& group : rules["groups"]) {
    for (const auto& rule : group["rules"]) {
      if (!rule["alert"]) {
        continue;
      }
      const auto name = rule["alert"].as<std::string>();
      expr_by_alert[name] += rule["expr"].as<std::string>() + "\n";
      std::string anchor = name;
      std::transform(anchor.begin(), anchor.end(), anchor.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      EXPECT_EQ(rule["annotations"]["runbook_url"].as<std::string>(""), base + "#" + anchor)
          << name;
      EXPECT_FALSE(rule["annotations"]["summary"].as<std::string>("").empty()) << name;
      EXPECT_FALSE(rule["annotations"]["description"].as<std::string>("").empty()) << name;
      EXPECT_NE(runbooks.find("\n## " + name + "\n"), std::string::npos)
          << name << " has no runbook in docs/runbooks.md";
    }
  }
  for (const char* id : policy::kAllAlertNames) {
    const auto it = expr_by_alert.find(policy::alertname(id));
    ASSERT_NE(it, expr_by_alert.end()) << id << " has no rule";
    EXPECT_NE(it->second.find(std::string("memtide_alert_firing{alert=\"") + id + "\"}"),
              std::string::npos)
        << it->second;
    // memtided's own link for the alert is the rule's.
    std::string anchor = policy::alertname(id);
    std::transform(anchor.begin(), anchor.end(), anchor.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    EXPECT_EQ(runbook_url(base, id), base + "#" + anchor);
    EXPECT_NE(runbooks.find("\n## " + policy::alertname(id) + "\n"), std::string::npos) << id;
  }
}

class AlertHook : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-alerts-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string script(const std::string& name, const std::string& body) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << "#!/bin/sh\n" << body << "\n";
    std::filesystem::permissions(path, std::filesystem::perms::owner_all);
    return path;
  }
  std::string read(const std::string& name) {
    std::ifstream in(dir_ + "/" + name);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  std::string dir_;
};

TEST_F(AlertHook, ExecHookGetsTheAlertOnStdin) {
  ExecSink sink(script("hook", "cat > " + dir_ + "/got.json"), 5s);
  const std::string payload = exec_body(notice(false), "host-a").dump();
  sink.submit(payload);
  ASSERT_TRUE(eventually([&] { return sink.figures().delivered == 1; }));
  EXPECT_EQ(read("got.json"), payload);
  EXPECT_EQ(sink.last_error(), "");
}

TEST_F(AlertHook, ExecHookThatHangsIsKilledAndOneThatFailsIsReported) {
  ExecSink slow(script("slow", "sleep 30"), 300ms);
  const auto started = std::chrono::steady_clock::now();
  slow.submit("{}");
  ASSERT_TRUE(eventually([&] { return slow.figures().failed_attempts >= 1; }));
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_NE(slow.last_error().find("killed after 300 ms"), std::string::npos) << slow.last_error();

  ExecSink failing(script("fail", "exit 3"), 5s);
  failing.submit("{}");
  ASSERT_TRUE(eventually([&] { return failing.figures().failed_attempts >= 1; }));
  EXPECT_NE(failing.last_error().find("exited with status 3"), std::string::npos);

  ExecSink missing(dir_ + "/no-such-hook", 5s);
  missing.submit("{}");
  ASSERT_TRUE(eventually([&] { return missing.figures().failed_attempts >= 1; }));
  EXPECT_NE(missing.last_error().find("No such file"), std::string::npos) << missing.last_error();
}

// A hook killed at its timeout is dropped, not run again: a hook that hangs would hang again,
// and one that was merely slow may already have paged someone.
TEST_F(AlertHook, AHookKilledAtItsTimeoutIsNotRetried) {
  ExecSink slow(script("slow", "echo run >> " + dir_ + "/runs; sleep 30"), 300ms);
  slow.submit("{}");
  ASSERT_TRUE(eventually([&] { return slow.figures().dropped == 1; }));
  std::this_thread::sleep_for(2500ms);  // past the first retry's backoff (1 s)
  EXPECT_EQ(slow.figures().failed_attempts, 1u);
  EXPECT_EQ(read("runs"), "run\n");
  EXPECT_NE(slow.last_error().find("not retried"), std::string::npos) << slow.last_error();
}

// The hook gets a minimal environment, never memtided's own (NOTIFY_SOCKET would let it speak
// for memtided to systemd; the unit's environment may hold secrets).
TEST_F(AlertHook, TheHookGetsAMinimalEnvironment) {
  setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
  setenv("MEMTIDE_TEST_SECRET", "hunter2", 1);
  ExecSink sink(script("hook", "env > " + dir_ + "/env.txt"), 5s);
  sink.submit("{}");
  ASSERT_TRUE(eventually([&] { return sink.figures().delivered == 1; }));
  unsetenv("NOTIFY_SOCKET");
  unsetenv("MEMTIDE_TEST_SECRET");
  const std::string env = read("env.txt");
  EXPECT_EQ(env.find("NOTIFY_SOCKET"), std::string::npos) << env;
  EXPECT_EQ(env.find("hunter2"), std::string::npos) << env;
  EXPECT_NE(env.find("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"),
            std::string::npos)
      << env;
  EXPECT_NE(env.find("MEMTIDE_HOOK=1\n"), std::string::npos) << env;
}

TEST_F(AlertHook, AHookThatIgnoresStdinCannotKillTheDaemon) {
  // Each payload is written while (or after) the hook exits without reading it: with a plain
  // pipe that raises SIGPIPE in the writing process.
  ExecSink sink(script("deaf", "exec 0<&-; exit 0"), 5s);
  for (int i = 0; i < 40; ++i) {
    sink.submit(std::string(60'000, 'x'));
  }
  ASSERT_TRUE(eventually(
      [&] { return sink.figures().delivered + sink.figures().failed_attempts >= 40; }, 60s));
}

TEST_F(AlertHook, StoppingDoesNotWaitForAHangingHook) {
  auto sink = std::make_unique<ExecSink>(script("hang", "sleep 60"), 60s);
  sink->submit("{}");
  std::this_thread::sleep_for(300ms);  // the hook is running
  const auto started = std::chrono::steady_clock::now();
  sink.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
}

TEST(DeliveryQueue, IsBoundedAndDropsTheOldest) {
  // A hook that blocks the worker on the first payload while more arrive.
  char tmpl[] = "/tmp/memtide-alerts-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string hook = dir + "/hook";
  std::ofstream(hook) << "#!/bin/sh\nsleep 1\n";
  std::filesystem::permissions(hook, std::filesystem::perms::owner_all);
  {
    ExecSink sink(hook, 5s);
    for (std::size_t i = 0; i < kAlertQueueLength + 10; ++i) {
      sink.submit("{\"n\": " + std::to_string(i) + "}");
    }
    EXPECT_GE(sink.figures().dropped, 9u);
  }  // the destructor stops the worker without waiting for the queue
  std::filesystem::remove_all(dir);
}

// Accepts one connection at a time, keeps each request, answers with `status`.
class FakeAlertmanager {
 public:
  explicit FakeAlertmanager(int status) : status_(status) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 8);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeAlertmanager() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string first_request() {
    std::lock_guard lock(mutex_);
    return requests_.empty() ? "" : requests_.front();
  }
  std::size_t count() {
    std::lock_guard lock(mutex_);
    return requests_.size();
  }

 private:
  void serve() {
    for (;;) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) {
        return;
      }
      std::string request;
      char buf[4096];
      // Headers, then Content-Length bytes of body.
      while (request.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) {
          break;
        }
        request.append(buf, static_cast<std::size_t>(n));
      }
      const auto cl = request.find("Content-Length: ");
      const std::size_t body_len =
          cl == std::string::npos ? 0 : std::stoul(request.substr(cl + 16));
      while (request.size() - request.find("\r\n\r\n") - 4 < body_len) {
        const ssize_t n = recv(c, buf, sizeof buf, 0);
        if (n <= 0) {
          break;
        }
        request.append(buf, static_cast<std::size_t>(n));
      }
      const std::string reply = "HTTP/1.1 " + std::to_string(status_) +
                                " X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      close(c);
      std::lock_guard lock(mutex_);
      requests_.push_back(request);
    }
  }
  int status_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::mutex mutex_;
  std::vector<std::string> requests_;
};

TEST(AlertmanagerSink, PostsTheAlertsToApiV2) {
  FakeAlertmanager am(200);
  AlertmanagerSink sink(am.url(), 2s);
  const std::string body =
      alertmanager_body({notice(false)}, alert_target_labels("host-a", "", {}), "file:///x").dump();
  sink.submit(body);
  ASSERT_TRUE(eventually([&] { return sink.figures().delivered == 1; }));
  const std::string request = am.first_request();
  EXPECT_EQ(request.rfind("POST /api/v2/alerts HTTP/1.1\r\n", 0), 0u) << request;
  EXPECT_NE(request.find("Content-Type: application/json"), std::string::npos);
  EXPECT_EQ(request.substr(request.find("\r\n\r\n") + 4), body);
}

TEST(AlertmanagerSink, RetriesAfterAnErrorAnswer) {
  FakeAlertmanager am(500);
  AlertmanagerSink sink(am.url(), 2s);
  sink.submit("[]");
  ASSERT_TRUE(eventually([&] { return sink.figures().failed_attempts >= 2; }, 8s));
  EXPECT_GE(am.count(), 2u);
  EXPECT_NE(sink.last_error().find("HTTP 500"), std::string::npos) << sink.last_error();
  EXPECT_EQ(sink.figures().delivered, 0u);
}

TEST(AlertmanagerSink, StoppingDoesNotWaitForASilentServer) {
  // Accepts connections (the kernel's backlog) but never answers.
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(listen(fd, 8), 0);
  socklen_t len = sizeof addr;
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  auto sink = std::make_unique<AlertmanagerSink>(
      "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port)), 30s);
  sink->submit("[]");
  std::this_thread::sleep_for(300ms);  // the request is waiting for an answer
  const auto started = std::chrono::steady_clock::now();
  sink.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  close(fd);
}

TEST(AlertmanagerSink, UnreachableIsAFailureNotAHang) {
  AlertmanagerSink sink("http://127.0.0.1:1", 500ms);
  sink.submit("[]");
  ASSERT_TRUE(eventually([&] { return sink.figures().failed_attempts >= 1; }));
  EXPECT_NE(sink.last_error().find("127.0.0.1:1"), std::string::npos);
}

}  // namespace
}  // namespace memtide::daemon
