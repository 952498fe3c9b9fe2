// memtidectl's terminal text: untrusted names made harmless, widths in columns, cuts on
// character boundaries.
#include "terminal.hpp"

#include <clocale>
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

// Bidirectional controls in a domain name could reorder what the operator reads ("Trojan
// Source"): they, and the other invisible format characters, are shown as escapes. They once
// reached the terminal raw.
TEST(Terminal, FormatCharactersAreShownAsEscapes) {
  EXPECT_EQ(for_terminal("web\xE2\x80\xAE"
                         "1-bd"),
            "web<U+202E>1-bd");  // right-to-left override
  EXPECT_EQ(for_terminal("\xE2\x81\xA6"
                         "a"
                         "\xE2\x81\xA9"),
            "<U+2066>a<U+2069>");  // isolate
  EXPECT_EQ(for_terminal("a\xE2\x80\x8F"
                         "b"),
            "a<U+200F>b");  // right-to-left mark
  EXPECT_EQ(for_terminal("a\xC2\xAD"
                         "b"),
            "a<U+00AD>b");  // soft hyphen
  EXPECT_EQ(for_terminal("a\xE2\x80\xA8"
                         "b"),
            "a<U+2028>b");                                   // line separator
  EXPECT_EQ(for_terminal("\xF3\xA0\x80\x81"), "<U+E0001>");  // language tag
  EXPECT_EQ(for_terminal("caf\xC3\xA9 \xF0\x9F\x9A\x80"), "caf\xC3\xA9 \xF0\x9F\x9A\x80");
}

// Widths come from the C library's Unicode data, not a hand-written subset of wide ranges,
// whatever locale memtidectl runs in.
TEST(Terminal, WidthsFollowTheCLibraryInAnyLocale) {
  EXPECT_EQ(display_width("\xF0\x9F\x9A\x80"), 2u);  // U+1F680 rocket, missed by the old subset
  EXPECT_EQ(display_width("\xF0\x9F\xAB\x80"), 2u);  // U+1FAC0 anatomical heart (Unicode 13)
  EXPECT_EQ(display_width("\xE1\x85\xA0"), 0u);      // U+1160 Hangul jungseong filler
  std::setlocale(LC_CTYPE, "C");
  EXPECT_EQ(display_width("\xE6\x95\xB0"), 2u);
}

TEST(Terminal, LinesKeepTheirEnds) {
  EXPECT_EQ(lines_for_terminal("a\x1B\nb\xE2\x80\xAE\n"), "a\xEF\xBF\xBD\nb<U+202E>\n");
  EXPECT_EQ(lines_for_terminal("x"), "x");
  EXPECT_EQ(lines_for_terminal("\n\n"), "\n\n");
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
