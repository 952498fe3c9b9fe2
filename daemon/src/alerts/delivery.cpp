#include "alerts/delivery.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <vector>

#include <curl/curl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/report/snapshot_json.hpp>

namespace memtide::daemon {

namespace {

std::string rfc3339(std::int64_t unix_ms) {
  return report::format_utc(unix_ms);  // "2026-11-28T04:07:32.521Z" is RFC 3339
}

nlohmann::json notice_labels(const AlertNotice& n,
                             const std::map<std::string, std::string>& target) {
  nlohmann::json labels = target;
  labels["alertname"] = policy::alertname(n.alert.name);
  labels["severity"] = policy::to_string(n.alert.severity);
  if (!n.alert.subject.empty()) {
    labels["domain"] = n.alert.subject;
  }
  return labels;
}

}  // namespace

std::string runbook_url(const std::string& runbook_base, const std::string& alert) {
  std::string anchor = policy::alertname(alert);
  std::transform(anchor.begin(), anchor.end(), anchor.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return runbook_base + "#" + anchor;
}

std::map<std::string, std::string> alert_target_labels(
    const std::string& hostname, const std::string& metrics_listen,
    const std::map<std::string, std::string>& configured) {
  std::map<std::string, std::string> labels = {{"instance", hostname}, {"job", "memtide"}};
  // metrics.listen is HOST:PORT with IPv6 hosts in brackets, so the port follows the last ':'.
  if (const auto colon = metrics_listen.rfind(':'); colon != std::string::npos) {
    labels["instance"] = hostname + metrics_listen.substr(colon);
  }
  for (const auto& [name, value] : configured) {
    labels[name] = value;
  }
  return labels;
}

nlohmann::json alertmanager_body(const std::vector<AlertNotice>& alerts,
                                 const std::map<std::string, std::string>& target,
                                 const std::string& runbook_base) {
  nlohmann::json body = nlohmann::json::array();
  for (const auto& n : alerts) {
    body.push_back(
        {{"labels", notice_labels(n, target)},
         {"annotations",
          {{"summary", n.alert.summary}, {"runbook_url", runbook_url(runbook_base, n.alert.name)}}},
         {"startsAt", rfc3339(n.starts_unix_ms)},
         {"endsAt", rfc3339(n.ends_unix_ms)}});
  }
  return body;
}

nlohmann::json exec_body(const AlertNotice& n, const std::string& host) {
  return {{"status", n.resolved ? "resolved" : "firing"},
          {"alert", n.alert.name},
          {"domain", n.alert.subject},
          {"severity", policy::to_string(n.alert.severity)},
          {"summary", n.alert.summary},
          {"host", host},
          {"starts_at", rfc3339(n.starts_unix_ms)},
          {"ends_at", n.resolved ? nlohmann::json(rfc3339(n.ends_unix_ms)) : nlohmann::json()}};
}

// --- DeliveryQueue

DeliveryQueue::~DeliveryQueue() = default;

void DeliveryQueue::start() {
  worker_ = std::thread([this] { run(); });
}

void DeliveryQueue::stop() {
  abort_ = true;
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (worker_.joinable()) {
    worker_.join();
  }
}

void DeliveryQueue::submit(std::string payload) {
  {
    std::lock_guard lock(mutex_);
    if (queue_.size() >= kAlertQueueLength) {
      queue_.pop_front();
      ++figures_.dropped;
    }
    queue_.push_back(std::move(payload));
  }
  wake_.notify_all();
}

DeliveryQueue::Figures DeliveryQueue::figures() const {
  std::lock_guard lock(mutex_);
  return figures_;
}

std::string DeliveryQueue::last_error() const {
  std::lock_guard lock(mutex_);
  return last_error_;
}

void DeliveryQueue::run() {
  pthread_setname_np(pthread_self(), "alert-delivery");
  std::chrono::seconds backoff{1};
  int attempts = 0;
  std::unique_lock lock(mutex_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
    if (stopping_) {
      return;
    }
    const std::string payload = queue_.front();
    lock.unlock();
    const Attempt attempt = deliver(payload);
    const std::string& error = attempt.error;
    lock.lock();
    if (error.empty()) {
      // The entry may have been dropped meanwhile; remove it only if still first.
      if (!queue_.empty() && queue_.front() == payload) {
        queue_.pop_front();
      }
      ++figures_.delivered;
      last_error_.clear();
      attempts = 0;
      backoff = std::chrono::seconds{1};
      continue;
    }
    ++figures_.failed_attempts;
    last_error_ = error;
    if (++attempts >= kDeliveryAttempts || !attempt.retry) {
      // Give up on this one so that later alerts are not stuck behind it.
      if (!queue_.empty() && queue_.front() == payload) {
        queue_.pop_front();
      }
      ++figures_.dropped;
      attempts = 0;
      backoff = std::chrono::seconds{1};
      continue;
    }
    wake_.wait_for(lock, backoff, [this] { return stopping_; });
    backoff = std::min(backoff * 2, std::chrono::seconds{60});
  }
}

// --- Alertmanager

AlertmanagerSink::AlertmanagerSink(std::string base_url, std::chrono::milliseconds timeout)
    : url_(std::move(base_url) + "/api/v2/alerts"), timeout_(timeout) {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  start();
}

AlertmanagerSink::~AlertmanagerSink() {
  stop();
}

DeliveryQueue::Attempt AlertmanagerSink::deliver(const std::string& payload) {
  CURL* curl = curl_easy_init();
  if (curl == nullptr) {
    return {"cannot create an HTTP client"};
  }
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(curl, CURLOPT_URL, url_.c_str());
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, payload.c_str());
  curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(payload.size()));
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout_.count()));
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
  // Checked about once a second and on every transfer step: abort when the sink stops.
  curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
  curl_easy_setopt(
      curl, CURLOPT_XFERINFOFUNCTION,
      +[](void* self, curl_off_t, curl_off_t, curl_off_t, curl_off_t) -> int {
        return static_cast<AlertmanagerSink*>(self)->stopping() ? 1 : 0;
      });
  // The response body (usually empty) is not needed.
  curl_easy_setopt(
      curl, CURLOPT_WRITEFUNCTION,
      +[](char*, std::size_t size, std::size_t n, void*) { return size * n; });
  const CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_slist_free_all(headers);
  curl_easy_cleanup(curl);
  if (rc != CURLE_OK) {
    return {url_ + ": " + curl_easy_strerror(rc)};
  }
  if (status < 200 || status >= 300) {
    return {url_ + ": HTTP " + std::to_string(status)};
  }
  return {};
}

