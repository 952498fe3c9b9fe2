#include "control_socket.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-event.h>
#include <unistd.h>

#include <memtide/report/json_text.hpp>

namespace memtide::daemon {

namespace {

nlohmann::json error_reply(const std::string& message) {
  return {{"ok", false}, {"error", message}};
}

}  // namespace

Result<std::unique_ptr<ControlServer>> ControlServer::start(sd_event* event, std::string path,
                                                            Handler handler) {
  auto addr = report::unix_address(path);
  if (!addr) {
    return addr.error();
  }
  // Only a socket is ever replaced: a path pointing at a regular file (a typo, or a hostile
  // configuration) must not delete it.
  struct stat existing {};
  if (lstat(path.c_str(), &existing) == 0 && !S_ISSOCK(existing.st_mode)) {
    return Error{path, 0, EEXIST, "exists and is not a socket; not replaced"};
  }
  // A socket file nobody answers on is left from a daemon that died: replace it. One that
  // answers belongs to a running memtided, which must not be cut off.
  const int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe >= 0) {
    const bool live = connect(probe, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) == 0;
    close(probe);
    if (live) {
      return Error{path, 0, EADDRINUSE, "another memtided answers on this control socket"};
    }
  }
  unlink(path.c_str());
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return Error{path, 0, errno, "cannot create the control socket"};
  }
  // Mode 0600 from the start: no window in which others could connect.
  const mode_t old_mask = umask(0177);
  const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr);
  const int bind_errno = errno;
  umask(old_mask);
  if (bound != 0 || listen(fd, 16) != 0) {
    const int err = bound != 0 ? bind_errno : errno;
    close(fd);
    return Error{path, 0, err, "cannot listen on the control socket"};
  }
  struct stat bound_file {};
  if (lstat(path.c_str(), &bound_file) != 0) {
    const int err = errno;
    close(fd);
    return Error{path, 0, err, "cannot stat the control socket"};
  }
  std::unique_ptr<ControlServer> server(new ControlServer());
  server->device_ = bound_file.st_dev;
  server->inode_ = bound_file.st_ino;
  server->event_ = event;
  server->path_ = std::move(path);
  server->handler_ = std::move(handler);
  server->listen_fd_ = fd;
  const int r = sd_event_add_io(event, &server->accept_source_, fd, EPOLLIN,
                                &ControlServer::on_accept, server.get());
  if (r < 0) {
    return Error{server->path_, 0, -r, "cannot watch the control socket"};
  }
  return server;
}

ControlServer::~ControlServer() {
  while (!clients_.empty()) {
    drop(clients_.begin()->first);
  }
  sd_event_source_unref(accept_source_);
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    // Only the socket this server bound: another daemon may have replaced it since.
    struct stat st {};
    if (lstat(path_.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && st.st_dev == device_ &&
        st.st_ino == inode_) {
      unlink(path_.c_str());
    }
  }
}

int ControlServer::on_accept(sd_event_source*, int fd, std::uint32_t, void* self) {
  auto* server = static_cast<ControlServer*>(self);
  for (;;) {
    const int c = accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0) {
      return 0;  // EAGAIN: all accepted; anything else: try again on the next wake-up
    }
    if (server->clients_.size() >= report::kMaxClients) {
      // Say why before closing, so the client reports a busy daemon rather than a broken pipe.
      // The reply fits the fresh socket's buffer; if not, the client still sees the close.
      const std::string busy = report::dump_json(error_reply(report::kBusyMessage)) + "\n";
      (void)send(c, busy.data(), busy.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      // A request left unread would turn the close into ECONNRESET for the client, which could
      // then lose the reply; take what has arrived (bounded: this runs on the loop).
      char sink[4096];
      for (int i = 0; i < 16 && recv(c, sink, sizeof sink, MSG_DONTWAIT) > 0; ++i) {
      }
      close(c);
      continue;
    }
    auto client = std::make_unique<Client>();
    client->server = server;
    client->fd = c;
    Client* raw = client.get();
    server->clients_[c] = std::move(client);
    std::uint64_t now = 0;
    sd_event_now(server->event_, CLOCK_MONOTONIC, &now);
    if (sd_event_add_io(server->event_, &raw->io, c, EPOLLIN, &ControlServer::on_client, raw) < 0 ||
        sd_event_add_time(server->event_, &raw->timeout, CLOCK_MONOTONIC,
                          now + static_cast<std::uint64_t>(report::kRequestTimeout.count()) * 1000,
                          0, &ControlServer::on_timeout, raw) < 0) {
      server->drop(c);
    }
  }
}

