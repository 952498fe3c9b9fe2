// One memtided per hypervisor: each daemon claims its libvirt URI by binding an abstract Unix
// socket named after it and the daemon's uid ("\0memtide/hypervisor/<FNV-1a of URI and uid>",
// no file, gone with the process), and a second daemon for the same URI finds the name taken. The
// claim is tried again every tick, so the second one takes over when the first stops.
//
// Abstract socket names carry no permissions, so a taken name alone proves nothing: another
// memtided counts only when the process scan also found one run by root or by this daemon's
// user (collectors::find_other_managers). URIs of libvirt's test driver are never claimed: each
// process has a test hypervisor of its own.
#pragma once

#include <string>
#include <vector>

#include <memtide/core/snapshot.hpp>

namespace memtide::daemon {

class HypervisorClaim {
 public:
  explicit HypervisorClaim(std::string uri);
  ~HypervisorClaim();
  HypervisorClaim(const HypervisorClaim&) = delete;
  HypervisorClaim& operator=(const HypervisorClaim&) = delete;

  // Claims the URI if it is free. True while this daemon holds it (or needs none).
  bool hold();

  // Keeps the memtided entries of `others` only while another daemon holds this URI: a memtided
  // seen while this one holds the claim manages another hypervisor (or none: --once, tests).
  // Returns whether the name is squatted: taken while no memtided runs, so some other process
  // holds it.
  bool judge(std::vector<OtherManager>& others);

 private:
  std::string uri_;
  bool needed_ = true;
  int fd_ = -1;
};

}  // namespace memtide::daemon
