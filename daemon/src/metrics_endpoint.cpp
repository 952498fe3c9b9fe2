#include "metrics_endpoint.hpp"

#include <sys/eventfd.h>
#include <sys/socket.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

namespace memtide::daemon {

MetricsEndpoint::MetricsEndpoint(Logger& log)
    : log_(log), render_requests_(eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

MetricsEndpoint::~MetricsEndpoint() {
  server_.reset();  // its thread may signal render_requests_ until it stops
  if (render_requests_ >= 0) {
    close(render_requests_);
  }
}

void MetricsEndpoint::clear_render_requests() {
  std::uint64_t count = 0;
  (void)!read(render_requests_, &count, sizeof count);
}

void MetricsEndpoint::invalidate() {
  if (server_) {
    server_->invalidate();
  }
}

std::function<void()> MetricsEndpoint::want_page() const {
  return [fd = render_requests_] {
    const std::uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
  };
}

bool MetricsEndpoint::serve_systemd_socket(const Render& render) {
  if (server_ || !listen_.empty() || sd_listen_fds(1) < 1 ||
      sd_is_socket_inet(SD_LISTEN_FDS_START, 0, SOCK_STREAM, 1, 0) <= 0) {
    return false;
  }
  auto server = MetricsServer::start(SD_LISTEN_FDS_START, render(), want_page());
  if (!server) {
    log_.error("cannot serve metrics on the socket from systemd: " + server.error().to_string(),
               {{"MEMTIDE_EVENT", "metrics-unavailable"}});
    return false;
  }
  server_ = std::move(*server);
  socket_activated_ = true;
  log_.notice("serving metrics on " + server_->description() + " (socket from systemd)",
              {{"MEMTIDE_EVENT", "metrics-listening"}});
  return true;
}

void MetricsEndpoint::serve(const std::string& want, const Render& render) {
  if (socket_activated_ || serve_systemd_socket(render)) {
    return;
  }
  if (want == listen_ && (server_ || want.empty())) {
    return;
  }
  server_.reset();  // frees the old address before binding the new one
  listen_.clear();
  if (want.empty()) {
    return;
  }
  auto fd = listen_on(want);
  auto server = fd ? MetricsServer::start(*fd, render(), want_page())
                   : Result<std::unique_ptr<MetricsServer>>(fd.error());
  if (!server) {
    log_.error("cannot serve metrics on " + want + ": " + server.error().to_string(),
               {{"MEMTIDE_EVENT", "metrics-unavailable"}});
    return;
  }
  server_ = std::move(*server);
  listen_ = want;
  log_.notice("serving metrics on " + server_->description(),
              {{"MEMTIDE_EVENT", "metrics-listening"}});
}

void MetricsEndpoint::publish(std::shared_ptr<const std::string> page) {
  if (server_) {
    server_->publish(std::move(page));
  }
}

}  // namespace memtide::daemon
