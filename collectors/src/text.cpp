#include "text.hpp"

#include <cmath>

namespace memtide::collectors::detail {

std::optional<double> to_decimal(std::string_view s) {
  const auto dot = s.find('.');
  const auto int_part = to_u64(s.substr(0, dot));
  if (!int_part) {
    return std::nullopt;
  }
  double value = static_cast<double>(*int_part);
  if (dot != std::string_view::npos) {
    const auto frac = s.substr(dot + 1);
    const auto frac_value = to_u64(frac);
    if (!frac_value || frac.size() > 18) {
      return std::nullopt;
    }
    value += static_cast<double>(*frac_value) / std::pow(10.0, static_cast<double>(frac.size()));
  }
  return value;
}

std::string quote(std::string_view s) {
  static constexpr std::size_t kMax = 40;
  std::string out = "'";
  for (std::size_t i = 0; i < s.size() && i < kMax; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  if (s.size() > kMax) {
    out += "...";
  }
  out += '\'';
  return out;
}

}  // namespace memtide::collectors::detail
