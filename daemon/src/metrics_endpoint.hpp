// The /metrics endpoint as configured: a socket passed by systemd (socket activation) takes
// precedence and is kept for the process's lifetime; otherwise metrics.listen is served, moved
// when a reload changes it, and closed when it becomes "". Failing to serve is logged and the
// daemon carries on without metrics: balloons and alerts matter more.
//
// Pages are rendered on demand (see MetricsServer): the owner calls invalidate() when its
// figures change, and renders and publishes a page when render_requests() becomes readable (a
// scrape found the page stale), in its own thread.
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
  explicit MetricsEndpoint(Logger& log);
  ~MetricsEndpoint();
  MetricsEndpoint(const MetricsEndpoint&) = delete;
  MetricsEndpoint& operator=(const MetricsEndpoint&) = delete;

  // Serves `listen` ("" off) unless a socket from systemd is served; `render` gives the first
  // page of a new server.
  void serve(const std::string& listen, const Render& render);
  // Makes `page` what every later scrape gets (no-op while off).
  void publish(std::shared_ptr<const std::string> page);
  // The figures changed: the page is rendered again when a scrape asks for it.
  void invalidate();
  // An eventfd, readable while a scrape waits for a page: read it (clear_render_requests), then
  // publish().
  int render_requests() const { return render_requests_; }
  void clear_render_requests();
  // Where metrics are served ("127.0.0.1:9847"); "" while off.
  std::string description() const { return server_ ? server_->description() : ""; }

 private:
  bool serve_systemd_socket(const Render& render);
  // What the server calls when a scrape finds the page stale: signals render_requests_.
  std::function<void()> want_page() const;

  Logger& log_;
  int render_requests_ = -1;               // eventfd
  std::unique_ptr<MetricsServer> server_;  // null while off
  std::string listen_;                     // address served ("" while off)
  bool socket_activated_ = false;
};

}  // namespace memtide::daemon
