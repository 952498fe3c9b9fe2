// One TickReport, three renderings: the metrics page, the status/explain answers and the
// snapshot JSON. Every figure two of them show must be the same figure.
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include <memtide/report/metrics.hpp>
#include <memtide/report/snapshot_json.hpp>
#include <memtide/report/status.hpp>
#include <memtide/report/tick_report.hpp>

#include "../policy/policy_fixtures.hpp"

namespace memtide::report {
namespace {

using policy::testing::GiB;
using policy::testing::MiB;

VmSample vm(const std::string& name, std::uint64_t max, std::uint64_t current,
            std::uint64_t usable) {
  VmSample v = policy::testing::guest(name, current, max, usable);
  v.guest.unused_bytes = usable / 2;
  return v;
}

// A host below its reserve with one idle guest (the policy shrinks it) and one busy one.
Snapshot tight_host(std::int64_t t_ms) {
  Snapshot s = policy::testing::host(600 * MiB, 16 * GiB);
  s.monotonic_ms = t_ms;
  s.collected_at_unix_ms = 1'800'000'000'000 + t_ms;
  s.hypervisor_up = true;
  s.host.meminfo.free_bytes = 300 * MiB;
  KsmSample k;
  k.run = 1;
  k.pages_to_scan = 100;
  k.sleep_ms = 20;
  k.sharing_bytes = 300 * MiB;
  k.zero_pages_bytes = 20 * MiB;
  s.ksm = k;
  s.vms = {vm("idle", 8 * GiB, 8 * GiB, 6 * GiB), vm("busy", 4 * GiB, 3 * GiB, 200 * MiB),
           vm("gpu", 4 * GiB, 4 * GiB, 3 * GiB)};
  s.vms[0].balloon_autodeflate = false;
  s.vms[0].balloon_free_page_reporting = true;
  s.vms[2].balloon_autodeflate = true;
  s.vms[2].balloon_free_page_reporting = false;
  s.vms[2].memory_pins = {MemoryPin::hostdev};
  // busy: 1 GiB of base memory and a 3 GiB virtio-mem device, 2 GiB plugged of 1.5 GiB asked.
  s.vms[1].virtio_mem = {
      VirtioMemDevice{"virtiomem0", 0, 2 * MiB, 3 * GiB, 1536 * MiB, 2 * GiB, 3 * GiB}};
  for (auto& v : s.vms) {
    v.guest.last_update_unix_s = s.collected_at_unix_ms / 1000;
  }
  return s;
}

// Sample values by "name{labels}".
std::map<std::string, double> sample_values(const std::string& page) {
  std::map<std::string, double> out;
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return out;
}

class OneReport : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = std::make_shared<const config::Config>(policy::testing::base_config());
    snapshot_ = tight_host(5000);
    auto decision = policy::decide(snapshot_, {}, *config_, 5000);
    plan_ = std::move(decision.plan);
    state_ = std::move(decision.state);
    alerts_ = plan_.alerts;
    alerts_.push_back({"balloon-command-failed", "busy", policy::Severity::warning,
                       "busy: balloon command failed: test", 5000});
    figures_.ticks_total = 2;
    figures_.paused = true;
    figures_.dry_run = false;
    for (const auto& change : plan_.balloons) {
      recent_.push_back({snapshot_.collected_at_unix_ms, change, "applied"});
    }
    report_ = {&snapshot_, &plan_, &state_, &facts_, config_.get(), &figures_, &alerts_, &recent_};
    metrics_ = sample_values(render_metrics(report_));
    status_ = status_reply(report_);
    snapshot_json_ = to_json(snapshot_);
  }

  double metric(const std::string& key) const {
    const auto it = metrics_.find(key);
    EXPECT_NE(it, metrics_.end()) << key;
    return it == metrics_.end() ? -1 : it->second;
  }
  static std::string vm_labels(const VmSample& vm) {
    return "{domain=\"" + vm.name + "\",uuid=\"" + vm.uuid + "\"}";
  }

  std::shared_ptr<const config::Config> config_;
  Snapshot snapshot_;
  policy::Plan plan_;
  policy::PolicyState state_;
  collectors::VirtFacts facts_{"ept", "madvise"};
  DaemonFigures figures_;
  std::vector<policy::Alert> alerts_;
  std::deque<RecentCommand> recent_;
  TickReport report_;
  std::map<std::string, double> metrics_;
  nlohmann::json status_;
  nlohmann::ordered_json snapshot_json_;
};

