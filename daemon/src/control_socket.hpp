// The control socket's server (the protocol is in report/control_protocol.hpp). Served from the
// event loop without blocking it: sockets are non-blocking, a request must arrive within
// kRequestTimeout and fit in kMaxRequestBytes, and at most kMaxClients are served at once (more
// are answered "busy" and closed at once).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>
#include <sys/types.h>

#include <memtide/core/result.hpp>
#include <memtide/report/control_protocol.hpp>

struct sd_event;
struct sd_event_source;

namespace memtide::daemon {

class ControlServer {
 public:
  // Answers a well-formed request (a JSON object); runs on the loop thread.
  using Handler = std::function<nlohmann::json(const nlohmann::json& request)>;

  // Binds `path` (a stale socket file left by a crashed daemon is replaced; a live one, or
  // anything that is not a socket, is an error) and serves it on `event`.
  static Result<std::unique_ptr<ControlServer>> start(sd_event* event, std::string path,
                                                      Handler handler);
  ~ControlServer();  // closes every connection and removes the socket file it bound
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  const std::string& path() const { return path_; }

  // The reply to one request line (without its newline): an error reply for text that is not a
  // JSON object with a "command" string (or nests deeper than a request can), else `handler`'s
  // answer; an exception from it becomes an "internal error" reply. Never throws for content.
  static nlohmann::json reply_to(std::string_view line, const Handler& handler);

 private:
  struct Client {
    ControlServer* server = nullptr;
    int fd = -1;
    sd_event_source* io = nullptr;
    sd_event_source* timeout = nullptr;
    std::string in;
    std::string out;
    std::size_t sent = 0;
  };
  ControlServer() = default;
  static int on_accept(sd_event_source* source, int fd, std::uint32_t revents, void* self);
  static int on_client(sd_event_source* source, int fd, std::uint32_t revents, void* self);
  static int on_timeout(sd_event_source* source, std::uint64_t usec, void* self);
  void answer(Client& client);
  void drop(int fd);

  sd_event* event_ = nullptr;
  std::string path_;
  Handler handler_;
  int listen_fd_ = -1;
  dev_t device_ = 0;  // identity of the socket file bound, so only it is removed
  ino_t inode_ = 0;
  sd_event_source* accept_source_ = nullptr;
  std::map<int, std::unique_ptr<Client>> clients_;  // by fd
};

}  // namespace memtide::daemon
