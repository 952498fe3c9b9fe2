// The Daemon's tick without a process: a copy of a captured host tree whose MemAvailable the test
// sets, an in-memory hypervisor, and the TickReport every output is rendered from.
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <gtest/gtest.h>

#include <memtide/report/status.hpp>

#include "../policy/policy_fixtures.hpp"
#include "../support/fake_hypervisor.hpp"
#include "daemon.hpp"

namespace memtide::daemon {
namespace {

namespace fs = std::filesystem;
using policy::testing::GiB;
using policy::testing::MiB;

class Coordinator : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-coordinator-XXXXXX";
    root_ = mkdtemp(tmpl);
    fs::copy(std::string(MEMTIDE_FIXTURES) + "/hosts/debian12-6.18", root_,
             fs::copy_options::recursive);
    set_available(600 * MiB);  // below the 2 GiB reserve
    auto fake = std::make_unique<testing::FakeHypervisor>();
    fake_ = fake.get();
    fake_->vms = {policy::testing::guest("idle", 8 * GiB, 8 * GiB, 6 * GiB),
                  policy::testing::guest("busy", 3 * GiB, 4 * GiB, 200 * MiB)};
    fake_pending_ = std::move(fake);
  }
  void TearDown() override {
    daemon_.reset();
    fs::remove_all(root_);
  }

  // MemAvailable in the tree's meminfo (the rest of the file stays as captured).
  void set_available(std::uint64_t bytes) {
    const std::string path = root_ + "/proc/meminfo";
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    in.close();
    const std::string changed =
        std::regex_replace(text.str(), std::regex("MemAvailable: +[0-9]+ kB"),
                           "MemAvailable:   " + std::to_string(bytes / 1024) + " kB");
    std::ofstream(path) << changed;
  }

  Daemon& start(bool dry_run = false, config::LogLevel level = config::LogLevel::warning) {
    auto c = policy::testing::base_config();
    c.daemon.procfs = root_ + "/proc";
    c.daemon.sysfs = root_ + "/sys";
    c.daemon.control_socket = "";
    c.daemon.state_file = "";
    c.daemon.dry_run = dry_run;
    c.metrics.listen = "";
    c.ksm.scan.enabled = false;
    c.daemon.log_level = level;
    auto fake = std::shared_ptr<testing::FakeHypervisor>(std::move(fake_pending_));
    daemon_ =
        std::make_unique<Daemon>(Options{}, std::make_shared<const config::Config>(c), log_,
                                 [fake](const config::Config&) mutable {
                                   return std::make_unique<collectors::HypervisorWorker>(
                                       std::unique_ptr<collectors::Hypervisor>(new Forward(fake)));
                                 });
    return *daemon_;
  }

  // The hypervisor the Daemon owns, forwarding to the fake the test keeps looking at.
  struct Forward final : collectors::Hypervisor {
    explicit Forward(std::shared_ptr<testing::FakeHypervisor> f) : fake(std::move(f)) {}
    using collectors::Hypervisor::collect;
    Result<std::vector<VmSample>> collect(std::int64_t ms,
                                          const collectors::ProcessReadHints& hints) override {
      return fake->collect(ms, hints);
    }
    Result<std::uint64_t> set_memory_size(const std::string& uuid, std::uint64_t target,
                                          std::uint64_t floor) override {
      return fake->set_memory_size(uuid, target, floor);
    }
    std::shared_ptr<testing::FakeHypervisor> fake;
  };

  std::string root_;
  testing::FakeHypervisor* fake_ = nullptr;
  std::unique_ptr<testing::FakeHypervisor> fake_pending_;
  Logger log_{Logger::Target::stderr_only, config::LogLevel::warning};
  std::unique_ptr<Daemon> daemon_;
};

TEST_F(Coordinator, APressedHostShrinksTheIdleGuestAndEveryOutputSaysSo) {
  Daemon& d = start();
  d.tick();
  ASSERT_FALSE(fake_->balloon_calls.empty());
  EXPECT_EQ(fake_->balloon_calls[0].first, "uuid-idle");
  EXPECT_LT(fake_->balloon_calls[0].second, 8 * GiB);
  const auto r = d.tick_report();
  ASSERT_NE(r.snapshot, nullptr);
  ASSERT_NE(r.plan, nullptr);
  EXPECT_EQ(r.snapshot->host.meminfo.available_bytes, 600 * MiB);
  // The idle guest's spare funds the busy one: a shrink and a grow, both carried out.
  ASSERT_EQ(r.recent_commands->size(), 2u);
  ASSERT_EQ(fake_->balloon_calls.size(), 2u);
  for (const auto& c : *r.recent_commands) {
    EXPECT_EQ(c.outcome, "applied") << c.change.vm;
  }
  EXPECT_EQ(report::balloon_target_of(r, "uuid-idle"), fake_->balloon_calls[0].second);
  EXPECT_EQ(r.daemon->ticks_total, 1u);
  std::uint64_t actions = 0;
  for (const auto& [key, n] : r.daemon->balloon_actions_total) {
    actions += n;
  }
  EXPECT_EQ(actions, 2u);
  const auto status = d.handle_control({{"command", "status"}});
  ASSERT_TRUE(status["ok"].get<bool>());
  EXPECT_EQ(status["recent_commands"][0]["outcome"], "applied");
  for (const auto& vm : status["vms"]) {
    if (vm["name"] == "idle") {
      EXPECT_EQ(vm["target_bytes"], fake_->balloon_calls[0].second);
    }
  }
}

