#include <memtide/collectors/sysfs_parsers.hpp>
#include <memtide/core/text.hpp>

#include "text.hpp"

namespace memtide::collectors {

using detail::content_error;
using detail::quote;

namespace {

// A sysfs attribute is one line; allow its trailing newline and nothing else after the value.
Result<std::string_view> single_line(std::string_view text, std::string_view origin) {
  if (!text.empty() && text.back() == '\n') {
    text.remove_suffix(1);
  }
  if (text.find('\n') != std::string_view::npos) {
    return content_error(origin, 1, "expected a single line, got " + quote(text));
  }
  if (text.empty()) {
    return content_error(origin, 1, "empty file");
  }
  return text;
}

}  // namespace

Result<std::uint64_t> parse_sysfs_u64(std::string_view text, std::string_view origin) {
  auto line = single_line(text, origin);
  if (!line) {
    return line.error();
  }
  const auto value = detail::to_u64(*line);
  if (!value) {
    return content_error(origin, 1, "not a non-negative 64-bit integer: " + quote(*line));
  }
  return *value;
}

Result<std::int64_t> parse_sysfs_i64(std::string_view text, std::string_view origin) {
  auto line = single_line(text, origin);
  if (!line) {
    return line.error();
  }
  const auto value = detail::to_i64(*line);
  if (!value) {
    return content_error(origin, 1, "not a 64-bit integer: " + quote(*line));
  }
  return *value;
}

Result<std::string> parse_sysfs_choice(std::string_view text, std::string_view origin) {
  auto line = single_line(text, origin);
  if (!line) {
    return line.error();
  }
  const auto open = line->find('[');
  const auto close = line->find(']');
  if (open == std::string_view::npos || close == std::string_view::npos || close < open + 2 ||
      line->find('[', open + 1) != std::string_view::npos) {
    return content_error(origin, 1, "expected one choice in brackets, got " + quote(*line));
  }
  return to_valid_utf8(line->substr(open + 1, close - open - 1));
}

}  // namespace memtide::collectors
