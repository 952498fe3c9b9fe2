#include <gtest/gtest.h>

#include <memtide/config/units.hpp>

namespace memtide::config {
namespace {

TEST(ParseSize, BinaryUnits) {
  EXPECT_EQ(*parse_size("0"), 0u);
  EXPECT_EQ(*parse_size("4096B"), 4096u);
  EXPECT_EQ(*parse_size("1KiB"), 1024u);
  EXPECT_EQ(*parse_size("512MiB"), 512ULL << 20);
  EXPECT_EQ(*parse_size("2GiB"), 2ULL << 30);
  EXPECT_EQ(*parse_size("2 GiB"), 2ULL << 30);
  EXPECT_EQ(*parse_size("1.5GiB"), 3ULL << 29);
  EXPECT_EQ(*parse_size("1TiB"), 1ULL << 40);
  EXPECT_EQ(*parse_size("16777215TiB"), 16777215ULL << 40);  // largest whole TiB in 64 bits
}

TEST(ParseSize, Rejections) {
  const std::pair<const char*, const char*> cases[] = {
      {"", "starting with a digit"},    {"512", "needs a unit"},
      {"2G", "did you mean GiB?"},      {"2gb", "did you mean GiB?"},
      {"10MB", "did you mean MiB?"},    {"-1GiB", "starting with a digit"},
      {"1.GiB", "digits after '.'"},    {"1.5B", "cannot have a fraction"},
      {"16777216TiB", "too large"},     {"99999999999999999999999GiB", "too large"},
      {"5%", "absolute size"},          {"GiB", "starting with a digit"},
      {"0x10MiB", "unknown size unit"},
  };
  for (const auto& [text, part] : cases) {
    const auto r = parse_size(text);
    ASSERT_FALSE(r.ok()) << text;
    EXPECT_NE(r.error().message.find(part), std::string::npos) << text << ": " << r.error().message;
  }
}

TEST(ParsePercent, ReturnsRatio) {
  EXPECT_DOUBLE_EQ(*parse_percent("0%"), 0.0);
  EXPECT_DOUBLE_EQ(*parse_percent("20%"), 0.2);
  EXPECT_DOUBLE_EQ(*parse_percent("12.5%"), 0.125);
  EXPECT_DOUBLE_EQ(*parse_percent("100%"), 1.0);
  EXPECT_DOUBLE_EQ(*parse_percent("100.000%"), 1.0);
  for (const char* bad : {"20", "0.2", "100.001%", "-5%", "%", "abc%", "1e2%"}) {
    EXPECT_FALSE(parse_percent(bad).ok()) << bad;
  }
}

TEST(ParseDuration, Units) {
  using namespace std::chrono_literals;
  EXPECT_EQ(*parse_duration("250ms"), 250ms);
  EXPECT_EQ(*parse_duration("5s"), 5s);
  EXPECT_EQ(*parse_duration("1.5s"), 1500ms);
  EXPECT_EQ(*parse_duration("2m"), 120s);
  EXPECT_EQ(*parse_duration("1h"), 3600s);
  for (const char* bad : {"5", "5 sec", "5S", "-1s", "s", "1.5", "9999999999999999999h"}) {
    EXPECT_FALSE(parse_duration(bad).ok()) << bad;
  }
}

TEST(SizeOrRatio, ResolvesAgainstReference) {
  const auto pct = parse_size_or_percent("30%");
  ASSERT_TRUE(pct.ok());
  EXPECT_TRUE(pct->is_ratio());
  EXPECT_EQ(pct->resolve(1000), 300u);
  const auto abs = parse_size_or_percent("1GiB");
  ASSERT_TRUE(abs.ok());
  EXPECT_FALSE(abs->is_ratio());
  EXPECT_EQ(abs->resolve(12345), 1ULL << 30);
  EXPECT_FALSE(parse_size_or_percent("30").ok());
}

TEST(Format, SizesAndDurations) {
  using namespace std::chrono_literals;
  EXPECT_EQ(format_size(0), "0 B");
  EXPECT_EQ(format_size(2ULL << 30), "2 GiB");
  EXPECT_EQ(format_size(3ULL << 29), "1.5 GiB");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(120s), "2m");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(1h), "1h");
}

}  // namespace
}  // namespace memtide::config
