// The command-line grammar both programs share.
#include <gtest/gtest.h>

#include <memtide/core/command_line.hpp>

namespace memtide {
namespace {

TEST(CommandLine, ValuesJoinedOrFollowing) {
  CommandLine line(
      {"status", "--vm=web-*", "--sort", "held", "-c", "f.yaml", "--json=yes", "--config="});
  auto w = line.next();
  EXPECT_FALSE(w.is_option());
  EXPECT_EQ(w.name, "status");
  w = line.next();
  EXPECT_EQ(w.name, "--vm");
  EXPECT_EQ(line.value(), "web-*");
  EXPECT_FALSE(line.unused_inline_value());
  w = line.next();
  EXPECT_EQ(w.name, "--sort");
  EXPECT_EQ(line.value(), "held");  // the following word, consumed
  w = line.next();
  EXPECT_EQ(w.name, "-c");  // short options take the following word only
  EXPECT_EQ(line.value(), "f.yaml");
  w = line.next();
  EXPECT_EQ(w.name, "--json");
  EXPECT_EQ(w.text, "--json=yes");
  EXPECT_TRUE(line.unused_inline_value());  // a flag given a value: the caller refuses it
  w = line.next();
  EXPECT_EQ(line.value(), "");  // "--config=": an empty value, not the next word
  EXPECT_TRUE(line.done());
}

TEST(CommandLine, AMissingValueIsNone) {
  CommandLine line({"--trace"});
  line.next();
  EXPECT_EQ(line.value(), std::nullopt);
  EXPECT_TRUE(line.done());
}

}  // namespace
}  // namespace memtide
