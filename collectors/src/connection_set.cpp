#include <algorithm>
#include <set>
#include <thread>

#include <fcntl.h>
#include <glob.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memtide/collectors/connection_set.hpp>

namespace memtide::collectors {

namespace {

// At most this many glob matches are looked at per discovery pass, and this many refused
// sockets listed: a glob matching a huge tree costs bounded time and memory.
constexpr std::size_t kMaxMatches = 4096;
constexpr std::size_t kMaxRefused = 64;

bool has_wildcard(std::string_view component) {
  return component.find_first_of("*?[") != std::string_view::npos;
}

std::vector<std::string_view> components(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (start <= path.size()) {
    const auto end = std::min(path.find('/', start), path.size());
    if (end > start) {
      out.push_back(path.substr(start, end - start));
    }
    start = end + 1;
  }
  return out;
}

std::string with_socket(std::string uri, const std::string& socket) {
  const auto at = uri.find("{socket}");
  if (at != std::string::npos) {
    uri.replace(at, 8, socket);
  }
  return uri;
}

// Why the socket at `path` is not used, or "" when it may be.
std::string refusal(const std::string& path, const std::vector<std::uint32_t>& owners) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) {
    return "gone";
  }
  if (!S_ISSOCK(st.st_mode)) {
    return "not a socket";
  }
  if (st.st_uid != 0 && std::find(owners.begin(), owners.end(), st.st_uid) == owners.end()) {
    return "owned by user " + std::to_string(st.st_uid) +
           ", not root nor one of the discovery's owners";
  }
  return "";
}

std::vector<std::string> glob_paths(const std::string& pattern) {
  glob_t g{};
  std::vector<std::string> out;
  if (glob(pattern.c_str(), GLOB_NOSORT, nullptr, &g) == 0) {
    for (std::size_t i = 0; i < g.gl_pathc && out.size() < kMaxMatches; ++i) {
      out.emplace_back(g.gl_pathv[i]);
    }
  }
  globfree(&g);
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

struct ConnectionSet::Connection {
  std::string name;
  std::string uri;     // as configured, or the discovery's with the socket's path
  std::string socket;  // discovered: the socket's path; configured: ""
  // Discovered: the socket's directory, held open (O_PATH) for the connection's life. libvirt
  // connects through /proc/self/fd/N/NAME: a kubelet's pod paths are longer than a Unix socket
  // address holds (108 bytes), and the directory memtided vetted is the one it connects in.
  int directory_fd = -1;
  std::unique_ptr<HypervisorWorker> worker;
  ConnectionState state;
};

std::string discovered_name(const config::LibvirtDiscovery& d, const std::string& path) {
  const auto pattern = components(d.socket);
  const auto parts = components(path);
  std::string matched;
  for (std::size_t i = 0; i < pattern.size() && i < parts.size(); ++i) {
    if (has_wildcard(pattern[i])) {
      matched += (matched.empty() ? "" : "-") + std::string(parts[i]);
    }
  }
  for (auto& c : matched) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                       c == '.' || c == '_' || c == '-';
    c = plain ? c : '_';
  }
  std::string name = d.name + "-" + (matched.empty() ? "0" : matched);
  if (name.size() > 64) {
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016zx", std::hash<std::string>{}(path));
    name = d.name.substr(0, 64 - 17) + "-" + hash;
  }
  return name;
}

namespace {

// The runs' samples in the snapshot's order, each moved once into a vector of the final size: at
// 1,000 VMs of 800 bytes, growing it or sorting the samples themselves cost more than the rest
// of the merge (scripts/bench, part 3).
std::vector<VmSample> in_snapshot_order(std::vector<std::vector<VmSample>> runs) {
  if (runs.size() == 1) {
    return std::move(runs.front());  // a run is in name order, and all of one connection
  }
  std::vector<VmSample*> order;
  for (auto& run : runs) {
    for (auto& vm : run) {
      order.push_back(&vm);
    }
  }
  std::sort(order.begin(), order.end(),
            [](const VmSample* a, const VmSample* b) { return VmSample::in_order(*a, *b); });
  std::vector<VmSample> vms;
  vms.reserve(order.size());
  for (auto* vm : order) {
    vms.push_back(std::move(*vm));
  }
  return vms;
}

}  // namespace

