// Input crafted to crash, exhaust or hang a YAML loader. Each must produce an error (with a
// position where one exists) and return promptly; ASan/UBSan builds run these too.
#include <cstdio>
#include <fstream>
#include <random>

#include <gtest/gtest.h>
#include <unistd.h>

#include <memtide/config/loader.hpp>
#include <memtide/core/text.hpp>

namespace memtide::config {
namespace {

TEST(HostileInput, HundredThousandNestedFlowSequences) {
  const std::string text = "daemon: " + std::string(100'000, '[') + std::string(100'000, ']');
  const auto r = load_config_string(text, "deep.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].line, 1);
  EXPECT_GT(r.errors[0].column, 0);
}

TEST(HostileInput, HundredThousandNestedFlowMappings) {
  std::string text;
  for (int i = 0; i < 100'000; ++i) {
    text += "{a: ";
  }
  text += "1";
  text += std::string(100'000, '}');
  const auto r = load_config_string(text, "deep.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].line, 1);
}

TEST(HostileInput, HundredThousandNestedBlockSequences) {
  std::string text;
  for (int i = 0; i < 100'000; ++i) {
    text += "- ";
  }
  text += "x\n";
  const auto r = load_config_string(text, "deep.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].line, 1);
}

TEST(HostileInput, FiftyMegabyteFileIsRejectedUnparsed) {
  char path[] = "/tmp/memtide-big-XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    const std::string line = "# padding padding padding padding padding padding padding\n";
    for (std::size_t written = 0; written < 50u << 20; written += line.size()) {
      out << line;
    }
  }
  const auto r = load_config_file(path);
  std::remove(path);
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].message.find("at most 1 MiB"), std::string::npos)
      << r.errors[0].to_string();
}

TEST(HostileInput, BinaryGarbage) {
  std::mt19937 rng(1234);
  for (int round = 0; round < 50; ++round) {
    std::string garbage(4096, '\0');
    for (auto& c : garbage) {
      c = static_cast<char>(rng() & 0xff);
    }
    const auto r = load_config_string(garbage, "garbage.bin");
    EXPECT_FALSE(r.ok());
  }
}

TEST(HostileInput, BinaryWithoutNulBytes) {
  std::mt19937 rng(99);
  int rejected = 0;
  for (int round = 0; round < 200; ++round) {
    std::string garbage(512, 'x');
    for (auto& c : garbage) {
      c = static_cast<char>(1 + rng() % 255);
    }
    const auto r = load_config_string(garbage, "garbage.bin");
    rejected += r.ok() ? 0 : 1;
    for (const auto& e : r.errors) {
      EXPECT_FALSE(e.message.empty());
    }
  }
  EXPECT_EQ(rejected, 200);
}

TEST(HostileInput, NulBytePositionIsReported) {
  const auto r = load_config_string(std::string("daemon:\n  inter\0val: 5s\n", 25), "nul.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[0].column, 8);
}

TEST(HostileInput, TabsInIndentationAreReportedPerLine) {
  const auto r = load_config_string("daemon:\n\tinterval: 5s\n\tlog_level: info\n", "tabs.yaml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[1].line, 3);
}

TEST(HostileInput, TabsInsideValuesAreFine) {
  const auto r = load_config_string("daemon:\n  interval:\t5s\n", "tabs.yaml");
  ASSERT_TRUE(r.ok()) << r.errors.front().to_string();
}

TEST(HostileInput, DuplicateKeysAtEveryLevel) {
  const auto r = load_config_string(
      "ksm:\n  mode: on\nksm:\n  mode: off\n"
      "classes:\n  - name: a\n    name: b\n    match: {name: x, name: y}\n",
      "dup.yaml");
  ASSERT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 3u);
  EXPECT_EQ(r.errors[0].line, 3);
  EXPECT_EQ(r.errors[0].key_path, "ksm");
  EXPECT_EQ(r.errors[1].line, 7);
  EXPECT_EQ(r.errors[1].key_path, "classes[0].name");
  EXPECT_EQ(r.errors[2].line, 8);
  EXPECT_EQ(r.errors[2].key_path, "classes[0].match.name");
}

TEST(HostileInput, AliasBombIsNotExpanded) {
  // "Billion laughs": aliases must not be expanded into a huge structure.
  std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 20; ++i) {
    text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) {
      text += (j ? ", *a" : "*a") + std::to_string(i - 1);
    }
    text += "]\n";
  }
  const auto r = load_config_string(text, "bomb.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors.size(), 20u);  // 20 unknown top-level keys, nothing more
}

TEST(HostileInput, ManyErrorsAreCapped) {
  std::string text = "daemon:\n";
  for (int i = 0; i < 5000; ++i) {
    text += "  k" + std::to_string(i) + ": 1\n";
  }
  const auto r = load_config_string(text, "many.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors.size(), 101u);
  EXPECT_NE(r.errors.back().message.find("4900 further errors"), std::string::npos);
}

TEST(HostileInput, VeryLongScalar) {
  const auto r =
      load_config_string("host:\n  reserve: " + std::string(500'000, '9') + "GiB\n", "long.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[0].column, 12);
}

// yaml-cpp passes invalid UTF-8 through; a URI holding it once reached the strict JSON writer of
// the trace and ended the daemon. It is refused at load, located.
TEST(HostileInput, InvalidUtf8IsALocatedError) {
  const auto r = load_config_string("libvirt:\n  uri: \"qemu:///sys\xFFtem\"\n", "bad.yaml");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.errors[0].line, 2);
  EXPECT_EQ(r.errors[0].column, 20);
  EXPECT_NE(r.errors[0].message.find("UTF-8"), std::string::npos);
  // Columns count characters, not bytes.
  const auto r2 = load_config_string("# \xC3\xA9\xC3\xA9\n\xE2\x82", "bad.yaml");
  ASSERT_FALSE(r2.ok());
  EXPECT_EQ(r2.errors[0].line, 2);
  EXPECT_EQ(r2.errors[0].column, 1);
  EXPECT_TRUE(load_config_string("# caf\xC3\xA9 \xE2\x82\xAC\n", "ok.yaml").ok());
}

// Error messages quote at most an excerpt of the value, cut on a character boundary.
TEST(HostileInput, EchoedValuesAreShortValidUtf8) {
  std::string euros;
  for (int i = 0; i < 300'000; ++i) {
    euros += "\xE2\x82\xAC";
  }
  for (const std::string key : {"  reserve: 1", "  swap_forecast: {horizon: 1"}) {
    const auto r = load_config_string("host:\n" + key + euros + "\n", "long.yaml");
    ASSERT_FALSE(r.ok());
    const std::string& m = r.errors[0].message;
    EXPECT_LT(m.size(), 200u) << key;
    EXPECT_TRUE(is_valid_utf8(m)) << key;
  }
}

}  // namespace
}  // namespace memtide::config
