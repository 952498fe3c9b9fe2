// One memtided per hypervisor: the claim on a libvirt URI, within one process (a claim is per
// socket, so two in one process behave as two daemons would).
#include "hypervisor_claim.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

namespace memtide::daemon {
namespace {

// A URI no other test or daemon uses.
std::string private_uri(const char* what) {
  return std::string("qemu+ssh://claim-test-") + what + "-" + std::to_string(getpid()) + "/system";
}

TEST(HypervisorClaim, ASecondClaimOnTheSameUriWaitsForTheFirst) {
  const std::string uri = private_uri("same");
  auto first = std::make_unique<HypervisorClaim>(uri);
  HypervisorClaim second(uri);
  HypervisorClaim other(private_uri("other"));
  EXPECT_TRUE(first->hold());
  EXPECT_TRUE(first->hold());  // held, not claimed again
  EXPECT_FALSE(second.hold());
  EXPECT_TRUE(other.hold());
  first.reset();  // the first daemon stops
  EXPECT_TRUE(second.hold());
}

TEST(HypervisorClaim, TestDriverUrisAreNeverClaimed) {
  HypervisorClaim a("test:///default");
  HypervisorClaim b("test:///default");
  EXPECT_TRUE(a.hold());
  EXPECT_TRUE(b.hold());
}

TEST(HypervisorClaim, AnotherMemtidedCountsOnlyWhileItHoldsTheUri) {
  const std::string uri = private_uri("judge");
  const std::vector<OtherManager> seen = {{"ksmtuned", 40, false, true},
                                          {"memtided", 77, true, true}};
  HypervisorClaim first(uri);
  auto others = seen;
  // Holds it: the memtided seen manages something else.
  EXPECT_FALSE(first.judge(others));
  EXPECT_EQ(others, (std::vector<OtherManager>{{"ksmtuned", 40, false, true}}));

  HypervisorClaim second(uri);
  others = seen;
  EXPECT_FALSE(second.judge(others));  // the first holds it: the memtided seen is that one
  EXPECT_EQ(others, seen);

  others = {{"ksmtuned", 40, false, true}};
  EXPECT_TRUE(second.judge(others));  // taken, but no memtided runs: someone else holds the name
  EXPECT_EQ(others.size(), 1u);
}

}  // namespace
}  // namespace memtide::daemon
