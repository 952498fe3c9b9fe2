#include <memtide/policy/coexist.hpp>

namespace memtide::policy {

std::string yielding_to(const std::vector<OtherManager>& others, Controls what,
                        const config::Config& config) {
  if (config.daemon.coexist == config::Coexist::force) {
    return "";
  }
  std::string text;
  for (const auto& m : others) {
    if (what == Controls::balloons ? m.balloons : m.ksm) {
      text += (text.empty() ? "" : ", ") + m.name + " (pid " + std::to_string(m.pid) + ")";
    }
  }
  return text;
}

std::string yield_summary(const std::string& balloons_owned_by, const std::string& ksm_owned_by) {
  if (!balloons_owned_by.empty() && balloons_owned_by == ksm_owned_by) {
    return balloons_owned_by +
           " resizes balloons and tunes KSM on this host: memtide leaves both to it";
  }
  std::string text;
  if (!balloons_owned_by.empty()) {
    text = balloons_owned_by + " resizes balloons on this host: memtide sends no balloon commands";
  }
  if (!ksm_owned_by.empty()) {
    text += (text.empty() ? "" : "; ") + ksm_owned_by +
            " tunes KSM on this host: memtide leaves KSM to it";
  }
  return text;
}

}  // namespace memtide::policy
