// Drop-ins (memtide.d/*.yaml beside the main file) on real files in a temporary directory: the
// merge rules, the order, what is skipped, and errors that name the file they are in.
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <unistd.h>

#include <memtide/config/files.hpp>
#include <memtide/config/loader.hpp>

namespace memtide::config {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

class DropIns : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/memtide-dropins-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    main_ = (dir_ / "memtide.yaml").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void write(const fs::path& path, const std::string& text) {
    fs::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  void dropin(const std::string& name, const std::string& text) {
    write(dir_ / "memtide.d" / name, text);
  }

  fs::path dir_;
  std::string main_;
};

TEST_F(DropIns, SectionsMergeKeyByKeyInNameOrderAndListsAreReplacedWhole) {
  write(main_,
        "daemon: {interval: 2s, dry_run: true}\n"
        "ksm: {mode: auto, sleep: 50ms}\n"
        "classes:\n  - {name: all, match: {name: \"*\"}, balloon: {floor: 1GiB}}\n");
  dropin("10-ksm.yaml", "ksm: {mode: off}\nalerts: {alertmanager: {url: http://am:9093}}\n");
  dropin("20-classes.yaml",
         "daemon: {interval: 3s}\n"
         "classes:\n  - {name: db, match: {class: database}, balloon: {enabled: false}}\n"
         "  - {name: rest, match: {name: \"*\"}}\n");
  // Not drop-ins: hidden files, editor backups, package leftovers, other extensions.
  dropin(".30-hidden.yaml", "ksm: {mode: on}\n");
  dropin("40-backup.yaml~", "ksm: {mode: on}\n");
  dropin("50-old.yaml.dpkg-old", "ksm: {mode: on}\n");
  dropin("README", "not yaml at all: [");

  const auto r = load_config_with_dropins(main_);
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
  const Config& c = *r.config;
  EXPECT_EQ(c.daemon.interval, 3s);     // 20- replaced the main file's
  EXPECT_TRUE(c.daemon.dry_run);        // kept: no drop-in gives it
  EXPECT_EQ(c.ksm.mode, KsmMode::off);  // 10- replaced it; the skipped files did not
  EXPECT_EQ(c.ksm.sleep, 50ms);         // the rest of the section is the main file's
  EXPECT_EQ(c.alerts.alertmanager_url, "http://am:9093");
  ASSERT_EQ(c.classes.size(), 2u);  // the list is 20-'s, not appended to the main file's
  EXPECT_EQ(c.classes[0].name, "db");
  EXPECT_EQ(c.source, main_);
  EXPECT_EQ(c.dropins, (std::vector<std::string>{(dir_ / "memtide.d/10-ksm.yaml").string(),
                                                 (dir_ / "memtide.d/20-classes.yaml").string()}));
}

TEST_F(DropIns, TheLastInByteOrderWins) {
  write(main_, "ksm: {mode: auto}\n");
  dropin("9-late.yaml", "ksm: {mode: on}\n");
  dropin("10-early.yaml", "ksm: {mode: off}\n");  // "10" sorts before "9"
  const auto r = load_config_with_dropins(main_);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.config->ksm.mode, KsmMode::on);
}

TEST_F(DropIns, EachErrorNamesItsFileAndLineAndEveryFileIsChecked) {
  write(main_, "daemon: {interval: 2s}\n");
  dropin("10-a.yaml", "ksm:\n  mode: sometimes\n");
  dropin("20-b.yaml", "# comment\nhost:\n  reserve: 12\n");
  dropin("30-c.yaml", "metrics: {listen: \"\"}\n");
  const auto r = load_config_with_dropins(main_);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].file, (dir_ / "memtide.d/10-a.yaml").string());
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[0].key_path, "ksm.mode");
  EXPECT_EQ(r.errors[1].file, (dir_ / "memtide.d/20-b.yaml").string());
  EXPECT_EQ(r.errors[1].line, 3);
  std::ostringstream out;
  EXPECT_FALSE(check_config_file(main_, out));
  EXPECT_NE(out.str().find("2 errors in " + main_ + " and its drop-ins"), std::string::npos)
      << out.str();
}

// Rules that span keys hold for the merged result: a drop-in that slows the tick down past the
// forecast window is refused, at the drop-in.
TEST_F(DropIns, ConsistencyIsCheckedOnWhatEachDropInMakes) {
  write(main_, "daemon: {interval: 5s}\nhost: {swap_forecast: {window: 30s}}\n");
  dropin("10-slow.yaml", "daemon:\n  interval: 20s\n");
  const auto r = load_config_with_dropins(main_);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].file, (dir_ / "memtide.d/10-slow.yaml").string());
  EXPECT_EQ(r.errors[0].key_path, "host.swap_forecast.window");
}

TEST_F(DropIns, WithoutTheMainFileTheDefaultsAndTheDropInsApplyWhereThatIsAllowed) {
  dropin("10-dry.yaml", "daemon: {dry_run: true}\n");
  const auto started = load_config_with_dropins(main_, /*main_optional=*/true);
  ASSERT_TRUE(started.ok()) << started.errors.front().to_string();
  EXPECT_TRUE(started.config->daemon.dry_run);
  EXPECT_EQ(started.config->source, "");
  EXPECT_EQ(started.config->ksm.mode, default_config()->ksm.mode);
  // A main file named explicitly must exist.
  const auto named = load_config_with_dropins(main_);
  ASSERT_FALSE(named.ok());
  EXPECT_NE(named.errors[0].message.find("cannot open"), std::string::npos);
}

