#include <array>
#include <cmath>
#include <cstdio>
#include <optional>
#include <string>

#include <memtide/config/units.hpp>
#include <memtide/core/text.hpp>

namespace memtide::config {

namespace {

Error bad(std::string message) {
  return Error{"", 0, 0, std::move(message)};
}

// Untrusted text as it appears inside messages: at most 40 bytes of valid UTF-8, so a hostile
// value can neither blow up an error report nor break the JSON or journal entry it ends up in.
std::string shown(std::string_view text) {
  return shorten_utf8(text, 40);
}

// "1.5GiB" -> {integer digits, fraction digits, unit}. Digits only, at most one '.', no sign.
struct Number {
  std::string_view integer;
  std::string_view fraction;
  std::string_view unit;
};

Result<Number> split_number(std::string_view text, std::string_view what) {
  Number n;
  std::size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
    ++i;
  }
  n.integer = text.substr(0, i);
  if (i < text.size() && text[i] == '.') {
    const std::size_t start = ++i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') {
      ++i;
    }
    n.fraction = text.substr(start, i - start);
    if (n.fraction.empty()) {
      return bad("expected digits after '.' in " + std::string(what));
    }
  }
  if (n.integer.empty()) {
    return bad("expected " + std::string(what) + " starting with a digit");
  }
  n.unit = text.substr(i);
  if (!n.unit.empty() && n.unit.front() == ' ') {
    n.unit.remove_prefix(1);  // allow "2 GiB"
  }
  return n;
}

// integer.fraction * multiplier, rounded down; nullopt on overflow of 64 bits.
std::optional<std::uint64_t> scale(const Number& n, std::uint64_t multiplier) {
  if (n.integer.size() > 20 || n.fraction.size() > 18) {
    return std::nullopt;
  }
  unsigned __int128 whole = 0;
  for (char c : n.integer) {
    whole = whole * 10 + static_cast<unsigned>(c - '0');
  }
  whole *= multiplier;
  unsigned __int128 frac = 0;
  unsigned __int128 denom = 1;
  for (char c : n.fraction) {
    frac = frac * 10 + static_cast<unsigned>(c - '0');
    denom *= 10;
  }
  const unsigned __int128 total = whole + frac * multiplier / denom;
  if (total > UINT64_MAX) {
    return std::nullopt;
  }
  return static_cast<std::uint64_t>(total);
}

struct Unit {
  std::string_view name;
  std::uint64_t multiplier;
};

}  // namespace

Result<std::uint64_t> parse_size(std::string_view text) {
  auto n = split_number(text, "a size");
  if (!n) {
    return bad(n.error().message + " such as 512MiB or 2GiB, got '" + shown(text) + "'");
  }
  static constexpr std::array<Unit, 5> kUnits{{{"B", 1},
                                               {"KiB", 1ULL << 10},
                                               {"MiB", 1ULL << 20},
                                               {"GiB", 1ULL << 30},
                                               {"TiB", 1ULL << 40}}};
  std::uint64_t multiplier = 0;
  if (n->unit.empty()) {
    // Only zero may go without a unit: "0" is unambiguous, "512" is not.
    if (n->integer.find_first_not_of('0') != std::string_view::npos || !n->fraction.empty()) {
      return bad("size '" + shown(text) + "' needs a unit: B, KiB, MiB, GiB or TiB");
    }
    return std::uint64_t{0};
  }
  for (const auto& u : kUnits) {
    if (u.name == n->unit) {
      multiplier = u.multiplier;
    }
  }
  if (multiplier == 0) {
    // Suggest the binary unit for the decimal-looking ones operators often type.
    std::string hint;
    const char first = n->unit.front();
    if (first == 'k' || first == 'K') {
      hint = "; did you mean KiB?";
    } else if (first == 'm' || first == 'M') {
      hint = "; did you mean MiB?";
    } else if (first == 'g' || first == 'G') {
      hint = "; did you mean GiB?";
    } else if (first == 't' || first == 'T') {
      hint = "; did you mean TiB?";
    } else if (n->unit == "%") {
      hint = "; this key takes an absolute size";
    }
    return bad("unknown size unit '" + shown(n->unit) + "' (use B, KiB, MiB, GiB or TiB)" + hint);
  }
  const auto bytes = scale(*n, multiplier);
  if (!bytes) {
    return bad("size '" + shown(text) + "' is too large");
  }
  if (multiplier == 1 && !n->fraction.empty()) {
    return bad("size in bytes cannot have a fraction: '" + shown(text) + "'");
  }
  return *bytes;
}

