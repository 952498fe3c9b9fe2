// UTF-8 validation, repair and cutting for text from outside.
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <memtide/core/text.hpp>

namespace memtide {
namespace {

TEST(Utf8, WellFormedSequencesAreKept) {
  const std::string s = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z";  // a é € 😀 z
  EXPECT_TRUE(is_valid_utf8(s));
  EXPECT_EQ(to_valid_utf8(s), s);
  EXPECT_EQ(utf8_sequence_length("\xF0\x9F\x98\x80"), 4u);
}

TEST(Utf8, IllFormedSequencesAreFoundAndReplaced) {
  const std::string kFffd = "\xEF\xBF\xBD";
  struct Case {
    std::string text;
    std::size_t first_invalid;
  };
  const Case cases[] = {
      {"ab\xFF", 2},            // never a UTF-8 byte
      {"\x80", 0},              // stray continuation byte
      {"x\xE2\x82", 1},         // truncated sequence
      {"\xC0\xAF", 0},          // overlong '/'
      {"\xE0\x80\xAF", 0},      // overlong, three bytes
      {"\xED\xA0\x80", 0},      // UTF-16 surrogate U+D800
      {"\xF4\x90\x80\x80", 0},  // above U+10FFFF
      {"ok\xC3(", 2},           // lead byte followed by ASCII
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(is_valid_utf8(c.text)) << c.text;
    EXPECT_EQ(find_invalid_utf8(c.text), c.first_invalid) << c.text;
    const std::string fixed = to_valid_utf8(c.text);
    EXPECT_TRUE(is_valid_utf8(fixed)) << c.text;
    EXPECT_NE(fixed.find(kFffd), std::string::npos) << c.text;
    // The strict serialiser accepts the repaired text.
    EXPECT_NO_THROW((void)nlohmann::json(fixed).dump()) << c.text;
  }
  EXPECT_EQ(to_valid_utf8("a\xFF"
                          "b"),
            "a" + kFffd + "b");
}

TEST(Utf8, ShortenCutsOnCharacterBoundaries) {
  std::string euros;
  for (int i = 0; i < 20; ++i) {
    euros += "\xE2\x82\xAC";  // 3 bytes each: 40 bytes fall inside the 14th
  }
  const std::string cut = shorten_utf8(euros, 40);
  EXPECT_TRUE(is_valid_utf8(cut));
  EXPECT_EQ(cut, euros.substr(0, 39) + "...");
  EXPECT_NO_THROW((void)nlohmann::json(cut).dump());
  EXPECT_EQ(shorten_utf8("short", 40), "short");
  EXPECT_EQ(shorten_utf8("exactly", 7), "exactly");
  EXPECT_EQ(shorten_utf8("exactly!", 7), "exactly...");
  EXPECT_TRUE(is_valid_utf8(shorten_utf8("\xFF\xFE\xFD", 40)));
  // A megabyte of input gives a bounded excerpt.
  EXPECT_LE(shorten_utf8(std::string(1 << 20, 'x'), 40).size(), 43u);
}

}  // namespace
}  // namespace memtide