void keep_guests_of_down_connections(Snapshot& snapshot, std::vector<VmSample>& last) {
  std::set<std::string_view> down;
  for (const auto& c : snapshot.connections) {
    if (c.status == ConnectionState::Status::down) {
      down.insert(c.name);
    }
  }
  if (down.empty()) {
    return;
  }
  auto& vms = snapshot.vms;
  const auto fresh = static_cast<std::ptrdiff_t>(vms.size());
  for (auto& vm : last) {
    if (!vm.connection.empty() && down.count(vm.connection) != 0) {
      vms.push_back(std::move(vm));
    }
  }
  std::inplace_merge(vms.begin(), vms.begin() + fresh, vms.end(), VmSample::in_order);
}

ConnectionSet::ConnectionSet(ConnectionSetOptions options) : options_(std::move(options)) {
  if (!options_.make) {
    options_.make = [](const LibvirtOptions& o) { return std::make_unique<LibvirtHypervisor>(o); };
  }
  for (const auto& c : options_.connections) {
    add(c.name, c.uri, "", "");
  }
  publish_states();
}

ConnectionSet::~ConnectionSet() {
  for (auto& c : connections_) {
    c->worker.reset();
    if (c->directory_fd >= 0) {
      close(c->directory_fd);
    }
  }
}

ConnectionSet::Connection& ConnectionSet::add(std::string name, std::string uri, std::string socket,
                                              const std::string& uri_template) {
  auto c = std::make_unique<Connection>();
  c->name = std::move(name);
  c->uri = std::move(uri);
  c->socket = std::move(socket);
  auto o = options_.base;
  o.uri = c->uri;
  if (!c->socket.empty()) {
    const auto slash = c->socket.rfind('/');
    const std::string dir = slash == 0 ? "/" : c->socket.substr(0, slash);
    c->directory_fd = open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (c->directory_fd >= 0) {
      o.uri = with_socket(uri_template, "/proc/self/fd/" + std::to_string(c->directory_fd) +
                                            c->socket.substr(slash));
    }
  }
  c->worker = std::make_unique<HypervisorWorker>(options_.make(o));
  c->state.name = c->name;
  c->state.uri = c->uri;
  c->state.discovered = !c->socket.empty();
  c->state.error = "not connected yet";
  connections_.push_back(std::move(c));
  return *connections_.back();
}

void ConnectionSet::discover(std::int64_t monotonic_ms) {
  if (options_.discover.empty() || monotonic_ms < next_discovery_ms_) {
    return;
  }
  next_discovery_ms_ = monotonic_ms + options_.discover_interval.count();
  std::set<std::string> present;    // sockets in use after this pass
  std::set<std::string> connected;  // sockets with a connection before this pass
  for (const auto& c : connections_) {
    if (!c->socket.empty()) {
      connected.insert(c->socket);
    }
  }
  refused_.clear();
  auto refuse = [this](const std::string& name, const std::string& uri, std::string why) {
    if (refused_.size() < kMaxRefused) {
      ConnectionState r;
      r.name = name;
      r.uri = uri;
      r.discovered = true;
      r.status = ConnectionState::Status::refused;
      r.error = std::move(why);
      refused_.push_back(std::move(r));
    }
  };
  struct Fresh {
    std::string name, socket, uri, uri_template;
  };
  std::vector<Fresh> fresh;
  for (const auto& d : options_.discover) {
    for (const auto& path : glob_paths(d.socket)) {
      const auto name = discovered_name(d, path);
      if (auto why = refusal(path, d.owners); !why.empty()) {
        refuse(name, path, std::move(why));
        continue;
      }
      present.insert(path);
      if (connected.count(path) == 0) {
        fresh.push_back({name, path, with_socket(d.uri, path), d.uri});
      }
    }
  }
  // Connections whose socket is gone are closed, on a thread of their own: closing a
  // connection to a daemon that stopped answering waits for it.
  std::erase_if(connections_, [&present](std::unique_ptr<Connection>& c) {
    if (c->socket.empty() || present.count(c->socket) != 0) {
      return false;
    }
    std::thread([worker = std::move(c->worker), fd = c->directory_fd]() mutable {
      worker.reset();
      if (fd >= 0) {
        close(fd);
      }
    }).detach();
    return true;
  });
  for (auto& f : fresh) {
    const bool taken = std::any_of(connections_.begin(), connections_.end(),
                                   [&f](const auto& c) { return c->name == f.name; });
    if (taken) {
      refuse(f.name, f.socket, "its name is already a connection's");
    } else if (connections_.size() >= options_.max_connections) {
      refuse(f.name, f.socket,
             "libvirt.max_connections (" + std::to_string(options_.max_connections) + ") reached");
    } else {
      add(std::move(f.name), std::move(f.uri), std::move(f.socket), f.uri_template);
    }
  }
}