TEST_F(OneReport, ThePolicyActedSoTheReportHasSomethingToAgreeOn) {
  ASSERT_TRUE(status_["ok"].get<bool>());
  EXPECT_FALSE(plan_.balloons.empty()) << plan_.host_summary;
  EXPECT_TRUE(balloon_target_of(report_, "uuid-idle").has_value());
}

TEST_F(OneReport, HostFiguresAgree) {
  const auto& host = status_["host"];
  const auto& meminfo = snapshot_json_["host"]["meminfo"];
  EXPECT_EQ(metric("memtide_host_memory_total_bytes"), host["total_bytes"].get<double>());
  EXPECT_EQ(host["total_bytes"], meminfo["total_bytes"]);
  EXPECT_EQ(metric("memtide_host_memory_available_bytes"), host["available_bytes"].get<double>());
  EXPECT_EQ(host["available_bytes"], meminfo["available_bytes"]);
  EXPECT_EQ(metric("memtide_libvirt_up"), host["libvirt_up"].get<bool>() ? 1 : 0);
  EXPECT_EQ(host["libvirt_up"], snapshot_json_["hypervisor"]["up"]);
  EXPECT_EQ(metric("memtide_host_under_pressure"), host["pressure"].get<bool>() ? 1 : 0);
  EXPECT_EQ(metric("memtide_host_paying_back_swap"), host["paying_back_swap"].get<bool>() ? 1 : 0);
  EXPECT_EQ(metric("memtide_host_headroom_bytes{kind=\"above_reserve\"}"),
            host["headroom_above_reserve_bytes"].get<double>());
  EXPECT_EQ(metric("memtide_host_headroom_bytes{kind=\"reclaimable\"}"),
            host["headroom_reclaimable_bytes"].get<double>());
  EXPECT_EQ(host["headroom_reclaimable_bytes"], plan_.reclaimable_bytes);
  EXPECT_EQ(host["collected_at"],
            format_utc(snapshot_json_["collected_at_unix_ms"].get<std::int64_t>()));
}

TEST_F(OneReport, EveryVmsFiguresAgree) {
  const auto& vms = status_["vms"];
  ASSERT_EQ(vms.size(), snapshot_.vms.size());
  ASSERT_EQ(snapshot_json_["vms"].size(), snapshot_.vms.size());
  for (std::size_t i = 0; i < snapshot_.vms.size(); ++i) {
    const auto& vm = snapshot_.vms[i];
    const auto& st = vms[i];
    const auto& js = snapshot_json_["vms"][i];
    const std::string l = vm_labels(vm);
    SCOPED_TRACE(vm.name);
    EXPECT_EQ(st["uuid"], js["uuid"]);
    EXPECT_EQ(metric("memtide_vm_balloon_bytes" + l), st["balloon_bytes"].get<double>());
    EXPECT_EQ(st["balloon_bytes"], js["current_bytes"]);
    EXPECT_EQ(metric("memtide_vm_memory_maximum_bytes" + l), st["max_bytes"].get<double>());
    EXPECT_EQ(st["max_bytes"], js["max_bytes"]);
    EXPECT_EQ(metric("memtide_vm_usable_bytes" + l), st["usable_bytes"].get<double>());
    EXPECT_EQ(st["usable_bytes"], js["guest"]["usable_bytes"]);
    EXPECT_EQ(metric("memtide_vm_balloon_floor_bytes" + l), st["floor_bytes"].get<double>());
    EXPECT_EQ(metric("memtide_vm_managed" + l), st["managed"].get<bool>() ? 1 : 0);
    if (st["target_bytes"].is_null()) {
      EXPECT_EQ(metrics_.count("memtide_vm_balloon_target_bytes" + l), 0u);
    } else {
      EXPECT_EQ(metric("memtide_vm_balloon_target_bytes" + l), st["target_bytes"].get<double>());
    }
    EXPECT_EQ(
        metrics_.count("memtide_vm_stats_status{domain=\"" + vm.name + "\",uuid=\"" + vm.uuid +
                       "\",status=\"" + st["stats_status"].get<std::string>() + "\"}"),
        1u);
    // explain says what status says about the VM.
    const auto explained = explain_reply(report_, vm.name);
    ASSERT_TRUE(explained["ok"].get<bool>());
    EXPECT_EQ(explained["vm"], st);
  }
}