Result<std::uint64_t> parse_rate(std::string_view text) {
  if (text.size() >= 2 && text.substr(text.size() - 2) == "/s") {
    text.remove_suffix(2);
  }
  return parse_size(text);
}

Result<double> parse_percent(std::string_view text) {
  auto n = split_number(text, "a percentage");
  if (!n) {
    return bad(n.error().message + " such as 20%, got '" + shown(text) + "'");
  }
  if (n->unit != "%") {
    return bad("expected a percentage such as 20%, got '" + shown(text) + "'");
  }
  // Work in millionths of a percent to keep the check exact.
  const auto millionths = scale(*n, 1'000'000);
  if (!millionths || *millionths > 100'000'000ULL) {
    return bad("percentage must be between 0% and 100%, got '" + shown(text) + "'");
  }
  return static_cast<double>(*millionths) / 100'000'000.0;
}

Result<std::chrono::milliseconds> parse_duration(std::string_view text) {
  auto n = split_number(text, "a duration");
  if (!n) {
    return bad(n.error().message + " such as 5s or 1m, got '" + shown(text) + "'");
  }
  static constexpr std::array<Unit, 4> kUnits{
      {{"ms", 1}, {"s", 1000}, {"m", 60'000}, {"h", 3'600'000}}};
  std::uint64_t multiplier = 0;
  for (const auto& u : kUnits) {
    if (u.name == n->unit) {
      multiplier = u.multiplier;
    }
  }
  if (multiplier == 0) {
    if (n->unit.empty()) {
      return bad("duration '" + shown(text) + "' needs a unit: ms, s, m or h");
    }
    return bad("unknown duration unit '" + shown(n->unit) + "' (use ms, s, m or h)");
  }
  const auto ms = scale(*n, multiplier);
  if (!ms || *ms > static_cast<std::uint64_t>(INT64_MAX)) {
    return bad("duration '" + shown(text) + "' is too large");
  }
  return std::chrono::milliseconds(static_cast<std::int64_t>(*ms));
}

Result<SizeOrRatio> parse_size_or_percent(std::string_view text) {
  if (!text.empty() && text.back() == '%') {
    auto ratio = parse_percent(text);
    if (!ratio) {
      return ratio.error();
    }
    return SizeOrRatio{*ratio};
  }
  auto bytes = parse_size(text);
  if (!bytes) {
    return bad(bytes.error().message + ", or a percentage such as 30%");
  }
  return SizeOrRatio{*bytes};
}

std::string format_size(std::uint64_t bytes) {
  // Called for every VM on every tick (reasons, explanations): no printf.
  static constexpr std::array<std::string_view, 5> kNames{"B", "KiB", "MiB", "GiB", "TiB"};
  std::size_t unit = 0;
  double value = static_cast<double>(bytes);
  while (value >= 1024.0 && unit + 1 < kNames.size()) {
    value /= 1024.0;
    ++unit;
  }
  std::string out;
  if (unit == 0 || value == std::floor(value)) {
    out = std::to_string(static_cast<std::uint64_t>(std::llround(value)));
  } else {
    const auto tenths = static_cast<std::uint64_t>(std::llround(value * 10.0));
    out = std::to_string(tenths / 10) + "." + std::to_string(tenths % 10);
  }
  out += ' ';
  out += kNames[unit];
  return out;
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms % 3'600'000 == 0 && ms != 0) {
    return std::to_string(ms / 3'600'000) + "h";
  }
  if (ms % 60'000 == 0 && ms != 0) {
    return std::to_string(ms / 60'000) + "m";
  }
  if (ms % 1000 == 0) {
    return std::to_string(ms / 1000) + "s";
  }
  return std::to_string(ms) + "ms";
}

}  // namespace memtide::config
