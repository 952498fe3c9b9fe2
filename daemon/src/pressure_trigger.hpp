// A PSI trigger on /proc/pressure/memory: the kernel wakes the loop (POLLPRI) when tasks stalled
// on memory for 150 ms within a 2 s window, so memtided reacts to sudden pressure without waiting
// for its next tick. The window is a multiple of 2 s because without CAP_SYS_RESOURCE (which the
// hardened unit does not grant) the kernel accepts no other.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "log.hpp"

struct sd_event;
struct sd_event_source;

namespace memtide::daemon {

class PressureTrigger {
 public:
  // Called on the loop for each event, with the loop's CLOCK_MONOTONIC time in µs.
  using OnEvent = std::function<void(std::uint64_t now_usec)>;

  PressureTrigger() = default;
  ~PressureTrigger();
  PressureTrigger(const PressureTrigger&) = delete;
  PressureTrigger& operator=(const PressureTrigger&) = delete;

  // Arms the trigger on PROCFS/pressure/memory. Only a real procfs file takes one (a fixture tree
  // holds plain files, and writing the trigger there would overwrite the figures it stands for);
  // without one memtided reacts on the tick only, which is logged, not an error.
  void start(sd_event* event, const std::string& procfs, Logger& log, OnEvent on_event);

 private:
  static int on_pressure(sd_event_source* source, int fd, std::uint32_t revents, void* self);

  int fd_ = -1;
  sd_event_source* source_ = nullptr;
  OnEvent on_event_;
};

}  // namespace memtide::daemon