int ControlServer::on_timeout(sd_event_source*, std::uint64_t, void* self) {
  auto* client = static_cast<Client*>(self);
  client->server->drop(client->fd);
  return 0;
}

int ControlServer::on_client(sd_event_source*, int fd, std::uint32_t revents, void* self) {
  auto* client = static_cast<Client*>(self);
  ControlServer* server = client->server;
  if ((revents & EPOLLIN) != 0 && client->out.empty()) {
    char buf[4096];
    for (;;) {
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n > 0) {
        client->in.append(buf, static_cast<std::size_t>(n));
        if (client->in.size() > report::kMaxRequestBytes) {
          client->out = report::dump_json(error_reply("request larger than 64 KiB")) + "\n";
          break;
        }
        if (client->in.find('\n') != std::string::npos) {
          server->answer(*client);
          break;
        }
        continue;
      }
      if (n == 0) {  // closed before a full line: answer what came, if anything
        if (client->in.empty()) {
          server->drop(fd);
          return 0;
        }
        server->answer(*client);
      }
      break;  // EAGAIN or error
    }
    if (!client->out.empty()) {
      sd_event_source_set_io_events(client->io, EPOLLOUT);
    }
    return 0;
  }
  if ((revents & (EPOLLOUT | EPOLLERR | EPOLLHUP)) != 0 && !client->out.empty()) {
    while (client->sent < client->out.size()) {
      const ssize_t n = send(fd, client->out.data() + client->sent,
                             client->out.size() - client->sent, MSG_NOSIGNAL);
      if (n <= 0) {
        if (n < 0 && errno == EAGAIN) {
          return 0;  // more when the socket drains
        }
        break;
      }
      client->sent += static_cast<std::size_t>(n);
    }
    server->drop(fd);
  }
  return 0;
}

nlohmann::json ControlServer::reply_to(std::string_view line, const Handler& handler) {
  constexpr std::size_t kMaxNesting = 16;  // requests are flat objects
  auto request = report::json_nesting_exceeds(line, kMaxNesting)
                     ? nlohmann::json(nlohmann::json::value_t::discarded)
                     : nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (request.is_discarded()) {
    return error_reply("the request is not valid JSON");
  }
  if (!request.is_object() || !request.contains("command") || !request["command"].is_string()) {
    return error_reply("a request is an object with a \"command\" string");
  }
  try {
    return handler(request);
  } catch (const std::exception& e) {
    return error_reply(std::string("internal error: ") + e.what());
  }
}

void ControlServer::answer(Client& client) {
  const nlohmann::json reply =
      reply_to(std::string_view(client.in).substr(0, client.in.find('\n')), handler_);
  // The reply may hold VM names in any encoding: replace invalid UTF-8 rather than fail.
  client.out = report::dump_json(reply) + "\n";
  // A slow reader gets the same deadline again to take its reply.
  std::uint64_t now = 0;
  sd_event_now(event_, CLOCK_MONOTONIC, &now);
  sd_event_source_set_time(
      client.timeout, now + static_cast<std::uint64_t>(report::kRequestTimeout.count()) * 1000);
}

void ControlServer::drop(int fd) {
  const auto it = clients_.find(fd);
  if (it == clients_.end()) {
    return;
  }
  sd_event_source_disable_unref(it->second->io);
  sd_event_source_disable_unref(it->second->timeout);
  close(fd);
  clients_.erase(it);
}

}  // namespace memtide::daemon
