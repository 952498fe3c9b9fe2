#include "terminal.hpp"

#include <algorithm>
#include <clocale>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cwchar>
#include <iostream>

#include <locale.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <memtide/core/text.hpp>

namespace memtide::ctl {

namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

// The code point of the well-formed `n`-byte sequence at the start of `s`.
std::uint32_t decode(std::string_view s, std::size_t n) {
  const auto b = [&s](std::size_t i) {
    return static_cast<std::uint32_t>(static_cast<std::uint8_t>(s[i]));
  };
  switch (n) {
    case 1:
      return b(0);
    case 2:
      return ((b(0) & 0x1F) << 6) | (b(1) & 0x3F);
    case 3:
      return ((b(0) & 0x0F) << 12) | ((b(1) & 0x3F) << 6) | (b(2) & 0x3F);
    default:
      return ((b(0) & 0x07) << 18) | ((b(1) & 0x3F) << 12) | ((b(2) & 0x3F) << 6) | (b(3) & 0x3F);
  }
}

bool in(std::uint32_t c, std::uint32_t lo, std::uint32_t hi) {
  return c >= lo && c <= hi;
}

// Columns of one code point by a compact subset of Unicode's East Asian Width and general
// categories: used only where the C library has no UTF-8 locale.
std::size_t columns_by_table(std::uint32_t c) {
  if (in(c, 0x0300, 0x036F) || in(c, 0x1AB0, 0x1AFF) || in(c, 0x1DC0, 0x1DFF) ||
      in(c, 0x20D0, 0x20FF) || in(c, 0xFE20, 0xFE2F) || in(c, 0x200B, 0x200F) ||
      in(c, 0xFE00, 0xFE0F) || c == 0x2060 || c == 0xFEFF) {
    return 0;  // combining marks, zero-width spaces and joiners, variation selectors
  }
  if (in(c, 0x1100, 0x115F) || in(c, 0x2E80, 0x303E) || in(c, 0x3041, 0x33FF) ||
      in(c, 0x3400, 0x4DBF) || in(c, 0x4E00, 0x9FFF) || in(c, 0xA000, 0xA4CF) ||
      in(c, 0xAC00, 0xD7A3) || in(c, 0xF900, 0xFAFF) || in(c, 0xFE30, 0xFE4F) ||
      in(c, 0xFF00, 0xFF60) || in(c, 0xFFE0, 0xFFE6) || in(c, 0x1F300, 0x1F64F) ||
      in(c, 0x1F680, 0x1F6FF) || in(c, 0x1F900, 0x1F9FF) || in(c, 0x20000, 0x3FFFD)) {
    return 2;  // CJK, Hangul, fullwidth forms, emoji
  }
  return 1;
}

// The C library's UTF-8 character type, whatever the locale memtidectl runs in (ssh sessions
// often have none): its wcwidth follows the Unicode data glibc ships.
locale_t utf8_locale() {
  static const locale_t utf8 = [] {
    locale_t l = newlocale(LC_CTYPE_MASK, "C.UTF-8", static_cast<locale_t>(nullptr));
    return l != static_cast<locale_t>(nullptr)
               ? l
               : newlocale(LC_CTYPE_MASK, "en_US.UTF-8", static_cast<locale_t>(nullptr));
  }();
  return utf8;
}

// Columns of one code point: wcwidth in a UTF-8 locale (a character it calls unprintable takes
// one column: it is shown as one replacement or escape), else the table above.
std::size_t columns_of(std::uint32_t c) {
  const locale_t utf8 = utf8_locale();
  if (utf8 == static_cast<locale_t>(nullptr)) {
    return columns_by_table(c);
  }
  const locale_t before = uselocale(utf8);
  const int w = ::wcwidth(static_cast<wchar_t>(c));
  uselocale(before);
  return w < 0 ? 1 : static_cast<std::size_t>(w);
}

// Unicode's format characters (general category Cf, Unicode 15) and the line and paragraph
// separators: invisible, and the bidirectional ones (embeddings, overrides, isolates, marks)
// reorder the text around them ("Trojan Source").
bool is_format(std::uint32_t c) {
  static constexpr std::uint32_t kRanges[][2] = {
      {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},   {0x06DD, 0x06DD},
      {0x070F, 0x070F},   {0x0890, 0x0891},   {0x08E2, 0x08E2},   {0x180E, 0x180E},
      {0x200B, 0x200F},   {0x2028, 0x202E},   {0x2060, 0x2064},   {0x2066, 0x206F},
      {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
      {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
      {0xE0020, 0xE007F}};
  for (const auto& r : kRanges) {
    if (in(c, r[0], r[1])) {
      return true;
    }
  }
  return false;
}

bool is_control(std::uint32_t c) {
  return c < 0x20 || in(c, 0x7F, 0x9F);
}

}  // namespace

std::size_t display_width(std::string_view s) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s.substr(i));
    width += n == 0 ? 1 : columns_of(decode(s.substr(i), n));
    i += n == 0 ? 1 : n;
  }
  return width;
}

