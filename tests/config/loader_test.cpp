// The loader on valid input: defaults, the shipped example, and every key's effect.
#include <fstream>

#include <gtest/gtest.h>

#include <memtide/config/loader.hpp>

namespace memtide::config {
namespace {

using namespace std::chrono_literals;

TEST(Loader, EmptyFileGivesDefaults) {
  const auto r = load_config_string("", "empty.yaml");
  ASSERT_TRUE(r.ok());
  Config expected = *default_config();
  expected.source = "empty.yaml";
  EXPECT_EQ(*r.config, expected);
  EXPECT_EQ(r.config->daemon.interval, 10s);
  ASSERT_EQ(r.config->classes.size(), 1u);
  EXPECT_EQ(r.config->classes[0].match_name, "*");
}

TEST(Loader, CommentsOnlyGivesDefaults) {
  const auto r = load_config_string("# nothing here\n\n", "c.yaml");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.config->host.reserve_bytes, 2ULL << 30);
}

TEST(Loader, EmptySectionsAreAllowed) {
  const auto r = load_config_string("daemon:\nhost:\n", "c.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
}

TEST(Loader, EveryKeyReachesTheConfig) {
  const auto r = load_config_string(R"(
daemon:
  interval: 2s
  procfs: /srv/fixture/proc
  sysfs: /srv/fixture/sys
  log_level: debug
  on_stop: keep
  dry_run: true
  record: {path: /var/lib/memtide/trace.jsonl, max_size: 16MiB, files: 7}
libvirt:
  uri: test:///default
  timeout: 2s
  keepalive: {interval: 10s, count: 5}
  reconnect_max_backoff: 2m
  relist_interval: 30s
  stats_period: 0s
host:
  reserve: 1.5GiB
  swap_forecast: {horizon: 5m, window: 30s}
  pressure: {psi_some_avg10: 12.5%, psi_full_avg10: 3%}
ksm:
  mode: off
  min_savings: 7%
  max_cpu: 15%
  full_scan_time: 90s
  sleep: 50ms
  advisor: scan-time
  unmerge: true
  merge_across_nodes: false
  scan: {enabled: false, cpu: 2.5%, max_read_rate: 64MiB, interval: 10m}
classes:
  - name: db
    match: {class: database}
    balloon: {enabled: false}
  - name: rest
    match: {name: "web-*"}
    balloon:
      floor: 1GiB
      guest_free: 20%
      shares: 250
      max_step: 64MiB
      deadband: 16MiB
      hysteresis: 2m
      grow_when_host_idle: true
)",
                                    "full.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  const Config& c = *r.config;
  EXPECT_EQ(c.source, "full.yaml");
  EXPECT_EQ(c.daemon.interval, 2s);
  EXPECT_EQ(c.daemon.procfs, "/srv/fixture/proc");
  EXPECT_EQ(c.daemon.sysfs, "/srv/fixture/sys");
  EXPECT_EQ(c.daemon.record.path, "/var/lib/memtide/trace.jsonl");
  EXPECT_EQ(c.daemon.record.max_size_bytes, 16ULL << 20);
  EXPECT_EQ(c.daemon.record.files, 7u);
  EXPECT_EQ(c.daemon.log_level, LogLevel::debug);
  EXPECT_EQ(c.daemon.on_stop, OnStop::keep);
  EXPECT_TRUE(c.daemon.dry_run);
  EXPECT_EQ(c.libvirt.uri, "test:///default");
  EXPECT_EQ(c.libvirt.timeout, 2s);
  EXPECT_EQ(c.libvirt.keepalive_interval, 10s);
  EXPECT_EQ(c.libvirt.keepalive_count, 5u);
  EXPECT_EQ(c.libvirt.reconnect_max_backoff, 120s);
  EXPECT_EQ(c.libvirt.relist_interval, 30s);
  EXPECT_EQ(c.libvirt.stats_period, 0s);
  EXPECT_EQ(c.host.reserve_bytes, 3ULL << 29);
  EXPECT_EQ(c.host.swap_forecast.horizon, 300s);
  EXPECT_EQ(c.host.swap_forecast.window, 30s);
  EXPECT_DOUBLE_EQ(c.host.pressure.psi_some_avg10_ratio, 0.125);
  EXPECT_DOUBLE_EQ(c.host.pressure.psi_full_avg10_ratio, 0.03);
  EXPECT_EQ(c.ksm.mode, KsmMode::off);
  EXPECT_DOUBLE_EQ(c.ksm.min_savings_ratio, 0.07);
  EXPECT_DOUBLE_EQ(c.ksm.max_cpu_ratio, 0.15);
  EXPECT_EQ(c.ksm.full_scan_time, 90s);
  EXPECT_EQ(c.ksm.sleep, 50ms);
  EXPECT_EQ(c.ksm.advisor, KsmAdvisor::scan_time);
  EXPECT_TRUE(c.ksm.unmerge);
  EXPECT_EQ(c.ksm.merge_across_nodes, false);
  EXPECT_FALSE(c.ksm.scan.enabled);
  EXPECT_DOUBLE_EQ(c.ksm.scan.cpu_ratio, 0.025);
  EXPECT_EQ(c.ksm.scan.read_bytes_per_second, 64ULL << 20);
  EXPECT_EQ(c.ksm.scan.interval, 10min);
  ASSERT_EQ(c.classes.size(), 2u);
  EXPECT_EQ(c.classes[0].name, "db");
  EXPECT_EQ(c.classes[0].match_class, "database");
  EXPECT_FALSE(c.classes[0].match_name.has_value());
  EXPECT_FALSE(c.classes[0].balloon.enabled);
  EXPECT_EQ(c.classes[1].match_name, "web-*");
  EXPECT_EQ(c.classes[1].balloon.floor, SizeOrRatio{1ULL << 30});
  EXPECT_DOUBLE_EQ(c.classes[1].balloon.guest_free_ratio, 0.2);
  EXPECT_EQ(c.classes[1].balloon.shares, 250u);
  EXPECT_EQ(c.classes[1].balloon.max_step, SizeOrRatio{64ULL << 20});
  EXPECT_EQ(c.classes[1].balloon.deadband_bytes, 16ULL << 20);
  EXPECT_EQ(c.classes[1].balloon.hysteresis, 120s);
  EXPECT_TRUE(c.classes[1].balloon.grow_when_host_idle);
}

TEST(Loader, ShippedExampleIsValidAndMatchesTheDefaults) {
  const auto r = load_config_file(MEMTIDE_EXAMPLE_CONFIG);
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  const Config defaults = *default_config();
  EXPECT_EQ(r.config->daemon, defaults.daemon);
  EXPECT_EQ(r.config->libvirt, defaults.libvirt);
  EXPECT_EQ(r.config->host, defaults.host);
  EXPECT_EQ(r.config->ksm, defaults.ksm);
  ASSERT_EQ(r.config->classes.size(), 2u);
  EXPECT_EQ(r.config->classes[1].balloon, defaults.classes[0].balloon);
}

TEST(Loader, MissingFileIsAnError) {
  const auto r = load_config_file("/nonexistent/memtide.yaml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, "/nonexistent/memtide.yaml");
  EXPECT_NE(r.errors[0].message.find("cannot open"), std::string::npos);
}

TEST(Loader, DirectoryIsAnError) {
  const auto r = load_config_file("/");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.errors[0].message.find("not a regular file"), std::string::npos);
}

TEST(ConfigError, FormatsLikeACompiler) {
  EXPECT_EQ((ConfigError{"f.yaml", 3, 7, "a.b", "bad"}).to_string(), "f.yaml:3:7: a.b: bad");
  EXPECT_EQ((ConfigError{"f.yaml", 3, 7, "", "bad"}).to_string(), "f.yaml:3:7: bad");
  EXPECT_EQ((ConfigError{"f.yaml", 0, 0, "", "bad"}).to_string(), "f.yaml: bad");
}

}  // namespace
// balloon.min is balloon.floor's old name: still read, with a located warning, and the file is
// valid; the two together are an error.
TEST(ConfigLoader, TheOldNameOfTheFloorIsReadWithAWarning) {
  const auto r = load_config_string(
      "classes:\n  - name: all\n    match: {name: \"*\"}\n    balloon: {min: 2GiB}\n", "old.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_EQ(r.config->classes[0].balloon.floor, SizeOrRatio{2ULL << 30});
  ASSERT_EQ(r.warnings.size(), 1u);
  EXPECT_EQ(r.warnings[0].to_string(),
            "old.yaml:4:15: classes[0].balloon.min: min is deprecated: call it floor (same value)");
  const auto current = load_config_string(
      "classes:\n  - name: all\n    match: {name: \"*\"}\n    balloon: {floor: 2GiB}\n",
      "new.yaml");
  ASSERT_TRUE(current.ok());
  EXPECT_TRUE(current.warnings.empty());
  EXPECT_EQ(current.config->classes[0].balloon.floor, SizeOrRatio{2ULL << 30});
}

// alerts.alertmanager.labels: free label names, checked as Prometheus checks them.
TEST(ConfigLoader, AlertmanagerLabelsAreReadAndChecked) {
  const auto r = load_config_string(
      "alerts:\n  alertmanager:\n    url: http://am:9093\n"
      "    labels: {instance: \"h1.example.org:9847\", cluster: eu-1}\n",
      "labels.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_EQ(r.config->alerts.alertmanager_labels,
            (std::map<std::string, std::string>{{"cluster", "eu-1"},
                                                {"instance", "h1.example.org:9847"}}));
  const auto bad = load_config_string(
      "alerts:\n  alertmanager:\n    labels:\n      9lives: x\n      __meta: y\n      domain: z\n"
      "      ok: \"\"\n",
      "bad.yaml");
  ASSERT_EQ(bad.errors.size(), 4u);
  EXPECT_EQ(bad.errors[0].to_string(),
            "bad.yaml:4:7: alerts.alertmanager.labels.9lives: not a Prometheus label name "
            "(letters, digits and _, not starting with a digit or __)");
  EXPECT_EQ(bad.errors[1].key_path, "alerts.alertmanager.labels.__meta");
  EXPECT_EQ(bad.errors[2].to_string(),
            "bad.yaml:6:7: alerts.alertmanager.labels.domain: domain is set by memtided for each "
            "alert");
  EXPECT_EQ(bad.errors[3].to_string(),
            "bad.yaml:7:11: alerts.alertmanager.labels.ok: expected a value of 1 to 1024 bytes "
            "of UTF-8");
}

}  // namespace memtide::config