// virtio-mem devices: the same in status, explain, the snapshot JSON and the metrics; an unplug
// the guest has not finished is counted.
TEST_F(OneReport, VirtioMemDevicesAgree) {
  const auto& vms = status_["vms"];
  for (std::size_t i = 0; i < snapshot_.vms.size(); ++i) {
    const auto& vm = snapshot_.vms[i];
    const auto& st = vms[i];
    const std::string l = vm_labels(vm);
    SCOPED_TRACE(vm.name);
    EXPECT_EQ(st["virtio_mem"], snapshot_json_["vms"][i]["virtio_mem"]);
    for (const char* family :
         {"memtide_vm_virtio_mem_maximum_bytes", "memtide_vm_virtio_mem_requested_bytes",
          "memtide_vm_virtio_mem_plugged_bytes"}) {
      EXPECT_EQ(metrics_.count(family + l), vm.virtio_mem.empty() ? 0u : 1u) << family;
    }
  }
  const auto& busy = vms[1]["virtio_mem"];
  ASSERT_EQ(busy.size(), 1u);
  EXPECT_EQ(busy[0]["alias"], "virtiomem0");
  EXPECT_EQ(busy[0]["node"], 0);
  EXPECT_EQ(busy[0]["block_bytes"], 2 * MiB);
  EXPECT_EQ(busy[0]["requested_bytes"], 1536 * MiB);
  EXPECT_EQ(busy[0]["plugged_bytes"], 2 * GiB);
  EXPECT_EQ(busy[0]["configured_bytes"], 3 * GiB);
  const std::string l = vm_labels(snapshot_.vms[1]);
  EXPECT_EQ(metric("memtide_vm_virtio_mem_maximum_bytes" + l), 3.0 * GiB);
  EXPECT_EQ(metric("memtide_vm_virtio_mem_requested_bytes" + l), 1536.0 * MiB);
  EXPECT_EQ(metric("memtide_vm_virtio_mem_plugged_bytes" + l), 2.0 * GiB);
  EXPECT_EQ(metric("memtide_vms_virtio_mem"), 1);
  EXPECT_EQ(metric("memtide_vms_virtio_mem_unplug_pending"), 1);
  EXPECT_TRUE(vms[0]["virtio_mem"].empty());
}

// Balloon options, pinned memory and the advice drawn from them.
TEST_F(OneReport, BalloonOptionsAndPinnedMemoryAgree) {
  const auto& vms = status_["vms"];
  for (std::size_t i = 0; i < snapshot_.vms.size(); ++i) {
    const auto& vm = snapshot_.vms[i];
    const auto& st = vms[i];
    const auto& js = snapshot_json_["vms"][i];
    const std::string l = vm_labels(vm);
    SCOPED_TRACE(vm.name);
    EXPECT_EQ(st["memory_pins"], js["memory_pins"]);
    EXPECT_EQ(metric("memtide_vm_memory_pinned" + l), st["memory_pins"].empty() ? 0 : 1);
    for (const char* option : {"balloon_autodeflate", "balloon_free_page_reporting"}) {
      EXPECT_EQ(st[option], js[option]) << option;
      if (st[option].is_null()) {
        EXPECT_EQ(metrics_.count(std::string("memtide_vm_") + option + l), 0u) << option;
      } else {
        EXPECT_EQ(metric(std::string("memtide_vm_") + option + l), st[option].get<bool>() ? 1 : 0)
            << option;
      }
    }
  }
  EXPECT_EQ(vms[2]["memory_pins"], nlohmann::json::array({"hostdev"}));
  EXPECT_EQ(vms[2]["floor_bytes"], vms[2]["max_bytes"]);
  EXPECT_NE(vms[2]["explanation"].get<std::string>().find(
                "never shrunk: the host holds all of its memory whatever its balloon (a "
                "passed-through device)"),
            std::string::npos)
      << vms[2]["explanation"];
  // Every kind is on the page, 0 when no VM has it.
  EXPECT_EQ(metric("memtide_vms_memory_pinned{kind=\"hostdev\"}"), 1);
  for (const char* kind : {"hugepages", "locked", "preallocated", "launch-security"}) {
    EXPECT_EQ(metric(std::string("memtide_vms_memory_pinned{kind=\"") + kind + "\"}"), 0) << kind;
  }
  // Autodeflate is advised where it is off, on a guest memtide may shrink.
  ASSERT_EQ(vms[0]["advice"].size(), 1u);
  EXPECT_NE(vms[0]["advice"][0].get<std::string>().find("turn autodeflate on"), std::string::npos);
  EXPECT_TRUE(vms[1]["advice"].empty());  // unknown: the domain XML has not been read
  EXPECT_TRUE(vms[2]["advice"].empty());
}