Result<std::vector<VmSample>> ConnectionSet::collect(std::int64_t monotonic_ms,
                                                     const ProcessReadHints& hints) {
  discover(monotonic_ms);
  // Every connection collects at once, on its own thread; each answers within the budget or
  // keeps its last good samples.
  std::vector<HypervisorWorker::Pending<std::vector<VmSample>>> pending;
  std::vector<std::vector<VmSample>> runs;  // each connection's samples, in name order
  pending.reserve(connections_.size());
  runs.reserve(connections_.size());
  for (auto& c : connections_) {
    pending.push_back(c->worker->start_collect(monotonic_ms, hints));
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.budget;
  std::string errors;
  bool any_up = false;
  for (std::size_t i = 0; i < connections_.size(); ++i) {
    auto& c = *connections_[i];
    auto got = HypervisorWorker::finish(pending[i], deadline);
    if (got) {
      for (auto& vm : *got) {
        vm.connection = c.name;
      }
      c.state.vms = got->size();
      runs.push_back(std::move(*got));
      c.state.status = ConnectionState::Status::up;
      c.state.error.clear();
      c.state.down_since_ms = -1;
      any_up = true;
    } else {
      if (c.state.status == ConnectionState::Status::up || c.state.down_since_ms < 0) {
        c.state.down_since_ms = monotonic_ms;
      }
      c.state.status = ConnectionState::Status::down;
      c.state.error = got.error().message;
      errors += (errors.empty() ? "" : "; ") + c.name + ": " + c.state.error;
    }
  }
  publish_states();
  if (!any_up) {
    return Error{"", 0, 0,
                 connections_.empty() ? "no libvirt connection configured or discovered" : errors};
  }
  return in_snapshot_order(std::move(runs));
}

Result<std::uint64_t> ConnectionSet::set_memory_size(const std::string& key,
                                                     std::uint64_t target_bytes,
                                                     std::uint64_t floor_bytes) {
  const auto slash = key.find('/');
  if (slash == std::string::npos) {
    return Error{"", 0, 0, "'" + key + "' names no connection"};
  }
  const std::string_view name(key.data(), slash);
  const auto it = std::find_if(connections_.begin(), connections_.end(),
                               [&name](const auto& c) { return c->name == name; });
  if (it == connections_.end()) {
    return Error{"", 0, 0, "connection " + std::string(name) + " is gone"};
  }
  return (*it)->worker->set_memory_size(key.substr(slash + 1), target_bytes, floor_bytes,
                                        options_.budget);
}

void ConnectionSet::publish_states() {
  std::vector<ConnectionState> states;
  states.reserve(connections_.size() + refused_.size());
  for (const auto& c : connections_) {
    states.push_back(c->state);
  }
  states.insert(states.end(), refused_.begin(), refused_.end());
  std::sort(states.begin(), states.end(),
            [](const ConnectionState& a, const ConnectionState& b) { return a.name < b.name; });
  std::lock_guard lock(states_mutex_);
  states_ = std::move(states);
}

std::vector<ConnectionState> ConnectionSet::connection_states() const {
  std::lock_guard lock(states_mutex_);
  return states_;
}

}  // namespace memtide::collectors
