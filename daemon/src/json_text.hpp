// JSON text for output. nlohmann::json's dump() throws on a string that is not valid UTF-8;
// everything memtided prints, records or sends carries text from outside (domain names, libvirt
// messages, paths), so every dump goes through here: invalid bytes become U+FFFD and a
// serialisation can never end the daemon.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace memtide::daemon {

// `j` as compact JSON (indent < 0) or indented by `indent` spaces. Does not throw for content.
template <typename Json>
std::string dump_json(const Json& j, int indent = -1) {
  return j.dump(indent, ' ', false, Json::error_handler_t::replace);
}

}  // namespace memtide::daemon
