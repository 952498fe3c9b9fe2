// The /metrics page: values taken from the inputs, escaping, and the text format as Prometheus's
// own checker (promtool, when installed) reads it.
#include <algorithm>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <sstream>

#include <gtest/gtest.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <memtide/config/loader.hpp>
#include <memtide/report/metrics.hpp>

#include "../support/run_command.hpp"
#include "../support/sizes.hpp"

namespace memtide::report {
namespace {

using memtide::test_sizes::GiB;
using memtide::test_sizes::MiB;

VmSample vm(const std::string& name, const std::string& uuid, std::uint64_t max,
            std::uint64_t current) {
  VmSample v;
  v.name = name;
  v.uuid = uuid;
  v.state = VmState::running;
  v.stats_status = GuestStatsStatus::ok;
  v.max_bytes = max;
  v.current_bytes = current;
  v.guest.usable_bytes = current / 4;
  v.guest.swap_in_bytes_total = 12 * MiB;
  return v;
}

Snapshot snapshot() {
  Snapshot s;
  s.collected_at_unix_ms = 1'800'000'000'500;
  s.hypervisor_up = true;
  s.host.meminfo.total_bytes = 64 * GiB;
  s.host.meminfo.available_bytes = 20 * GiB;
  s.host.vmstat.swap_out_bytes_total = 4096;
  s.host.psi_memory = Pressure{PressureLine{0.125, 0.25, 0.5, 42.5}, PressureLine{0, 0, 0, 1}};
  KsmSample k;
  k.run = 1;
  k.sharing_bytes = 300 * MiB;
  k.zero_pages_bytes = 20 * MiB;
  k.ksmd_cpu_seconds_total = 12.5;
  k.advisor_mode = "none";
  s.ksm = k;
  KsmEstimate e;
  e.vms = 1;
  e.candidate_bytes = 8 * GiB;
  e.resident_bytes = 4 * GiB;
  e.zero_bytes = GiB;
  e.savings_bytes = 1536 * MiB;
  e.read_bytes_total = 40 * GiB;
  e.cpu_seconds_total = 10;
  e.passes_total = 10;
  s.ksm_estimate = e;
  s.vms = {vm("web-1", "u-1", 8 * GiB, 6 * GiB),
           vm("odd \"name\" \\ with\nnewline", "u-2", 24 * GiB, 16 * GiB)};
  VmPageScan scan;
  scan.status = "scanned";
  scan.resident_bytes = 4 * GiB;
  scan.zero_bytes = GiB;
  scan.duplicate_bytes = 1536 * MiB;
  scan.volatile_ratio = 0.02;
  s.vms[0].page_scan = scan;
  s.vms[0].disk_read_bytes_total = 77 * GiB;
  s.vms[1].page_scan = VmPageScan{};
  s.vms[1].page_scan->status = "opted-out";
  return s;
}

// Sample lines by "name{labels}".
std::map<std::string, std::string> samples(const std::string& page) {
  std::map<std::string, std::string> out;
  std::istringstream in(page);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const auto space = line.rfind(' ');
    out[line.substr(0, space)] = line.substr(space + 1);
  }
  return out;
}

std::string render_full() {
  static const Snapshot s = snapshot();
  static policy::Plan plan = [] {
    policy::Plan p;
    p.host_pressure = true;
    p.forecast.seconds_to_swap = 95.5;
    p.forecast.available_slope_bytes_per_second = -1.5 * MiB;
    p.alerts.push_back({"host-swap-forecast", "", policy::Severity::warning, "x", 0});
    p.alerts.push_back({"guest-distress", "web-1", policy::Severity::warning, "y", 0});
    return p;
  }();
  static policy::PolicyState state = [] {
    policy::PolicyState st;
    st.vms["u-1"].last_target_bytes = 5 * GiB;
    return st;
  }();
  static const collectors::VirtFacts facts{"ept", "madvise"};
  static DaemonFigures figures = [] {
    DaemonFigures f;
    f.ticks_total = 7;
    f.tick_seconds_total = 0.25;
    f.errors_total["balloon"] = 2;
    f.balloon_actions_total[{"shrink", "host-pressure"}] = 3;
    f.balloon_actions_total[{"grow", "guest-need"}] = 1;
    f.vm_balloon_commands_total["u-1"] = 4;
    f.last_reaction_seconds = 0.0007;
    f.started_unix_s = 1'800'000'000;
    f.ksm_writes_total["run"] = 1;
    f.process = collectors::read_self_process();
    f.host = collectors::read_host_identity();
    return f;
  }();
  const auto config = config::default_config();
  TickReport in{&s, &plan, &state, &facts, config.get(), &figures};
  return render_metrics(in);
}

TEST(Metrics, ValuesComeFromTheInputs) {
  const auto m = samples(render_full());
  EXPECT_EQ(m.at("memtide_host_memory_available_bytes"), std::to_string(20 * GiB));
  EXPECT_EQ(m.at("memtide_host_swap_out_bytes_total"), "4096");
  EXPECT_EQ(m.at("memtide_host_memory_stall_some_seconds_total"), "42.5");
  EXPECT_EQ(m.count("memtide_host_memory_pressure_ratio{kind=\"some\",window=\"10s\"}"), 0u);
  // (8 + 24) GiB of maxima and (6 + 16) GiB of balloons over 64 GiB.
  EXPECT_EQ(m.at("memtide_host_overcommit_ratio{basis=\"maximum\"}"), "0.5");
  EXPECT_EQ(m.at("memtide_host_overcommit_ratio{basis=\"current\"}"), "0.34375");
  EXPECT_EQ(m.at("memtide_vm_balloon_bytes{domain=\"web-1\",uuid=\"u-1\"}"),
            std::to_string(6 * GiB));
  EXPECT_EQ(m.at("memtide_vm_balloon_target_bytes{domain=\"web-1\",uuid=\"u-1\"}"),
            std::to_string(5 * GiB));
  EXPECT_EQ(
      m.count("memtide_vm_balloon_target_bytes{domain=\"odd \\\"name\\\" \\\\ with\\nnewline\","
              "uuid=\"u-2\"}"),
      0u);  // never targeted
  EXPECT_EQ(m.at("memtide_vm_balloon_bytes{domain=\"odd \\\"name\\\" \\\\ with\\nnewline\","
                 "uuid=\"u-2\"}"),
            std::to_string(16 * GiB));
  // The default class floor is 30 % of the maximum.
  EXPECT_EQ(m.at("memtide_vm_balloon_floor_bytes{domain=\"web-1\",uuid=\"u-1\"}"),
            std::to_string(static_cast<std::uint64_t>(0.3 * 8 * GiB)));
  EXPECT_EQ(m.at("memtide_vm_managed{domain=\"web-1\",uuid=\"u-1\"}"), "1");
  EXPECT_EQ(m.at("memtide_vm_disk_read_bytes_total{domain=\"web-1\",uuid=\"u-1\"}"),
            std::to_string(77 * GiB));
  EXPECT_EQ(
      m.count("memtide_vm_disk_read_bytes_total{domain=\"odd \\\"name\\\" \\\\ with\\nnewline\","
              "uuid=\"u-2\"}"),
      0u);  // no block statistics: absent
  EXPECT_EQ(m.at("memtide_vm_stats_status{domain=\"web-1\",uuid=\"u-1\",status=\"ok\"}"), "1");
  EXPECT_EQ(m.at("memtide_ksm_sharing_bytes"), std::to_string(300 * MiB));
  EXPECT_EQ(m.at("memtide_forecast_seconds_to_swap"), "95.5");
  EXPECT_EQ(m.at("memtide_host_under_pressure"), "1");
  EXPECT_EQ(m.at("memtide_alert_firing{alert=\"guest-distress\",domain=\"web-1\",severity="
                 "\"warning\"}"),
            "1");
  // Per VM: its own count, 0 for a VM never commanded (a series from its first tick on).
  EXPECT_EQ(m.at("memtide_vm_balloon_commands_total{domain=\"web-1\",uuid=\"u-1\"}"), "4");
  EXPECT_EQ(
      m.at("memtide_vm_balloon_commands_total{domain=\"odd \\\"name\\\" \\\\ with\\nnewline\","
           "uuid=\"u-2\"}"),
      "0");
  EXPECT_EQ(m.at("memtide_balloon_actions_total{direction=\"shrink\",cause=\"host-pressure\"}"),
            "3");
  EXPECT_EQ(m.at("memtide_errors_total{kind=\"balloon\"}"), "2");
  EXPECT_EQ(m.at("memtide_errors_total{kind=\"collect\"}"), "0");
  EXPECT_DOUBLE_EQ(std::stod(m.at("memtide_pressure_reaction_seconds")), 0.0007);
  EXPECT_EQ(m.at("memtide_host_paging_info{paging=\"ept\"}"), "1");
  EXPECT_EQ(m.at("memtide_host_transparent_hugepage_info{mode=\"madvise\"}"), "1");
  EXPECT_EQ(m.at("memtide_libvirt_up"), "1");
  EXPECT_EQ(m.at("memtide_last_collection_time_seconds"), "1800000000.5");
  // KSM: what merging saves now against the page scan's estimate, and both sides' work.
  EXPECT_EQ(m.at("memtide_ksm_savings_bytes"), std::to_string(320 * MiB));
  EXPECT_EQ(m.at("memtide_ksm_estimated_savings_bytes"), std::to_string(1536 * MiB));
  EXPECT_EQ(m.at("memtide_ksm_estimate_memory_bytes{kind=\"resident\"}"), std::to_string(4 * GiB));
  EXPECT_EQ(m.at("memtide_ksm_estimate_vms"), "1");
  EXPECT_EQ(m.at("memtide_page_scan_read_bytes_total"), std::to_string(40 * GiB));
  EXPECT_EQ(m.at("memtide_page_scan_cpu_seconds_total"), "10");
  EXPECT_EQ(m.at("memtide_ksmd_cpu_seconds_total"), "12.5");
  EXPECT_EQ(m.at("memtide_ksm_advisor_mode{mode=\"none\"}"), "1");
  EXPECT_EQ(m.at("memtide_ksm_writes_total{file=\"run\"}"), "1");
  EXPECT_EQ(m.at("memtide_vm_page_scan_zero_ratio{domain=\"web-1\",uuid=\"u-1\"}"), "0.25");
  EXPECT_EQ(m.at("memtide_vm_page_scan_duplicate_ratio{domain=\"web-1\",uuid=\"u-1\"}"), "0.375");
  EXPECT_EQ(m.at("memtide_vm_page_scan_volatile_ratio{domain=\"web-1\",uuid=\"u-1\"}"), "0.02");
  EXPECT_EQ(m.at("memtide_vm_page_scan_status{domain=\"web-1\",uuid=\"u-1\",status=\"scanned\"}"),
            "1");
  EXPECT_EQ(
      m.count("memtide_vm_page_scan_zero_ratio{domain=\"odd \\\"name\\\" \\\\ with\\nnewline\","
              "uuid=\"u-2\"}"),
      0u)
      << "a VM that opted out has no figures";
}

TEST(Metrics, EveryFamilyIsDocumented) {
  std::ifstream file(MEMTIDE_DOCS "/metrics.md");
  ASSERT_TRUE(file) << MEMTIDE_DOCS;
  const std::string readme((std::istreambuf_iterator<char>(file)),
                           std::istreambuf_iterator<char>());
  std::istringstream in(render_full());
  int families = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# TYPE ", 0) == 0) {
      const auto name = line.substr(7, line.find(' ', 7) - 7);
      ++families;
      EXPECT_NE(readme.find("`" + name), std::string::npos) << name << " is not in docs/metrics.md";
    }
  }
  EXPECT_GT(families, 60);
}

