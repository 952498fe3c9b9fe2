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

}  // namespace

HypervisorClaim::HypervisorClaim(std::string uri)
    : uri_(std::move(uri)), needed_(uri_.rfind("test:", 0) != 0) {
  // Session URIs (qemu:///session) name a different hypervisor for every user.
  uri_ += "\n" + std::to_string(::getuid());
}

HypervisorClaim::~HypervisorClaim() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

bool HypervisorClaim::hold() {
  if (!needed_ || fd_ >= 0) {
    return true;
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    return true;  // cannot tell; a daemon that cannot even make a socket claims nothing
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  char name[64];
  const int n = std::snprintf(name, sizeof name, "memtide/hypervisor/%016llx",
                              static_cast<unsigned long long>(fnv1a(uri_)));
  std::memcpy(addr.sun_path + 1, name, static_cast<std::size_t>(n));  // sun_path[0] = 0: abstract
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + n);
  // Bound, never listened on: nobody can connect, and the name is all that is needed.
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    ::close(fd);
    return false;
  }
  fd_ = fd;
  return true;
}

bool HypervisorClaim::judge(std::vector<OtherManager>& others) {
  const bool held = hold();
  const bool memtided_seen =
      std::any_of(others.begin(), others.end(), [](const auto& m) { return m.name == "memtided"; });
  if (held) {
    std::erase_if(others, [](const OtherManager& m) { return m.name == "memtided"; });
  }
  return !held && !memtided_seen;
}

}  // namespace memtide::daemon
