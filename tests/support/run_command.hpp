// Runs a shell command for system and end-to-end tests and returns its standard output with
// trailing newlines removed, or "" when it cannot be run or exits non-zero.
#pragma once

#include <array>
#include <cstdio>
#include <string>

namespace memtide::testing {

inline std::string run_command(const std::string& command) {
  std::string out;
  FILE* p = popen(command.c_str(), "r");
  if (p == nullptr) {
    return out;
  }
  std::array<char, 512> buf{};
  while (fgets(buf.data(), buf.size(), p) != nullptr) {
    out += buf.data();
  }
  if (pclose(p) != 0) {
    return "";
  }
  while (!out.empty() && out.back() == '\n') {
    out.pop_back();
  }
  return out;
}

}  // namespace memtide::testing
