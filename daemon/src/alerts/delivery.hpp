// Delivery of alerts beyond the journal: Prometheus Alertmanager (API v2) and an exec hook.
// Each sink owns one worker thread and a bounded queue; the loop only enqueues (never blocks on
// the network or a child process). When a queue is full the oldest entry is dropped and counted.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include <memtide/policy/engine.hpp>

namespace memtide::daemon {

inline constexpr std::size_t kAlertQueueLength = 64;
// Attempts per payload (with backoff 1, 2, 4, 8 s between them) before it is dropped.
inline constexpr int kDeliveryAttempts = 5;

// One alert as sinks see it.
struct AlertNotice {
  policy::Alert alert;
  bool resolved = false;
  std::int64_t starts_unix_ms = 0;
  std::int64_t ends_unix_ms = 0;  // resolution time, or when a firing alert lapses unless re-sent
};

// Where an alert's runbook is: `runbook_base` (alerts.runbook_base, the installed
// docs/runbooks.md by default) and the alertname lower-cased as the anchor, which is the
// runbook's heading there. The shipped Prometheus rules link the same pages.
std::string runbook_url(const std::string& runbook_base, const std::string& alert);

// Labels naming this host on every alert sent to Alertmanager: instance
// ("<hostname>:<port of metrics_listen>", or the host name when metrics are off) and
// job="memtide", as Prometheus names the target it scrapes (docs/alerts.md), then
// alerts.alertmanager.labels over them.
std::map<std::string, std::string> alert_target_labels(
    const std::string& hostname, const std::string& metrics_listen,
    const std::map<std::string, std::string>& configured);

// The Alertmanager API v2 body for `alerts`: labels alertname (policy::alertname), severity,
// domain (guest alerts) and `target` (alert_target_labels); annotations summary and
// runbook_url; startsAt and endsAt in RFC 3339.
nlohmann::json alertmanager_body(const std::vector<AlertNotice>& alerts,
                                 const std::map<std::string, std::string>& target,
                                 const std::string& runbook_base);

// The exec hook's stdin for one transition.
nlohmann::json exec_body(const AlertNotice& notice, const std::string& host);

// A worker that delivers queued payloads in order, retrying a failed one with doubling backoff
// up to kDeliveryAttempts times before dropping it and moving on to the next.
class DeliveryQueue {
 public:
  struct Figures {
    std::uint64_t delivered = 0;
    std::uint64_t failed_attempts = 0;
    std::uint64_t dropped = 0;
  };
  virtual ~DeliveryQueue();
  void submit(std::string payload);
  Figures figures() const;
  std::string last_error() const;

 protected:
  DeliveryQueue() = default;
  // Starts the worker; call from the derived constructor once it can deliver.
  void start();
  // Stops and joins the worker; call from the derived destructor. A delivery in progress
  // notices stopping() and gives up, so this never waits for a network or hook timeout (it runs
  // on the event loop when a reload replaces a sink, and at shutdown).
  void stop();
  bool stopping() const { return abort_.load(); }
  // The outcome of one attempt: `error` empty on success; `retry` false when another attempt
  // would not help or could do harm (a hook killed at its timeout may have done its work).
  struct Attempt {
    std::string error;
    bool retry = true;
  };
  // Delivers one payload. Runs on the worker thread; returns early once stopping() is true.
  virtual Attempt deliver(const std::string& payload) = 0;

 private:
  void run();
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::string> queue_;
  bool stopping_ = false;           // guarded by mutex_, for the worker's waits
  std::atomic<bool> abort_{false};  // read by deliver() without the lock
  Figures figures_;
  std::string last_error_;
  std::thread worker_;
};

class AlertmanagerSink : public DeliveryQueue {
 public:
  AlertmanagerSink(std::string base_url, std::chrono::milliseconds timeout);
  ~AlertmanagerSink() override;
  const std::string& url() const { return url_; }

 private:
  Attempt deliver(const std::string& payload) override;
  std::string url_;  // .../api/v2/alerts
  std::chrono::milliseconds timeout_;
};

// The hook runs with a minimal environment (kExecEnvironment), never memtided's own: that holds
// NOTIFY_SOCKET and WATCHDOG_* (a hook could speak for memtided to systemd) and whatever else
// the unit was given.
inline constexpr const char* kExecEnvironment[] = {
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
    "MEMTIDE_HOOK=1"};

class ExecSink : public DeliveryQueue {
 public:
  ExecSink(std::string command, std::chrono::milliseconds timeout);
  ~ExecSink() override;
  const std::string& command() const { return command_; }

 private:
  Attempt deliver(const std::string& payload) override;
  std::string command_;
  std::chrono::milliseconds timeout_;
};

}  // namespace memtide::daemon
