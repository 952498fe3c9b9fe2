// JSON text for output. nlohmann::json's dump() throws on a string that is not valid UTF-8;
// everything memtided prints, records or sends carries text from outside (domain names, libvirt
// messages, paths), so every dump goes through here: invalid bytes become U+FFFD and a
// serialisation can never end the daemon.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace memtide::report {

// `j` as compact JSON (indent < 0) or indented by `indent` spaces. Does not throw for content.
template <typename Json>
std::string dump_json(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

// Whether JSON text nests arrays and objects deeper than `max_depth` (strings are skipped). Checked
// before parsing untrusted text: the parser copes, but dumping or walking a value nested
// thousands deep recurses once per level and can overflow the stack.
inline bool json_nesting_exceeds(std::string_view text, std::size_t max_depth) {
  std::size_t depth = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;  // the escaped character cannot end the string
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) {
        return true;
      }
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace memtide::report
