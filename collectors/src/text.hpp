// Private helpers shared by the parsers: strict number parsing and line iteration.
#pragma once

#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <memtide/core/result.hpp>

namespace memtide::collectors::detail {

// Parses the whole of `s` as a decimal integer of type T: no spaces, no '+', no trailing junk,
// no value outside T's range. A '-' is accepted only for signed T.
template <typename T>
std::optional<T> to_integer(std::string_view s) {
  T v = 0;
  if (s.empty()) {
    return std::nullopt;
  }
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc{} || ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

inline std::optional<std::uint64_t> to_u64(std::string_view s) {
  return to_integer<std::uint64_t>(s);
}
inline std::optional<std::int64_t> to_i64(std::string_view s) {
  return to_integer<std::int64_t>(s);
}

// Parses a non-negative decimal with an optional fraction ("1.60"), as the kernel prints PSI
// averages. Returns nullopt for anything else.
std::optional<double> to_decimal(std::string_view s);

inline std::optional<std::uint64_t> checked_mul(std::uint64_t a, std::uint64_t b) {
  std::uint64_t r = 0;
  if (__builtin_mul_overflow(a, b, &r)) {
    return std::nullopt;
  }
  return r;
}

inline std::string_view trim(std::string_view s) {
  const auto ws = " \t\r\n";
  const auto b = s.find_first_not_of(ws);
  if (b == std::string_view::npos) {
    return {};
  }
  const auto e = s.find_last_not_of(ws);
  return s.substr(b, e - b + 1);
}

// Iterates over '\n'-separated lines with 1-based numbers. A final line without '\n' counts.
class Lines {
 public:
  explicit Lines(std::string_view text) : rest_(text) {}
  bool next(std::string_view& line) {
    if (rest_.empty()) {
      return false;
    }
    const auto nl = rest_.find('\n');
    line = rest_.substr(0, nl);
    rest_ = nl == std::string_view::npos ? std::string_view{} : rest_.substr(nl + 1);
    ++number_;
    return true;
  }
  int number() const { return number_; }

 private:
  std::string_view rest_;
  int number_ = 0;
};

inline Error content_error(std::string_view origin, int line, std::string message) {
  return Error{std::string(origin), line, 0, std::move(message)};
}

// Quotes a fragment of untrusted input for an error message: at most 40 bytes, non-printable
// bytes as \xNN, so a binary file cannot garble the log.
std::string quote(std::string_view s);

}  // namespace memtide::collectors::detail
