// One Hypervisor over several libvirt daemons: the configured connections
// (libvirt.connections) and those found by their sockets (libvirt.discover). Each connection
// has a worker thread of its own (hypervisor_worker.hpp), its own reconnection and keepalive
// (LibvirtConnection) and its own time budget per call, so a hung or dead daemon never holds up
// the collection, the commands or the restore of the others' guests.
//
// Samples carry their connection's name (VmSample::connection); set_memory_size takes a VM's
// key ("connection/uuid"). A connection that fails a collection has no samples in the result and
// is down in connection_states() (the daemon keeps its guests' last good samples, as it keeps
// all VMs when the only connection is down); the collection as a whole fails only when every
// connection failed. Discovery reads the socket globs at most
// once a discover_interval, inside collect (on the caller's worker thread, never the tick's).
//
// Threads: collect and set_memory_size from one thread at a time, as for any Hypervisor;
// connection_states from any.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <memtide/collectors/hypervisor.hpp>
#include <memtide/collectors/hypervisor_worker.hpp>
#include <memtide/collectors/libvirt_hypervisor.hpp>
#include <memtide/config/config.hpp>

namespace memtide::collectors {

struct ConnectionSetOptions {
  LibvirtOptions base;  // every connection's settings; its uri is the connection's
  std::vector<config::LibvirtConnectionSpec> connections;
  std::vector<config::LibvirtDiscovery> discover;
  std::size_t max_connections = 64;  // configured and discovered together
  std::chrono::milliseconds discover_interval{10'000};
  // The longest a collection or a command waits for one connection; below the caller's own
  // timeout, so that the set answers with the others' figures before the caller gives up.
  std::chrono::milliseconds budget{4'000};
  // Makes a connection's hypervisor; LibvirtHypervisor unless a test says otherwise.
  std::function<std::unique_ptr<Hypervisor>(const LibvirtOptions&)> make;
};

class ConnectionSet final : public Hypervisor {
 public:
  explicit ConnectionSet(ConnectionSetOptions options);
  ~ConnectionSet() override;
  ConnectionSet(const ConnectionSet&) = delete;
  ConnectionSet& operator=(const ConnectionSet&) = delete;

  using Hypervisor::collect;
  Result<std::vector<VmSample>> collect(std::int64_t monotonic_ms,
                                        const ProcessReadHints& hints) override;
  Result<std::uint64_t> set_memory_size(const std::string& key, std::uint64_t target_bytes,
                                        std::uint64_t floor_bytes) override;
  std::vector<ConnectionState> connection_states() const override;

  // The connections' count, for tests of discovery.
  std::size_t size() const { return connections_.size(); }

 private:
  struct Connection;
  // Reads the socket globs: adds connections for new sockets (within max_connections), retires
  // those whose socket is gone, and lists the refused.
  void discover(std::int64_t monotonic_ms);
  // A connection to `uri`; a discovered one's `socket`, whose URI the daemon is reached by is
  // `uri_template` with {socket} (see Connection::directory_fd).
  Connection& add(std::string name, std::string uri, std::string socket,
                  const std::string& uri_template);
  void publish_states();

  ConnectionSetOptions options_;
  std::vector<std::unique_ptr<Connection>> connections_;  // configured first, then discovered
  std::int64_t next_discovery_ms_ = INT64_MIN;
  std::vector<ConnectionState> refused_;  // sockets matched but not used, at the last discovery

  mutable std::mutex states_mutex_;
  std::vector<ConnectionState> states_;  // published copy for connection_states()
};

// Puts into `snapshot` the guests in `last` (the previous snapshot's, in its order) of each
// connection the snapshot lists down: their last good figures stand until it answers again.
// `last` is left with what was not taken.
void keep_guests_of_down_connections(Snapshot& snapshot, std::vector<VmSample>& last);

// The connection name for a socket `path` matched by discovery `d`: d.name, '-', and what the
// glob's wildcard components matched, joined by '-' (characters outside [A-Za-z0-9._-] become
// '_'); a name longer than 64 characters ends in a hash of the path instead.
std::string discovered_name(const config::LibvirtDiscovery& d, const std::string& path);

}  // namespace memtide::collectors
