// Text from outside (domain names, metadata, URIs, file contents, paths, libvirt messages) as it
// may safely appear in logs, JSON, metrics and the journal: valid UTF-8, cut only on character
// boundaries. Every JSON writer in memtide is strict, so a string that reaches one must pass
// through here (or be built from strings that did).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace memtide {

// Length in bytes of the well-formed UTF-8 sequence at the start of `s` (1 to 4), or 0 when it
// is not one (a stray continuation byte, a truncated sequence, an overlong form, a UTF-16
// surrogate or a code point above U+10FFFF): RFC 3629, Table 3-7 of the Unicode standard.
inline std::size_t utf8_sequence_length(std::string_view s) {
  if (s.empty()) {
    return 0;
  }
  const auto b = [&s](std::size_t i) { return static_cast<std::uint8_t>(s[i]); };
  const std::uint8_t lead = b(0);
  if (lead < 0x80) {
    return 1;
  }
  std::size_t n = 0;
  std::uint8_t lo = 0x80;  // range of the second byte
  std::uint8_t hi = 0xBF;
  if (lead >= 0xC2 && lead <= 0xDF) {
    n = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    n = 3;
    lo = lead == 0xE0 ? 0xA0 : 0x80;  // no overlong forms
    hi = lead == 0xED ? 0x9F : 0xBF;  // no surrogates
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    n = 4;
    lo = lead == 0xF0 ? 0x90 : 0x80;  // no overlong forms
    hi = lead == 0xF4 ? 0x8F : 0xBF;  // nothing above U+10FFFF
  } else {
    return 0;
  }
  if (s.size() < n || b(1) < lo || b(1) > hi) {
    return 0;
  }
  for (std::size_t i = 2; i < n; ++i) {
    if (b(i) < 0x80 || b(i) > 0xBF) {
      return 0;
    }
  }
  return n;
}

// Offset of the first byte that does not start a well-formed sequence, or npos if `s` is valid.
inline std::size_t find_invalid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s.substr(i));
    if (n == 0) {
      return i;
    }
    i += n;
  }
  return std::string_view::npos;
}

inline bool is_valid_utf8(std::string_view s) {
  return find_invalid_utf8(s) == std::string_view::npos;
}

// `s` with every byte that does not start a well-formed sequence replaced by U+FFFD (one
// replacement per bad byte, so the result never grows more than 3x).
inline std::string to_valid_utf8(std::string_view s) {
  static constexpr std::string_view kReplacement = "\xEF\xBF\xBD";
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s.substr(i));
    if (n == 0) {
      out += kReplacement;
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

// Untrusted text shown inside a message: valid UTF-8 (as to_valid_utf8) of at most `max_bytes`
// bytes of content, cut on a character boundary and marked with "..." when cut.
inline std::string shorten_utf8(std::string_view s, std::size_t max_bytes) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8_sequence_length(s.substr(i));
    const std::string_view piece = n == 0 ? std::string_view("\xEF\xBF\xBD") : s.substr(i, n);
    if (out.size() + piece.size() > max_bytes) {
      out += "...";
      return out;
    }
    out.append(piece);
    i += n == 0 ? 1 : n;
  }
  return out;
}

}  // namespace memtide