TEST_F(Coordinator, PausedItDecidesButSendsNothingAndForgetsTheCommand) {
  Daemon& d = start();
  EXPECT_TRUE(d.handle_control({{"command", "pause"}})["paused"].get<bool>());
  d.tick();
  EXPECT_TRUE(fake_->balloon_calls.empty());
  const auto r = d.tick_report();
  ASSERT_EQ(r.recent_commands->size(), 2u);
  EXPECT_EQ(r.recent_commands->front().outcome, "paused");
  // Unsent: the next tick decides it again rather than wait for a command never sent.
  EXPECT_FALSE(report::balloon_target_of(r, "uuid-idle").has_value());
  d.handle_control({{"command", "resume"}});
  d.tick();
  EXPECT_EQ(fake_->balloon_calls.size(), 2u);
}

TEST_F(Coordinator, DryRunSendsNothing) {
  Daemon& d = start(/*dry_run=*/true);
  d.tick();
  d.tick();
  EXPECT_TRUE(fake_->balloon_calls.empty());
  const auto r = d.tick_report();
  ASSERT_FALSE(r.recent_commands->empty());
  EXPECT_EQ(r.recent_commands->front().outcome, "dry run");
  EXPECT_TRUE(r.daemon->dry_run);
}

TEST_F(Coordinator, LibvirtDownForTwoTicksFiresAnAlertAndTheHostAloneIsDecidedOn) {
  Daemon& d = start();
  fake_->down = true;
  d.tick();
  auto names = [&d] {
    std::set<std::string> out;
    for (const auto& a : *d.tick_report().alerts) {
      out.insert(a.name);
    }
    return out;
  };
  EXPECT_EQ(names().count("libvirt-down"), 0u);  // one failure may be a restart
  d.tick();
  EXPECT_EQ(names().count("libvirt-down"), 1u);
  EXPECT_TRUE(fake_->balloon_calls.empty());
  EXPECT_TRUE(d.tick_report().plan->outcomes.empty());
  fake_->down = false;
  d.tick();
  EXPECT_EQ(names().count("libvirt-down"), 0u);
}

// While libvirt is down the report keeps the VMs of the last good collection (status still
// shows them), tick after tick, and nothing is decided on them.
TEST_F(Coordinator, LibvirtDownKeepsTheLastGoodVms) {
  Daemon& d = start();
  d.tick();
  const auto seen = d.tick_report().snapshot->vms.size();
  ASSERT_GT(seen, 0u);
  fake_->down = true;
  const auto calls = fake_->balloon_calls.size();
  for (int i = 0; i < 3; ++i) {
    d.tick();
    const auto r = d.tick_report();
    EXPECT_FALSE(r.snapshot->hypervisor_up);
    EXPECT_EQ(r.snapshot->vms.size(), seen) << "tick " << i;
    EXPECT_TRUE(r.plan->outcomes.empty());
  }
  EXPECT_EQ(fake_->balloon_calls.size(), calls);
}

TEST_F(Coordinator, AFailedCommandIsCountedAndAlertedUntilCommandsWorkAgain) {
  Daemon& d = start();
  fake_->set_balloon_failures = 1;
  d.tick();
  const auto r = d.tick_report();
  EXPECT_EQ(r.daemon->errors_total.at("balloon"), 1u);
  ASSERT_EQ(r.alerts->size(), r.plan->alerts.size() + 1);
  bool found = false;
  for (const auto& a : *r.alerts) {
    found = found || (a.name == "balloon-command-failed" && a.subject == "idle");
  }
  EXPECT_TRUE(found);
  EXPECT_EQ(r.recent_commands->front().outcome.rfind("failed: ", 0), 0u);
}

TEST_F(Coordinator, PerVmSettingsChangedOnARunningGuestAreLoggedAndUsed) {
  Daemon& d = start(false, config::LogLevel::notice);
  d.tick();
  fake_->vms[0].metadata.balloon_enabled = false;  // the idle guest: memtide must leave it alone
  fake_->vms[0].metadata.floor = SizeOrRatio{6 * GiB};
  ::testing::internal::CaptureStderr();
  d.tick();
  const std::string log = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(log.find("domain 'idle': memtide settings changed from none (the class settings "
                     "apply) to floor 6 GiB, balloon off"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("MEMTIDE_EVENT=vm-metadata-changed"), std::string::npos) << log;
  const auto status = d.handle_control({{"command", "explain"}, {"vm", "idle"}});
  EXPECT_FALSE(status["vm"]["managed"].get<bool>()) << status.dump();
  EXPECT_EQ(status["vm"]["floor_bytes"], 6 * GiB);
}

}  // namespace
}  // namespace memtide::daemon
