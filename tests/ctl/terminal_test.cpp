// memtidectl's terminal text: untrusted names made harmless, widths in columns, cuts on
// character boundaries.
#include "terminal.hpp"

#include <cstdlib>

#include <gtest/gtest.h>

#include <memtide/core/text.hpp>

namespace memtide::ctl {
namespace {

TEST(Terminal, WidthIsCountedInColumns) {
  EXPECT_EQ(display_width("web-1"), 5u);
  EXPECT_EQ(display_width("caf\xC3\xA9"), 4u);               // é, precomposed
  EXPECT_EQ(display_width("cafe\xCC\x81"), 4u);              // e + combining acute
  EXPECT_EQ(display_width("\xE6\x95\xB0\xE6\x8D\xAE"), 4u);  // 数据: two wide characters
  EXPECT_EQ(display_width("\xF0\x9F\x90\xB3"), 2u);          // 🐳
  EXPECT_EQ(display_width("a\xE2\x80\x8B"
                          "b"),
            2u);                         // zero-width space
  EXPECT_EQ(display_width("\xFF"), 1u);  // invalid: shown as one U+FFFD
}

TEST(Terminal, ControlCharactersNeverReachTheTerminal) {
  // An escape sequence in a domain name would move the cursor or retitle the window.
  const auto shown = for_terminal(
      "evil\x1B]0;owned\x07name\x9B"
      "2J");
  EXPECT_EQ(shown.find('\x1B'), std::string::npos);
  EXPECT_EQ(shown.find('\x07'), std::string::npos);
  EXPECT_EQ(shown,
            "evil\xEF\xBF\xBD]0;owned\xEF\xBF\xBDname\xEF\xBF\xBD"
            "2J");
  EXPECT_EQ(for_terminal("tab\there"), "tab\xEF\xBF\xBDhere");
  EXPECT_EQ(for_terminal("\xE6\x95\xB0"), "\xE6\x95\xB0");  // printable text is kept
}

TEST(Terminal, FitCutsOnCharacterBoundaries) {
  EXPECT_EQ(fit("short", 10), "short");
  EXPECT_EQ(fit("exactly10!", 10), "exactly10!");
  EXPECT_EQ(fit("a longer explanation", 10), "a longer \xE2\x80\xA6");
  EXPECT_EQ(display_width(fit("a longer explanation", 10)), 10u);
  // Wide characters are never split, and the cut never passes the width.
  const std::string wide = "\xE6\x95\xB0\xE6\x8D\xAE\xE5\xBA\x93\xE5\x90\x8D";  // 数据库名
  const auto cut = fit(wide, 6);
  EXPECT_TRUE(is_valid_utf8(cut));
  EXPECT_LE(display_width(cut), 6u);
  EXPECT_EQ(cut, "\xE6\x95\xB0\xE6\x8D\xAE\xE2\x80\xA6");
  EXPECT_EQ(fit("anything", 0), "");
}

TEST(Terminal, ColumnsComeFromTheEnvironmentFirst) {
  setenv("COLUMNS", "72", 1);
  EXPECT_EQ(output_columns(), 72u);
  setenv("COLUMNS", "wide", 1);
  const auto fallback = output_columns();  // a terminal's width, or none when not a terminal
  EXPECT_TRUE(!fallback || *fallback > 0);
  unsetenv("COLUMNS");
}

}  // namespace
}  // namespace memtide::ctl
