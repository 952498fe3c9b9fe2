// The HTTP endpoint for Prometheus: GET /metrics returns the page published last. It runs in
// libmicrohttpd's own threads (two, with epoll), never in the event loop, and only hands out a
// page rendered beforehand, so slow, malformed or numerous clients cannot hold up a tick. Limits:
// at most kMaxConnections open connections, kIdleTimeoutSeconds of silence before a connection
// is dropped, and request headers bounded by libmicrohttpd's per-connection memory limit.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include <memtide/core/result.hpp>

struct MHD_Daemon;
struct MHD_Response;
struct MHD_Connection;

namespace memtide::daemon {

inline constexpr unsigned kMaxConnections = 512;
inline constexpr unsigned kIdleTimeoutSeconds = 10;

// "127.0.0.1:9847", "[::1]:9847", "0.0.0.0:9847" or "[::]:9847" (port 0 picks a free port).
Result<int> listen_on(const std::string& address);

class MetricsServer {
 public:
  // Serves `first_page` on `listen_fd`, a bound and listening TCP socket (from listen_on(), or
  // passed by systemd socket activation); takes ownership of it. The page is in place before
  // the first connection is accepted (with socket activation one is already waiting).
  static Result<std::unique_ptr<MetricsServer>> start(
      int listen_fd, std::shared_ptr<const std::string> first_page);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Makes `page` the body of every later GET /metrics. Thread-safe; cheap (no copy of the page).
  void publish(std::shared_ptr<const std::string> page);
  std::uint16_t port() const { return port_; }
  const std::string& description() const { return description_; }  // "127.0.0.1:9847"

 private:
  MetricsServer() = default;
  friend struct MetricsServerAccess;  // the libmicrohttpd request handler

  MHD_Daemon* mhd_ = nullptr;
  std::mutex mutex_;
  MHD_Response* metrics_ = nullptr;  // guarded by mutex_
  MHD_Response* index_ = nullptr;
  MHD_Response* not_found_ = nullptr;
  MHD_Response* bad_method_ = nullptr;
  std::uint16_t port_ = 0;
  std::string description_;
};

}  // namespace memtide::daemon
