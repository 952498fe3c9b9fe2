// Sharing the host with other memory managers (Snapshot::other_managers). Under
// daemon.coexist auto memtide leaves each of them what it controls: no balloon commands while
// one resizes balloons, no KSM writes while one tunes KSM. Pure functions.
#pragma once

#include <string>
#include <vector>

#include <memtide/config/config.hpp>
#include <memtide/core/snapshot.hpp>

namespace memtide::policy {

enum class Controls { balloons, ksm };

// The managers memtide leaves `what` to, as "momd (pid 812), pvestatd (pid 90)"; "" when there
// are none or daemon.coexist is force.
std::string yielding_to(const std::vector<OtherManager>& others, Controls what,
                        const config::Config& config);

// One sentence for the log, the status and the other-memory-manager alert, from the two
// yielding_to() texts; "" when memtide yields nothing.
std::string yield_summary(const std::string& balloons_owned_by, const std::string& ksm_owned_by);

}  // namespace memtide::policy