TEST_F(DropIns, AnEmptyDropInIsNoReasonToRefuseAReload) {
  write(main_, "daemon: {interval: 2s}\n");
  dropin("10-empty.yaml", "# nothing yet\n");
  const auto running = load_config_with_dropins(main_);
  ASSERT_TRUE(running.ok());
  const auto r = reload_config_file(main_, *running.config);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.config->daemon.interval, 2s);
  std::ostringstream out;
  EXPECT_TRUE(check_config_file(main_, out));
  EXPECT_EQ(out.str(), main_ + " and 1 drop-in in " + (dir_ / "memtide.d").string() + ": valid\n");
}

// The shipped conffile has only comments and the settings live in drop-ins: reloads work. A main
// file that had settings and now has none is refused (caught mid-write).
TEST_F(DropIns, AMainFileOfCommentsReloadsButOneThatLostItsSettingsDoesNot) {
  write(main_, "# every default, commented out\n# daemon:\n#   interval: 10s\n");
  dropin("10-site.yaml", "daemon: {interval: 2s}\n");
  const auto running = load_config_with_dropins(main_);
  ASSERT_TRUE(running.ok());
  EXPECT_FALSE(running.config->source_has_settings);
  const auto reloaded = reload_config_file(main_, *running.config);
  ASSERT_TRUE(reloaded.ok()) << reloaded.errors.front().to_string();
  EXPECT_EQ(reloaded.config->daemon.interval, 2s);

  write(main_, "ksm: {mode: off}\n");
  const auto with_settings = load_config_with_dropins(main_);
  ASSERT_TRUE(with_settings.ok());
  write(main_, "# daemon:\n");
  const auto truncated = reload_config_file(main_, *with_settings.config);
  ASSERT_FALSE(truncated.ok());
  EXPECT_NE(truncated.errors[0].message.find("holds no settings"), std::string::npos);
}

TEST_F(DropIns, TooManyAreRefused) {
  write(main_, "daemon: {interval: 2s}\n");
  for (std::size_t i = 0; i <= kMaxDropIns; ++i) {
    dropin(std::to_string(1000 + i) + ".yaml", "");
  }
  const auto r = load_config_with_dropins(main_);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("101 drop-ins; at most 100"), std::string::npos);
}

// A configuration names commands memtided runs (alerts.exec): a file or drop-in directory
// someone else may write is refused, located, on what is opened (a symlink is judged by what it
// leads to). Both attacks were once loaded silently by root's memtided.
TEST_F(DropIns, FilesAndDirectoriesOthersMayWriteAreRefused) {
  write(main_, "daemon: {interval: 2s}\n");
  dropin("50-exec.yaml", "alerts: {exec: {command: /bin/true}}\n");
  ASSERT_TRUE(load_config_with_dropins(main_).ok());
  const auto refused = [&](const std::string& where, const std::string& why) {
    const auto r = load_config_with_dropins(main_);
    EXPECT_FALSE(r.ok());
    bool found = false;
    for (const auto& e : r.errors) {
      found = found || (e.file == where && e.message.find(why) != std::string::npos);
    }
    EXPECT_TRUE(found) << where << ": " << why << "; got "
                       << (r.errors.empty() ? "no error" : r.errors[0].to_string());
  };
  const auto exec = (dir_ / "memtide.d" / "50-exec.yaml").string();
  fs::permissions(exec, fs::perms(0666));
  refused(exec, "writable by others (mode 0666)");
  fs::permissions(exec, fs::perms(0620));
  refused(exec, "writable by its group (mode 0620)");
  fs::permissions(exec, fs::perms(0644));
  fs::permissions(dir_ / "memtide.d", fs::perms(0777));
  refused((dir_ / "memtide.d").string(), "drop-in directory writable by others");
  fs::permissions(dir_ / "memtide.d", fs::perms(0755));
  fs::permissions(main_, fs::perms(0666));
  refused(main_, "writable by others");
  EXPECT_FALSE(load_config_file(main_).ok());  // alone too (memtidectl, --check-config)
  fs::permissions(main_, fs::perms(0600));
  ASSERT_TRUE(load_config_with_dropins(main_).ok());
  if (geteuid() != 0) {
    GTEST_SKIP() << "the ownership cases need root (chown)";
  }
  // A drop-in symlinked to a file owned by nobody.
  const auto foreign = (dir_ / "foreign.yaml").string();
  write(foreign, "alerts: {exec: {command: /bin/true}}\n");
  ASSERT_EQ(chown(foreign.c_str(), 65534, 65534), 0);
  fs::create_symlink(foreign, dir_ / "memtide.d" / "60-link.yaml");
  refused((dir_ / "memtide.d" / "60-link.yaml").string(), "owned by uid 65534");
  fs::remove(dir_ / "memtide.d" / "60-link.yaml");
  ASSERT_EQ(chown((dir_ / "memtide.d").c_str(), 65534, 65534), 0);
  refused((dir_ / "memtide.d").string(), "owned by uid 65534");
}

TEST(DropInDirectory, IsNamedAfterTheMainFile) {
  EXPECT_EQ(dropin_directory("/etc/memtide/memtide.yaml"), "/etc/memtide/memtide.d");
  EXPECT_EQ(dropin_directory("/srv/host-a.yaml"), "/srv/host-a.d");
  EXPECT_EQ(dropin_directory("relative.yaml"), "relative.d");
}

}  // namespace
}  // namespace memtide::config