TEST_F(OneReport, KsmFiguresAgree) {
  const auto& ksm = status_["ksm"];
  const auto& js = snapshot_json_["ksm"];
  EXPECT_EQ(metric("memtide_ksm_run"), ksm["run"].get<double>());
  EXPECT_EQ(ksm["run"], js["run"]);
  EXPECT_EQ(metric("memtide_ksm_pages_to_scan"), ksm["pages_to_scan"].get<double>());
  EXPECT_EQ(ksm["pages_to_scan"], js["pages_to_scan"]);
  EXPECT_EQ(metric("memtide_ksm_sleep_seconds") * 1000, ksm["sleep_ms"].get<double>());
  EXPECT_EQ(metric("memtide_ksm_savings_bytes"), ksm["actual_savings_bytes"].get<double>());
}

TEST_F(OneReport, AlertsAndTheDaemonsOwnFiguresAgree) {
  std::set<std::pair<std::string, std::string>> from_status;
  for (const auto& a : status_["alerts"]) {
    const auto domain = a["domain"].get<std::string>();
    from_status.insert({a["name"].get<std::string>(), domain});
    EXPECT_EQ(metric("memtide_alert_firing{alert=\"" + a["name"].get<std::string>() + "\"," +
                     (domain.empty() ? "" : "domain=\"" + domain + "\",") + "severity=\"" +
                     a["severity"].get<std::string>() + "\"}"),
              1);
  }
  std::set<std::pair<std::string, std::string>> from_metrics;
  for (const auto& [key, value] : metrics_) {
    if (key.rfind("memtide_alert_firing{", 0) == 0) {
      from_metrics.insert({key, ""});
    }
  }
  EXPECT_EQ(from_status.size(), alerts_.size());
  EXPECT_EQ(from_metrics.size(), alerts_.size());
  EXPECT_EQ(from_status.count({"balloon-command-failed", "busy"}), 1u);
  EXPECT_EQ(metric("memtide_ticks_total"), status_["daemon"]["ticks"].get<double>());
  EXPECT_EQ(metric("memtide_actions_paused"), status_["daemon"]["paused"].get<bool>() ? 1 : 0);
  EXPECT_EQ(metric("memtide_dry_run"), status_["daemon"]["dry_run"].get<bool>() ? 1 : 0);
  ASSERT_EQ(status_["recent_commands"].size(), plan_.balloons.size());
  for (std::size_t i = 0; i < plan_.balloons.size(); ++i) {
    EXPECT_EQ(status_["recent_commands"][i]["to_bytes"], plan_.balloons[i].to_bytes);
  }
}

TEST_F(OneReport, TheServiceStatusLineSaysWhatTheOtherOutputsSay) {
  const std::string line = service_status(report_);
  EXPECT_NE(line.find("tick 2 every "), std::string::npos) << line;
  EXPECT_NE(line.find("host MemAvailable 600 MiB of 16 GiB; 3 VMs"), std::string::npos) << line;
  EXPECT_NE(line.find(plan_.host_summary), std::string::npos) << line;
  EXPECT_NE(line.find("; " + std::to_string(alerts_.size()) + " alert(s) firing"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("actions PAUSED"), std::string::npos) << line;
  EXPECT_EQ(line.find("DRY RUN"), std::string::npos) << line;
  figures_.collect_error = "meminfo: gone";
  EXPECT_NE(service_status(report_).find("collection failing: meminfo: gone"), std::string::npos);
}

TEST_F(OneReport, NothingCollectedYetIsSaidPlainly) {
  TickReport empty;
  empty.config = config_.get();
  empty.daemon = &figures_;
  EXPECT_FALSE(status_reply(empty)["ok"].get<bool>());
  EXPECT_FALSE(explain_reply(empty, "idle")["ok"].get<bool>());
  EXPECT_EQ(explain_reply(report_, "no-such-vm")["error"], "no running VM named 'no-such-vm'");
}

}  // namespace
}  // namespace memtide::report