// A counter that appears only with its first event hides that event from rate() and increase():
// every label value is on the page from the start.
TEST(Metrics, LabelledCountersStartAtZero) {
  DaemonFigures figures;
  figures.balloon_actions_total[{"shrink", "squeeze"}] = 4;
  TickReport in;
  in.daemon = &figures;
  const auto m = samples(render_metrics(in));
  EXPECT_EQ(m.at("memtide_balloon_actions_total{direction=\"shrink\",cause=\"squeeze\"}"), "4");
  int actions = 0;
  for (const char* direction : {"grow", "shrink"}) {
    for (const char* cause : {"guest-need", "funding", "host-pressure", "swap-forecast", "squeeze",
                              "stale", "host-idle", "limits"}) {
      actions += m.count(std::string("memtide_balloon_actions_total{direction=\"") + direction +
                         "\",cause=\"" + cause + "\"}");
    }
  }
  EXPECT_EQ(actions, 16);
  for (const char* sink : {"alertmanager", "exec"}) {
    for (const char* result : {"delivered", "failed", "dropped"}) {
      EXPECT_EQ(m.at(std::string("memtide_alert_deliveries_total{sink=\"") + sink + "\",result=\"" +
                     result + "\"}"),
                "0");
    }
  }
  for (const char* file :
       {"run", "pages_to_scan", "sleep_millisecs", "merge_across_nodes", "use_zero_pages",
        "advisor_mode", "advisor_max_cpu", "advisor_target_scan_time"}) {
    EXPECT_EQ(m.at(std::string("memtide_ksm_writes_total{file=\"") + file + "\"}"), "0") << file;
  }
  EXPECT_EQ(m.at("memtide_errors_total{kind=\"collect\"}"), "0");
  EXPECT_EQ(m.at("memtide_huge_page_releases_total{result=\"failed\"}"), "0");
}

