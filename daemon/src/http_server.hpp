// The HTTP endpoint for Prometheus: GET /metrics returns the page published last. It runs on a
// thread of its own (epoll), never in the event loop, and only hands out a page rendered
// beforehand, so a scrape never waits for a tick.
//
// Clients are untrusted, and a scrape must get through whatever others do:
// - a request must arrive whole (request line and headers, at most kMaxHttpRequestBytes) within
//   kRequestDeadline of the connection's start, however it trickles in; a response must be
//   taken within kResponseDeadline;
// - at most kMaxHttpConnections connections, and kMaxHttpPerAddress from one address;
// - when either limit is reached, a new connection takes the place of the oldest connection
//   still sending its request (from that address, or from any): clients that hold connections
//   open without finishing a request only ever push each other out, so a scrape, which sends its
//   request at once, is served. Connections already being answered are never pushed out.
// One request per connection (responses say "Connection: close").
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <memtide/core/result.hpp>

namespace memtide::daemon {

inline constexpr std::size_t kMaxHttpConnections = 512;
inline constexpr std::size_t kMaxHttpPerAddress = 64;
inline constexpr std::size_t kMaxHttpRequestBytes = std::size_t{16} * 1024;
inline constexpr std::chrono::seconds kRequestDeadline{5};
inline constexpr std::chrono::seconds kResponseDeadline{30};

// "127.0.0.1:9847", "[::1]:9847", "0.0.0.0:9847" or "[::]:9847" (port 0 picks a free port).
Result<int> listen_on(const std::string& address);

class MetricsServer {
 public:
  // Serves `first_page` on `listen_fd`, a bound and listening TCP socket (from listen_on(), or
  // passed by systemd socket activation); takes ownership of it. The page is in place before
  // the first connection is accepted (with socket activation one is already waiting).
  static Result<std::unique_ptr<MetricsServer>> start(
      int listen_fd, std::shared_ptr<const std::string> first_page);
  ~MetricsServer();  // stops the thread, closes every connection and the listening socket
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Makes `page` the body of every later GET /metrics. Thread-safe; cheap (no copy of the page).
  void publish(std::shared_ptr<const std::string> page);
  std::uint16_t port() const { return port_; }
  const std::string& description() const { return description_; }  // "127.0.0.1:9847"

 private:
  MetricsServer() = default;
  void run();
  std::shared_ptr<const std::string> page() const;

  int listen_fd_ = -1;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: stop
  mutable std::mutex mutex_;
  std::shared_ptr<const std::string> page_;  // guarded by mutex_
  std::uint16_t port_ = 0;
  std::string description_;
  std::thread thread_;
};

}  // namespace memtide::daemon
