// When memtided ticks: an sd-event loop with a periodic timer at a fixed cadence, SIGTERM/SIGINT
// (stop) and SIGHUP (reload) through a signalfd, and the systemd watchdog pinged by sd-event for
// as long as the loop turns. What a tick does is the Daemon's business; this is only the clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

#include "log.hpp"

struct sd_event;
struct sd_event_source;
struct signalfd_siginfo;

namespace memtide::daemon {

class TickLoop {
 public:
  struct Handlers {
    std::function<void()> tick;
    std::function<void()> reload;  // SIGHUP
    std::function<void()> stop;    // SIGTERM, SIGINT; the loop ends after it returns
  };

  // Blocks the handled signals in the calling thread; call before any other thread starts (the
  // libvirt event loop, the hypervisor worker), or the kernel may deliver a signal to a thread
  // that dies of it.
  explicit TickLoop(Logger& log);
  ~TickLoop();
  TickLoop(const TickLoop&) = delete;
  TickLoop& operator=(const TickLoop&) = delete;

  // Creates the loop, its signal sources and the timer (first tick at once). False (logged) when
  // the loop cannot be built.
  bool open(Handlers handlers, std::chrono::milliseconds interval);
  // Runs until a stop signal. Returns the exit code passed to sd_event_exit, or kExitFailure.
  int run();

  // Ticks every `interval` from now on (a reload changed it).
  void set_interval(std::chrono::milliseconds interval);
  // A reason to tick early (a memory pressure event): at once, unless a tick ran within 200 ms;
  // then the next tick is brought forward to the 200 ms mark instead.
  void tick_soon();
  // The time of this loop iteration (CLOCK_MONOTONIC µs); the clock when no loop runs (tests).
  std::uint64_t now_usec() const;
  // Marks the start of a tick at now_usec(), for tick_soon's spacing.
  void tick_started() { last_tick_usec_ = now_usec(); }
  // WATCHDOG_USEC from systemd (0: none), read by open().
  std::chrono::microseconds watchdog() const { return std::chrono::microseconds(watchdog_usec_); }
  sd_event* event() const { return event_; }

 private:
  static int on_signal(sd_event_source* source, const signalfd_siginfo* info, void* self);
  static int on_timer(sd_event_source* source, std::uint64_t usec, void* self);

  Logger& log_;
  Handlers handlers_;
  std::chrono::milliseconds interval_{0};
  sd_event* event_ = nullptr;
  sd_event_source* timer_ = nullptr;
  std::uint64_t watchdog_usec_ = 0;
  std::uint64_t last_tick_usec_ = 0;
};

}  // namespace memtide::daemon
