// The worker that bounds hypervisor calls, with an in-memory hypervisor that can be made slow.
#include <gtest/gtest.h>

#include <memtide/collectors/hypervisor_worker.hpp>

#include "../support/fake_hypervisor.hpp"

namespace memtide::collectors {
namespace {

using namespace std::chrono_literals;

VmSample vm(const char* uuid, std::uint64_t max) {
  VmSample v;
  v.uuid = uuid;
  v.name = uuid;
  v.max_bytes = max;
  v.current_bytes = max;
  return v;
}

TEST(HypervisorWorker, PassesResultsThrough) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->vms = {vm("a", 1000), vm("b", 2000)};
  HypervisorWorker worker(std::move(fake));
  const auto r = worker.collect(0, 1s);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->size(), 2u);
  const auto set = worker.set_memory_size("b", 100, 500, 1s);  // below the floor
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(*set, 500u);
}

TEST(HypervisorWorker, ErrorsPassThrough) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->down = true;
  HypervisorWorker worker(std::move(fake));
  const auto r = worker.collect(0, 1s);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "fake hypervisor is down");
}

TEST(HypervisorWorker, HungCallIsBoundedAndLaterCallsSayBusy) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->delay = 600ms;
  fake->vms = {vm("a", 1000)};
  HypervisorWorker worker(std::move(fake));

  const auto start = std::chrono::steady_clock::now();
  const auto r = worker.collect(0, 100ms);
  const auto waited = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("did not answer within 100 ms"), std::string::npos);
  EXPECT_LT(waited, 500ms);  // bounded by the timeout, not by the 600 ms call

  const auto busy = worker.collect(0, 100ms);
  ASSERT_FALSE(busy.ok());
  EXPECT_NE(busy.error().message.find("busy"), std::string::npos) << busy.error().message;

  std::this_thread::sleep_for(700ms);  // the hung call finishes
  const auto again = worker.collect(0, 2s);
  EXPECT_TRUE(again.ok());
}

TEST(HypervisorWorker, DestructionDoesNotWaitForeverOnAHungCall) {
  auto fake = std::make_unique<testing::FakeHypervisor>();
  fake->delay = 5s;
  const auto start = std::chrono::steady_clock::now();
  {
    HypervisorWorker worker(std::move(fake));
    EXPECT_FALSE(worker.collect(0, 50ms).ok());
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 4s);
}

}  // namespace
}  // namespace memtide::collectors