// This process as any Prometheus client describes its own, and the host it runs on.
TEST(Metrics, TheProcessAndTheHost) {
  DaemonFigures figures;
  figures.process = collectors::read_self_process();
  figures.host = collectors::read_host_identity();
  ASSERT_TRUE(figures.process.has_value());
  TickReport in;
  in.daemon = &figures;
  const auto m = samples(render_metrics(in));
  const double now = static_cast<double>(std::time(nullptr));
  const double started = std::stod(m.at("process_start_time_seconds"));
  EXPECT_LE(started, now + 1);
  EXPECT_GT(started, now - 3600);  // this test process started within the hour
  EXPECT_GT(std::stod(m.at("process_resident_memory_bytes")), 1 << 20);
  EXPECT_GE(std::stod(m.at("process_virtual_memory_bytes")),
            std::stod(m.at("process_resident_memory_bytes")));
  EXPECT_GE(std::stod(m.at("process_open_fds")), 3);  // stdin, stdout, stderr at least
  EXPECT_GE(std::stod(m.at("process_max_fds")), std::stod(m.at("process_open_fds")));
  EXPECT_GE(std::stod(m.at("process_cpu_seconds_total")), 0);
  utsname u{};
  ASSERT_EQ(uname(&u), 0);
  EXPECT_EQ(m.at(std::string("memtide_host_info{hostname=\"") + u.nodename + "\",kernel=\"" +
                 u.release + "\",machine=\"" + u.machine + "\"}"),
            "1");
}

