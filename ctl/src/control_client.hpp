// memtidectl's side of the control protocol (report/control_protocol.hpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include <memtide/core/result.hpp>

namespace memtide::ctl {

// A reply larger than this is refused: the status of 10,000 VMs is a few MiB.
inline constexpr std::size_t kMaxReplyBytes = std::size_t{64} << 20;

// Sends `request` to the daemon listening at `path` and returns its reply, waiting up to
// `timeout` for each part of it. "busy" (report::kBusyMessage) is an error.
Result<nlohmann::json> control_request(const std::string& path, const nlohmann::json& request,
                                       std::chrono::milliseconds timeout);

// control_request() with memtidectl's 10 s timeout: the daemon's accepting reply ("ok": true),
// or nullopt when it could not be reached or refused the request (said on stderr).
std::optional<nlohmann::json> ask_daemon(const std::string& path, const nlohmann::json& request);

}  // namespace memtide::ctl