// --- exec hook

ExecSink::ExecSink(std::string command, std::chrono::milliseconds timeout)
    : command_(std::move(command)), timeout_(timeout) {
  start();
}

ExecSink::~ExecSink() {
  stop();
}

DeliveryQueue::Attempt ExecSink::deliver(const std::string& payload) {
  // stdin is a socket rather than a pipe so that it can be written with MSG_NOSIGNAL: a hook
  // that exits without reading must not SIGPIPE memtided.
  int in[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, in) != 0) {
    return {std::string("socketpair: ") + std::strerror(errno)};
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], STDIN_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // memtided blocks the signals its loop handles; the hook must start with none blocked.
  sigset_t none;
  sigemptyset(&none);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP);
  posix_spawnattr_setpgroup(&attr, 0);
  char* argv[] = {const_cast<char*>(command_.c_str()), nullptr};
  pid_t pid = 0;
  std::vector<char*> env;
  for (const char* e : kExecEnvironment) {
    env.push_back(const_cast<char*>(e));
  }
  env.push_back(nullptr);
  const int spawned = posix_spawn(&pid, command_.c_str(), &actions, &attr, argv, env.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  close(in[0]);
  if (spawned != 0) {
    close(in[1]);
    return {command_ + ": " + std::strerror(spawned)};
  }
  // Payloads are small (well under the socket buffer); a hook that does not read stdin must not
  // block us either way.
  const ssize_t written = send(in[1], payload.data(), payload.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
  close(in[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  int status = 0;
  for (;;) {
    const pid_t r = waitpid(pid, &status, WNOHANG);
    if (r == pid) {
      break;
    }
    if (stopping()) {
      kill(-pid, SIGKILL);
      waitpid(pid, &status, 0);
      return {command_ + ": killed, memtided is stopping the hook", false};
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(-pid, SIGKILL);  // its whole process group
      waitpid(pid, &status, 0);
      // Not retried: a hook that hangs would hang again, and one that was slow may have done
      // its work (paged someone) before it was killed.
      return {command_ + ": killed after " + std::to_string(timeout_.count()) + " ms; not retried",
              false};
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Its exit status says most; a hook that ended well but did not take its input failed too.
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return {command_ + ": exited with status " +
            std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status))};
  }
  if (written != static_cast<ssize_t>(payload.size())) {
    return {command_ + ": did not take the alert on stdin"};
  }
  return {};
}

}  // namespace memtide::daemon
