#include "collect.hpp"

#include <chrono>

namespace memtide::daemon {

Result<Snapshot> collect_snapshot(const collectors::HostSource& host,
                                  const collectors::KsmControl& ksm) {
  using namespace std::chrono;
  Snapshot snapshot;
  snapshot.monotonic_ms =
      duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
  snapshot.collected_at_unix_ms =
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
  auto host_sample = host.read();
  if (!host_sample) {
    return host_sample.error();
  }
  snapshot.host = std::move(*host_sample);
  auto ksm_sample = ksm.read();
  if (!ksm_sample) {
    return ksm_sample.error();
  }
  snapshot.ksm = std::move(*ksm_sample);
  return snapshot;
}

}  // namespace memtide::daemon
