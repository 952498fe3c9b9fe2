// One memtided per hypervisor: the claims on libvirt URIs, within one process (a claim is per
// socket, so two in one process behave as two daemons would).
#include "hypervisor_claim.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

namespace memtide::daemon {
namespace {

using Uris = std::vector<std::string>;

// A URI no other test or daemon uses.
std::string private_uri(const char* what) {
  return std::string("qemu+ssh://claim-test-") + what + "-" + std::to_string(getpid()) + "/system";
}

TEST(HypervisorClaim, ASecondClaimOnTheSameUriWaitsForTheFirst) {
  const std::string uri = private_uri("same");
  auto first = std::make_unique<HypervisorClaim>();
  HypervisorClaim second;
  HypervisorClaim other;
  EXPECT_EQ(first->hold({uri}), Uris{});
  EXPECT_EQ(first->hold({uri}), Uris{});  // held, not claimed again
  EXPECT_EQ(second.hold({uri}), Uris{uri});
  EXPECT_EQ(other.hold({private_uri("other")}), Uris{});
  first.reset();  // the first daemon stops
  EXPECT_EQ(second.hold({uri}), Uris{});
}

TEST(HypervisorClaim, TestDriverUrisAreNeverClaimed) {
  HypervisorClaim a;
  HypervisorClaim b;
  EXPECT_EQ(a.hold({"test:///default"}), Uris{});
  EXPECT_EQ(b.hold({"test:///default"}), Uris{});
}

// With several libvirt connections each URI is claimed for itself: a second daemon finds the
// ones the first holds taken and only those, and gets a URI once the first's connection to it
// has gone (a discovered socket vanished).
TEST(HypervisorClaim, EachConnectionsUriIsClaimedAndLetGoWhenItGoes) {
  const std::string a = private_uri("conn-a");
  const std::string b = private_uri("conn-b");
  const std::string c = private_uri("conn-c");
  HypervisorClaim first;
  HypervisorClaim second;
  EXPECT_EQ(first.hold({a, b}), Uris{});
  EXPECT_EQ(second.hold({c, b, a}), (Uris{b, a}));
  EXPECT_EQ(first.hold({a}), Uris{});  // b's connection is gone
  EXPECT_EQ(second.hold({c, b, a}), Uris{a});
  EXPECT_EQ(first.hold({}), Uris{});
  EXPECT_EQ(second.hold({c, b, a}), Uris{});
}

TEST(HypervisorClaim, AnotherMemtidedCountsOnlyWhileItHoldsAUri) {
  const std::string uri = private_uri("judge");
  const std::string mine = private_uri("judge-mine");
  const std::vector<OtherManager> seen = {{"ksmtuned", 40, false, true},
                                          {"memtided", 77, true, true}};
  HypervisorClaim first;
  auto others = seen;
  // Holds it: the memtided seen manages something else.
  EXPECT_EQ(first.judge(others, {uri}), "");
  EXPECT_EQ(others, (std::vector<OtherManager>{{"ksmtuned", 40, false, true}}));

  HypervisorClaim second;
  others = seen;
  // The first holds one of the two: the memtided seen is that one, and it counts.
  EXPECT_EQ(second.judge(others, {mine, uri}), "");
  EXPECT_EQ(others, seen);

  // Taken, but no memtided runs: someone else holds the name.
  others = {{"ksmtuned", 40, false, true}};
  EXPECT_EQ(second.judge(others, {mine, uri}), uri);
  EXPECT_EQ(others.size(), 1u);
}

}  // namespace
}  // namespace memtide::daemon
