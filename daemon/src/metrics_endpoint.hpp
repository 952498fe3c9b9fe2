// The /metrics endpoint as configured: a socket passed by systemd (socket activation) takes
// precedence and is kept for the process's lifetime; otherwise metrics.listen is served, moved
// when a reload changes it, and closed when it becomes "". Failing to serve is logged and the
// daemon carries on without metrics: balloons and alerts matter more.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "http_server.hpp"
#include "log.hpp"

namespace memtide::daemon {

class MetricsEndpoint {
 public:
  using Render = std::function<std::shared_ptr<const std::string>()>;
  explicit MetricsEndpoint(Logger& log) : log_(log) {}

  // Serves `listen` ("" off) unless a socket from systemd is served; `render` gives the first
  // page of a new server.
  void serve(const std::string& listen, const Render& render);
  // Makes `page` what every later scrape gets (no-op while off).
  void publish(std::shared_ptr<const std::string> page);
  // Where metrics are served ("127.0.0.1:9847"); "" while off.
  std::string description() const { return server_ ? server_->description() : ""; }

 private:
  bool serve_systemd_socket(const Render& render);

  Logger& log_;
  std::unique_ptr<MetricsServer> server_;  // null while off
  std::string listen_;                     // address served ("" while off)
  bool socket_activated_ = false;
};

}  // namespace memtide::daemon
