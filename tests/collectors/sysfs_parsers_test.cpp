#include <gtest/gtest.h>

#include <memtide/collectors/sysfs_parsers.hpp>

namespace memtide::collectors {
namespace {

TEST(ParseSysfsU64, AcceptsOneNumberWithOrWithoutNewline) {
  EXPECT_EQ(*parse_sysfs_u64("100\n", "f"), 100u);
  EXPECT_EQ(*parse_sysfs_u64("0", "f"), 0u);
  EXPECT_EQ(*parse_sysfs_u64("18446744073709551615\n", "f"), UINT64_MAX);
}

TEST(ParseSysfsU64, RejectsEverythingElse) {
  for (const char* bad :
       {"", "\n", "-1\n", "12 34\n", "1\n2\n", "abc", " 5\n", "18446744073709551616\n"}) {
    const auto r = parse_sysfs_u64(bad, "ksm/run");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.error().file, "ksm/run");
    EXPECT_EQ(r.error().line, 1);
  }
}

TEST(ParseSysfsI64, AcceptsNegative) {
  EXPECT_EQ(*parse_sysfs_i64("-4096\n", "f"), -4096);
  EXPECT_FALSE(parse_sysfs_i64("--1\n", "f").ok());
}

TEST(ParseSysfsChoice, ReturnsTheBracketedWord) {
  EXPECT_EQ(*parse_sysfs_choice("[none] scan-time\n", "f"), "none");
  EXPECT_EQ(*parse_sysfs_choice("none [scan-time]\n", "f"), "scan-time");
  EXPECT_EQ(*parse_sysfs_choice("always [madvise] never\n", "f"), "madvise");
}

TEST(ParseSysfsChoice, RejectsMissingOrSeveralChoices) {
  for (const char* bad : {"none scan-time\n", "[] none\n", "[none] [scan-time]\n", "[none\n"}) {
    EXPECT_FALSE(parse_sysfs_choice(bad, "f").ok()) << bad;
  }
}

}  // namespace
}  // namespace memtide::collectors
