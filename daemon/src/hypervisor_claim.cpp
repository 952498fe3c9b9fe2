#include "hypervisor_claim.hpp"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

namespace memtide::daemon {

namespace {

// FNV-1a, 64 bits: a stable name for any URI length (sun_path holds 108 bytes), the same in every
// build of memtided.
std::uint64_t fnv1a(const std::string& text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const unsigned char c : text) {
    h = (h ^ c) * 0x100000001b3ULL;
  }
  return h;
}

// The socket bound to `uri`'s claim name, or -1 when another process holds the name. A
// daemon that cannot even make a socket claims nothing and reports no conflict (-2).
int claim(const std::string& uri) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return -2;
  }
  // Session URIs (qemu:///session) name a different hypervisor for every user.
  const std::string named = uri + "\n" + std::to_string(::getuid());
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  char name[64];
  const int n = std::snprintf(name, sizeof name, "memtide/hypervisor/%016llx",
                              static_cast<unsigned long long>(fnv1a(named)));
  std::memcpy(addr.sun_path + 1, name, static_cast<std::size_t>(n));  // sun_path[0] = 0: abstract
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  // Bound, never listened on: nobody can connect, and the name is all that is needed.
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

HypervisorClaim::~HypervisorClaim() {
  for (const auto& [uri, fd] : held_) {
    ::close(fd);
  }
}

std::vector<std::string> HypervisorClaim::hold(const std::vector<std::string>& uris) {
  for (auto it = held_.begin(); it != held_.end();) {
    if (std::find(uris.begin(), uris.end(), it->first) == uris.end()) {
      ::close(it->second);
      it = held_.erase(it);
    } else {
      ++it;
    }
  }
  std::vector<std::string> taken;
  for (const auto& uri : uris) {
    if (uri.rfind("test:", 0) == 0 || held_.contains(uri)) {
      continue;
    }
    const int fd = claim(uri);
    if (fd >= 0) {
      held_.emplace(uri, fd);
    } else if (fd == -1) {
      taken.push_back(uri);
    }
  }
  return taken;
}

std::string HypervisorClaim::judge(std::vector<OtherManager>& others,
                                   const std::vector<std::string>& uris) {
  const auto taken = hold(uris);
  const bool memtided_seen =
      std::any_of(others.begin(), others.end(), [](const auto& m) { return m.name == "memtided"; });
  if (taken.empty()) {
    std::erase_if(others, [](const OtherManager& m) { return m.name == "memtided"; });
    return "";
  }
  std::string squatted;
  if (!memtided_seen) {
    for (const auto& uri : taken) {
      squatted += (squatted.empty() ? "" : ", ") + uri;
    }
  }
  return squatted;
}

}  // namespace memtide::daemon
