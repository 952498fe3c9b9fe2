#include "options.hpp"

#include <gtest/gtest.h>

namespace memtide::daemon {
namespace {

TEST(Options, DefaultsRunWithTheSystemConfig) {
  const auto p = parse_options({});
  ASSERT_TRUE(p.error.empty());
  EXPECT_EQ(p.options.mode, Options::Mode::run);
  EXPECT_EQ(p.options.config_path, "/etc/memtide/memtide.yaml");
  EXPECT_FALSE(p.options.config_path_given);
}

TEST(Options, AllFlags) {
  const auto p = parse_options(
      {"--config", "/x.yaml", "--once", "--procfs=/p", "--sysfs", "/s", "--log-target", "stderr"});
  ASSERT_TRUE(p.error.empty()) << p.error;
  EXPECT_EQ(p.options.mode, Options::Mode::once);
  EXPECT_EQ(p.options.config_path, "/x.yaml");
  EXPECT_TRUE(p.options.config_path_given);
  EXPECT_EQ(p.options.overrides.procfs, "/p");
  EXPECT_EQ(p.options.overrides.sysfs, "/s");
  EXPECT_EQ(p.options.log_target, Logger::Target::stderr_only);
}

TEST(Options, CheckConfigTakesTheFile) {
  const auto p = parse_options({"--check-config", "f.yaml"});
  EXPECT_EQ(p.options.mode, Options::Mode::check_config);
  EXPECT_EQ(p.options.config_path, "f.yaml");
}

TEST(Options, UsageErrors) {
  for (const auto& args : std::vector<std::vector<std::string>>{
           {"--bogus"}, {"--config"}, {"--log-target", "syslog"}, {"--once=yes"}, {"extra"}}) {
    EXPECT_FALSE(parse_options(args).error.empty()) << args[0];
  }
}

}  // namespace
}  // namespace memtide::daemon
