// Every file in tests/fixtures/config/invalid states the errors it must produce in comment lines
//   # expect: LINE:COLUMN KEY.PATH: part of the message
// (KEY.PATH "-" for errors without a key). The loader must report exactly those errors, at
// exactly those positions; the expectations are written by hand, not recorded from the loader.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>

#include <gtest/gtest.h>

#include <memtide/config/loader.hpp>

namespace memtide::config {
namespace {

struct Expectation {
  int line;
  int column;
  std::string key_path;
  std::string message_part;
};

std::vector<std::string> corpus() {
  std::vector<std::string> files;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::string(MEMTIDE_FIXTURES) + "/config/invalid")) {
    files.push_back(entry.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<Expectation> expectations(const std::string& path) {
  static const std::regex kExpect(R"(^# expect: (\d+):(\d+) (\S+): (.*)$)");
  std::vector<Expectation> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::smatch m;
    if (std::regex_match(line, m, kExpect)) {
      out.push_back({std::stoi(m[1]), std::stoi(m[2]), m[3] == "-" ? "" : m[3].str(), m[4]});
    }
  }
  return out;
}

class InvalidConfig : public testing::TestWithParam<std::string> {};

TEST_P(InvalidConfig, ReportsExactlyTheExpectedErrors) {
  const auto& path = GetParam();
  const auto expected = expectations(path);
  ASSERT_FALSE(expected.empty()) << path << " has no '# expect:' line";
  const auto result = load_config_file(path);
  EXPECT_FALSE(result.ok());
  EXPECT_EQ(result.config, nullptr);
  std::string reported;
  for (const auto& e : result.errors) {
    reported += "\n  " + e.to_string();
  }
  ASSERT_EQ(result.errors.size(), expected.size()) << "reported:" << reported;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const auto& want = expected[i];
    const auto& got = result.errors[i];
    EXPECT_EQ(got.file, path);
    EXPECT_EQ(got.line, want.line) << got.to_string();
    EXPECT_EQ(got.column, want.column) << got.to_string();
    EXPECT_EQ(got.key_path, want.key_path) << got.to_string();
    EXPECT_NE(got.message.find(want.message_part), std::string::npos)
        << "wanted '" << want.message_part << "' in: " << got.to_string();
  }
}

INSTANTIATE_TEST_SUITE_P(Corpus, InvalidConfig, testing::ValuesIn(corpus()), [](const auto& p) {
  return std::filesystem::path(p.param).stem().string();
});

TEST(InvalidConfigCorpus, HasAtLeastThirtyFiles) {
  EXPECT_GE(corpus().size(), 30u);
}

}  // namespace
}  // namespace memtide::config
