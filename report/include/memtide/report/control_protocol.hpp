// The control protocol between memtidectl and memtided: a Unix stream socket (mode 0600, so
// root only). One request per connection: a JSON object on one line ({"command": "status"}),
// answered by one JSON object on one line ({"ok": true, ...} or {"ok": false, "error": "..."}),
// then the connection is closed. The answers' contents are rendered by status.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstring>
#include <string>

#include <sys/socket.h>
#include <sys/un.h>

#include <memtide/core/result.hpp>

namespace memtide::report {

inline constexpr const char* kDefaultControlSocket = "/run/memtide/control.sock";
inline constexpr std::size_t kMaxRequestBytes = std::size_t{64} * 1024;
inline constexpr std::size_t kMaxClients = 16;
// The reply (and the client's error) when kMaxClients are already connected.
inline constexpr const char* kBusyMessage =
    "memtided is busy: it is serving its maximum of 16 control clients; try again";
// How long the server waits for a whole request line.
inline constexpr std::chrono::milliseconds kRequestTimeout{2000};

// The address of the socket at `path`; an error when the path does not fit a sockaddr_un.
inline Result<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path) {
    return Error{path, 0, 0, "a control socket path must have 1 to 107 characters"};
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace memtide::report
