// One memtided per hypervisor: each daemon claims each libvirt URI it manages (libvirt.uri, or
// every configured and discovered connection's) by binding an abstract Unix socket named after
// it and the daemon's uid ("\0memtide/hypervisor/<FNV-1a of URI and uid>",
// no file, gone with the process), and a second daemon for the same URI finds the name taken. The
// claim is tried again every tick, so the second one takes over when the first stops.
//
// Abstract socket names carry no permissions, so a taken name alone proves nothing: another
// memtided counts only when the process scan also found one run by root or by this daemon's
// user (collectors::find_other_managers). URIs of libvirt's test driver are never claimed: each
// process has a test hypervisor of its own.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <memtide/core/snapshot.hpp>

namespace memtide::daemon {

class HypervisorClaim {
 public:
  HypervisorClaim() = default;
  ~HypervisorClaim();
  HypervisorClaim(const HypervisorClaim&) = delete;
  HypervisorClaim& operator=(const HypervisorClaim&) = delete;

  // Claims each of `uris` not yet held, and lets go of the claims on URIs no longer listed (a
  // vanished connection). Returns the URIs another process holds, in the order given.
  std::vector<std::string> hold(const std::vector<std::string>& uris);

  // Keeps the memtided entries of `others` only while another daemon holds one of `uris`: a
  // memtided seen while this one holds them all manages other hypervisors (or none: --once,
  // tests). Returns the squatted URIs, ", "-joined: taken while no memtided runs, so some other
  // process holds them.
  std::string judge(std::vector<OtherManager>& others, const std::vector<std::string>& uris);

 private:
  std::map<std::string, int> held_;  // URI -> the bound socket that claims it
};

}  // namespace memtide::daemon
