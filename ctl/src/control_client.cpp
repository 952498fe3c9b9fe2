#include "control_client.hpp"

#include <cerrno>
#include <iostream>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <memtide/report/control_protocol.hpp>
#include <memtide/report/json_text.hpp>

namespace memtide::ctl {

Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& request,
                                       std::chrono::milliseconds timeout) {
  auto addr = report::unix_address(path);
  if (!addr) {
    return addr.error();
  }
  const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return Error{path, 0, errno, "cannot create a socket"};
  }
  if (connect(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof *addr) != 0) {
    const int err = errno;
    close(fd);
    return Error{path, 0, err, "cannot reach memtided (is it running?)"};
  }
  const std::string line = report::dump_json(request) + "\n";
  std::string reply;
  if (send(fd, line.data(), line.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(line.size())) {
    // A daemon serving its maximum of clients answers "busy" and closes before reading: the
    // reply is still there to read.
    const int err = errno;
    char buf[512];
    const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    close(fd);
    if (n > 0 && std::string_view(buf, static_cast<std::size_t>(n)).find(report::kBusyMessage) !=
                     std::string_view::npos) {
      return Error{path, 0, 0, report::kBusyMessage};
    }
    return Error{path, 0, err, "cannot send the request"};
  }
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    const int ready = poll(&p, 1, static_cast<int>(timeout.count()));
    if (ready <= 0) {
      close(fd);
      return Error{path, 0, 0, "no reply from memtided within the timeout"};
    }
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) {
      break;
    }
    if (reply.size() + static_cast<std::size_t>(n) > kMaxReplyBytes) {
      close(fd);
      return Error{
          path, 0, 0,
          "memtided's reply is larger than " + std::to_string(kMaxReplyBytes >> 20) + " MiB"};
    }
    reply.append(buf, static_cast<std::size_t>(n));
  }
  close(fd);
  auto j = nlohmann::json::parse(reply, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Error{path, 0, 0, "memtided sent a reply that is not JSON"};
  }
  if (j.value("error", "") == report::kBusyMessage) {
    return Error{path, 0, 0, report::kBusyMessage};
  }
  return j;
}

std::optional<nlohmann::json> ask_daemon(const std::string& path, const nlohmann::json& request) {
  auto reply = control_request(path, request, std::chrono::seconds(10));
  if (!reply) {
    std::cerr << "memtidectl: " << reply.error().to_string() << '\n';
    return std::nullopt;
  }
  if (!reply->value("ok", false)) {
    std::cerr << "memtidectl: " << reply->value("error", std::string("request refused")) << '\n';
    return std::nullopt;
  }
  return std::move(*reply);
}

}  // namespace memtide::ctl
