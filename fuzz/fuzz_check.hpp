// What every fuzz target checks besides "no crash, no sanitizer report, no hang": the properties
// that keep bad input from turning into a crash later (in a log line, a JSON dump, the journal).
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string_view>

#include <memtide/core/text.hpp>

namespace memtide::fuzz {

// Aborts (a finding) when `text`, which will be logged or serialised, is not valid UTF-8.
inline void require_valid_utf8(std::string_view text, const char* what) {
  if (!is_valid_utf8(text)) {
    std::fprintf(stderr, "%s is not valid UTF-8\n", what);
    std::abort();
  }
}

inline void require(bool condition, const char* what) {
  if (!condition) {
    std::fprintf(stderr, "property failed: %s\n", what);
    std::abort();
  }
}

}  // namespace memtide::fuzz