std::string for_terminal(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s.substr(i));
    const std::uint32_t c = n == 0 ? 0 : decode(s.substr(i), n);
    if (n == 0 || is_control(c)) {
      out += kReplacement;
    } else if (is_format(c)) {
      char escaped[16];
      std::snprintf(escaped, sizeof escaped, "<U+%04X>", static_cast<unsigned>(c));
      out += escaped;
    } else {
      out.append(s.substr(i, n));
    }
    i += n == 0 ? 1 : n;
  }
  return out;
}

std::string lines_for_terminal(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t start = 0; start < s.size();) {
    const std::size_t end = std::min(s.find('\n', start), s.size());
    out += for_terminal(s.substr(start, end - start));
    if (end < s.size()) {
      out += '\n';
    }
    start = end + 1;
  }
  return out;
}

std::string fit(std::string_view s, std::size_t columns) {
  if (display_width(s) <= columns) {
    return std::string(s);
  }
  if (columns == 0) {
    return "";
  }
  std::string out;
  std::size_t used = 0;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8_sequence_length(s.substr(i));
    n = n == 0 ? 1 : n;
    const std::size_t w = display_width(s.substr(i, n));
    if (used + w > columns - 1) {  // keep one column for the ellipsis
      break;
    }
    out.append(s.substr(i, n));
    used += w;
    i += n;
  }
  return out + "\xE2\x80\xA6";  // U+2026
}

namespace {

// The number in the environment variable `variable` (as ls and ps take $COLUMNS), else the
// terminal's size `field` when stdout is one.
std::optional<std::size_t> terminal_size(const char* variable, unsigned short winsize::*field) {
  if (const char* env = std::getenv(variable); env != nullptr && *env != '\0') {
    char* end = nullptr;
    const long n = std::strtol(env, &end, 10);
    if (*end == '\0' && n > 0 && n < 100000) {
      return static_cast<std::size_t>(n);
    }
  }
  winsize ws{};
  if (isatty(STDOUT_FILENO) == 1 && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.*field > 0) {
    return static_cast<std::size_t>(ws.*field);
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::size_t> output_columns() {
  return terminal_size("COLUMNS", &winsize::ws_col);
}

std::optional<std::size_t> output_rows() {
  return terminal_size("LINES", &winsize::ws_row);
}

void print_table(std::vector<std::vector<std::string>> rows, std::optional<std::size_t> columns,
                 std::ostream& out) {
  std::vector<std::size_t> width;
  for (auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) {
      row[i] = for_terminal(row[i]);
      width[i] = std::max(width[i], display_width(row[i]));
    }
  }
  std::size_t before_last = 0;  // columns taken by every column but the last, with gaps
  for (std::size_t i = 0; i + 1 < width.size(); ++i) {
    before_last += width[i] + 2;
  }
  constexpr std::size_t kLeastLastColumn = 20;
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      if (i + 1 < row.size()) {
        line += row[i] + std::string(width[i] - display_width(row[i]) + 2, ' ');
      } else if (columns) {
        line += fit(row[i], std::max(kLeastLastColumn,
                                     *columns > before_last ? *columns - before_last : 0));
      } else {
        line += row[i];
      }
    }
    out << line << '\n';
  }
}

}  // namespace memtide::ctl