// metrics.per_vm bounds the page: decisions keeps what memtide decides on and decides, off
// keeps no per-VM series; the host's figures stay in every mode.
TEST(Metrics, PerVmSeriesFollowTheConfiguration) {
  const Snapshot s = snapshot();
  auto per_vm_series = [&s](config::PerVmMetrics mode) {
    auto c = std::make_shared<config::Config>(*config::default_config());
    c->metrics.per_vm = mode;
    TickReport in;
    in.snapshot = &s;
    in.config = c.get();
    std::set<std::string> families;
    std::size_t series = 0;
    for (const auto& [key, value] : samples(render_metrics(in))) {
      if (key.find("uuid=") != std::string::npos) {
        ++series;
        families.insert(key.substr(0, key.find('{')));
      }
    }
    EXPECT_EQ(samples(render_metrics(in)).count("memtide_host_memory_total_bytes"), 1u);
    return std::make_pair(families, series);
  };
  const auto [full, full_series] = per_vm_series(config::PerVmMetrics::full);
  const auto [decisions, decision_series] = per_vm_series(config::PerVmMetrics::decisions);
  const auto [off, off_series] = per_vm_series(config::PerVmMetrics::off);
  EXPECT_EQ(decisions,
            (std::set<std::string>{"memtide_vm_balloon_bytes", "memtide_vm_balloon_floor_bytes",
                                   "memtide_vm_managed", "memtide_vm_memory_maximum_bytes",
                                   "memtide_vm_stats_status", "memtide_vm_usable_bytes"}));
  EXPECT_TRUE(std::includes(full.begin(), full.end(), decisions.begin(), decisions.end()));
  EXPECT_GT(full.size(), decisions.size());
  EXPECT_LT(decision_series, full_series);
  EXPECT_EQ(off_series, 0u);
  EXPECT_TRUE(off.empty());
}

TEST(Metrics, NoForecastIsInfinityAndEmptyInputsRenderTheDaemonAlone) {
  policy::Plan plan;
  TickReport in;
  in.plan = &plan;
  EXPECT_EQ(samples(render_metrics(in)).at("memtide_forecast_seconds_to_swap"), "+Inf");
  DaemonFigures figures;
  TickReport bare;
  bare.daemon = &figures;
  const auto m = samples(render_metrics(bare));
  EXPECT_EQ(m.count("memtide_vm_balloon_bytes"), 0u);
  EXPECT_EQ(m.at("memtide_ticks_total"), "0");
}

TEST(Metrics, EveryFamilyHasHelpAndTypeAndPromtoolFindsNothing) {
  const std::string page = render_full();
  std::istringstream in(page);
  std::map<std::string, int> help;
  std::map<std::string, std::string> type;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("# HELP ", 0) == 0) {
      ++help[line.substr(7, line.find(' ', 7) - 7)];
    } else if (line.rfind("# TYPE ", 0) == 0) {
      const auto name = line.substr(7, line.find(' ', 7) - 7);
      type[name] = line.substr(line.rfind(' ') + 1);
      // memtide's own, and the process_* families under the names every client library uses.
      EXPECT_TRUE(name.rfind("memtide_", 0) == 0 || name.rfind("process_", 0) == 0) << name;
      if (type[name] == "counter") {
        EXPECT_EQ(name.substr(name.size() - 6), "_total") << name;
      }
    }
  }
  for (const auto& [name, count] : help) {
    EXPECT_EQ(count, 1) << name;
    EXPECT_EQ(type.count(name), 1u) << name;
  }
  if (memtide::testing::run_command("command -v promtool").empty()) {
    GTEST_SKIP() << "promtool not installed";
  }
  char path[] = "/tmp/memtide-metrics-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << page;
  // promtool prints its findings and exits 0 either way: any output is a finding.
  const auto findings = memtide::testing::run_command(std::string("promtool check metrics < ") +
                                                      path + " 2>&1; echo rc=$?");
  std::remove(path);
  EXPECT_EQ(findings, "rc=0");
}

}  // namespace
}  // namespace memtide::report
