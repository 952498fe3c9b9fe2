// The loader on valid input: defaults, the shipped example, and every key's effect.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <regex>

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
  pressure: {psi_some_avg10: 12.5%, psi_full_avg10: 3%, swap_rate: 2MiB/s}
ksm:
  mode: off
  min_savings: 7%
  max_cpu: 15%
  full_scan_time: 90s
  sleep: 50ms
  advisor: scan-time
  unmerge: true
  merge_across_nodes: false
  scan: {enabled: false, max_cpu: 2.5%, max_read_rate: 64MiB/s, interval: 10m}
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
  EXPECT_TRUE(r.warnings.empty()) << r.warnings.front().to_string();
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
  EXPECT_EQ(c.host.pressure.swap_rate_bytes_per_second, 2ULL << 20);
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

// The conffile shows every setting commented out: as shipped it holds no setting at all.
TEST(Loader, TheShippedConffileGivesTheDefaults) {
  const auto r = load_config_with_dropins(MEMTIDE_CONFFILE);
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_FALSE(r.config->source_has_settings);
  EXPECT_TRUE(r.warnings.empty());
  Config expected = *default_config();
  expected.source = MEMTIDE_CONFFILE;
  EXPECT_EQ(*r.config, expected);
}

// What the conffile shows is true: with its settings uncommented ('#' directly before a key at
// the start of a line) it is valid, warns of nothing, and gives exactly the defaults; and it
// shows every key docs/configuration.md's table documents.
TEST(Loader, TheShippedConffileShowsEveryDefault) {
  std::ifstream in(MEMTIDE_CONFFILE);
  ASSERT_TRUE(in);
  const std::regex setting(R"(^#([a-z]|  +[^ #]))");
  std::string uncommented;
  int settings = 0;
  for (std::string line; std::getline(in, line);) {
    if (std::regex_search(line, setting)) {
      line.erase(0, 1);
      ++settings;
    }
    uncommented += line + "\n";
  }
  EXPECT_GT(settings, 50);
  const auto r = load_config_string(uncommented, "uncommented.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_TRUE(r.warnings.empty()) << r.warnings.front().to_string();
  Config expected = *default_config();
  expected.source = "uncommented.yaml";
  expected.source_has_settings = true;
  EXPECT_EQ(*r.config, expected);

  std::ifstream readme_file(MEMTIDE_DOCS "/configuration.md");
  const std::string readme((std::istreambuf_iterator<char>(readme_file)),
                           std::istreambuf_iterator<char>());
  const std::regex row(R"(\n\| `((daemon|libvirt|host|ksm|metrics|alerts)\.[a-z_.]+)` \|)");
  int keys = 0;
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), row);
       it != std::sregex_iterator(); ++it) {
    const std::string key = (*it)[1];
    ++keys;
    // The last part of the key, at the start of a setting line.
    const std::string leaf = key.substr(key.rfind('.') + 1);
    EXPECT_NE(uncommented.find(" " + leaf + ":"), std::string::npos)
        << key << " is documented in docs/configuration.md but not shown in the conffile";
  }
  EXPECT_GT(keys, 40);
}

// The drop-ins in config/examples/ are valid beside the shipped conffile.
TEST(Loader, TheShippedExamplesAreValidDropIns) {
  int examples = 0;
  for (const auto& entry : std::filesystem::directory_iterator(MEMTIDE_EXAMPLES_DIR)) {
    char tmpl[] = "/tmp/memtide-examples-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    const std::filesystem::path dir = tmpl;
    std::filesystem::copy_file(MEMTIDE_CONFFILE, dir / "memtide.yaml");
    std::filesystem::create_directory(dir / "memtide.d");
    std::filesystem::copy_file(entry.path(), dir / "memtide.d" / entry.path().filename());
    const auto r = load_config_with_dropins((dir / "memtide.yaml").string());
    EXPECT_TRUE(r.ok()) << entry.path() << ": " << r.errors.front().to_string();
    EXPECT_TRUE(r.warnings.empty()) << entry.path();
    if (r.ok()) {
      EXPECT_EQ(r.config->dropins.size(), 1u);
    }
    std::filesystem::remove_all(dir);
    ++examples;
  }
  EXPECT_GE(examples, 2);
}

// The drop-in a first package installation writes turns the dry run on beside the shipped
// conffile, and changes nothing else; a later drop-in can turn it off again.
TEST(Loader, TheObserveOnlyDropInOnlyTurnsOnTheDryRun) {
  char tmpl[] = "/tmp/memtide-observe-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path dir = tmpl;
  std::filesystem::copy_file(MEMTIDE_CONFFILE, dir / "memtide.yaml");
  std::filesystem::create_directory(dir / "memtide.d");
  std::filesystem::copy_file(MEMTIDE_OBSERVE_DROPIN, dir / "memtide.d" / "00-observe-only.yaml");
  const auto observe = load_config_with_dropins((dir / "memtide.yaml").string());
  ASSERT_TRUE(observe.ok()) << observe.errors.front().to_string();
  EXPECT_TRUE(observe.warnings.empty());
  EXPECT_TRUE(observe.config->daemon.dry_run);
  Config expected = *observe.config;
  expected.daemon.dry_run = false;
  Config defaults = *default_config();
  defaults.source = expected.source;
  defaults.dropins = expected.dropins;
  defaults.source_has_settings = expected.source_has_settings;
  EXPECT_EQ(expected, defaults);
  std::ofstream(dir / "memtide.d" / "50-act.yaml") << "daemon: {dry_run: false}\n";
  const auto act = load_config_with_dropins((dir / "memtide.yaml").string());
  ASSERT_TRUE(act.ok());
  EXPECT_FALSE(act.config->daemon.dry_run);
  std::filesystem::remove_all(dir);
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

// Rates are written per second ("256MiB/s"); the bare size that was the spelling before is read
// the same, with a warning. ksm.scan.cpu is now max_cpu, like ksm.max_cpu.
TEST(ConfigLoader, RatesArePerSecondAndTheScanCpuIsAMaximum) {
  const auto r = load_config_string(
      "host:\n  pressure: {swap_rate: 4MiB}\nksm:\n  scan:\n    cpu: 2%\n"
      "    max_read_rate: 128MiB\n",
      "old.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  EXPECT_EQ(r.config->host.pressure.swap_rate_bytes_per_second, 4ULL << 20);
  EXPECT_EQ(r.config->ksm.scan.read_bytes_per_second, 128ULL << 20);
  EXPECT_DOUBLE_EQ(r.config->ksm.scan.cpu_ratio, 0.02);
  ASSERT_EQ(r.warnings.size(), 3u);
  EXPECT_EQ(r.warnings[0].to_string(),
            "old.yaml:2:25: host.pressure.swap_rate: a rate is written per second: 4MiB/s");
  EXPECT_EQ(r.warnings[1].to_string(),
            "old.yaml:5:5: ksm.scan.cpu: cpu is deprecated: call it max_cpu (same value)");
  EXPECT_EQ(r.warnings[2].to_string(),
            "old.yaml:6:20: ksm.scan.max_read_rate: a rate is written per second: 128MiB/s");
  const auto bad = load_config_string("host:\n  pressure: {swap_rate: 4MiB/h}\n", "bad.yaml");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0].key_path, "host.pressure.swap_rate");
}

}  // namespace memtide::config
