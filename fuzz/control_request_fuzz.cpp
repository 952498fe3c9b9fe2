// A control-socket request line, answered by a handler that reads requests the way memtided's
// does: the reply is always a JSON object that serialises.
#include <cstddef>
#include <cstdint>
#include <string>

#include <memtide/report/json_text.hpp>

#include "control_socket.hpp"
#include "fuzz_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using memtide::daemon::ControlServer;
  const std::string line(reinterpret_cast<const char*>(data), size);
  const auto reply = ControlServer::reply_to(line, [](const nlohmann::json& request) {
    const std::string command = request["command"].get<std::string>();
    if (command == "explain") {
      if (!request.contains("vm") || !request["vm"].is_string()) {
        return nlohmann::json{{"ok", false}, {"error", "explain needs \"vm\""}};
      }
      return nlohmann::json{{"ok", true}, {"vm", request["vm"]}};
    }
    return nlohmann::json{{"ok", false}, {"error", "unknown command '" + command + "'"}};
  });
  memtide::fuzz::require(reply.is_object() && reply.contains("ok"), "a reply is an object");
  memtide::fuzz::require_valid_utf8(memtide::report::dump_json(reply), "a reply");
  return 0;
}
