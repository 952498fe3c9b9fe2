#include "tick_loop.hpp"

#include <cstring>
#include <string>

#include <signal.h>
#include <sys/signalfd.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>

#include <memtide/core/clock.hpp>
#include <memtide/core/exit_code.hpp>

namespace memtide::daemon {

namespace {

std::string errno_text(int negative_errno) {
  return std::strerror(-negative_errno);
}

std::uint64_t to_usec(std::chrono::milliseconds d) {
  return static_cast<std::uint64_t>(d.count()) * 1000;
}

}  // namespace

TickLoop::TickLoop(Logger& log) : log_(log) {
  sigset_t mask;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    sigaddset(&mask, sig);
  }
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
}

TickLoop::~TickLoop() {
  sd_event_source_unref(timer_);
  sd_event_unref(event_);
}

bool TickLoop::open(Handlers handlers, std::chrono::milliseconds interval) {
  handlers_ = std::move(handlers);
  interval_ = interval;
  int r = sd_event_new(&event_);
  if (r < 0) {
    log_.error("cannot create the event loop: " + errno_text(r));
    return false;
  }
  for (int sig : {SIGTERM, SIGINT, SIGHUP}) {
    if (r = sd_event_add_signal(event_, nullptr, sig, &TickLoop::on_signal, this); r < 0) {
      log_.error("cannot watch signal " + std::to_string(sig) + ": " + errno_text(r));
      return false;
    }
  }
  // Pings the service manager at a safe fraction of WATCHDOG_USEC for as long as the loop keeps
  // turning; a hung tick therefore stops the pings and lets systemd restart us.
  if (sd_watchdog_enabled(0, &watchdog_usec_) <= 0) {
    watchdog_usec_ = 0;
  }
  if (r = sd_event_set_watchdog(event_, 1); r < 0) {
    log_.warning("cannot enable the systemd watchdog: " + errno_text(r));
  }
  // Accuracy 1 ms: sd-event's default (0 = 250 ms) lets it coalesce wake-ups that late, which
  // turned daemon.interval 100ms into 4 ticks a second.
  constexpr std::uint64_t kTimerAccuracyUsec = 1000;
  r = sd_event_add_time(event_, &timer_, CLOCK_MONOTONIC, now_usec(), kTimerAccuracyUsec,
                        &TickLoop::on_timer, this);
  if (r < 0) {
    log_.error("cannot create the tick timer: " + errno_text(r));
    return false;
  }
  return true;
}

int TickLoop::run() {
  const int r = sd_event_loop(event_);
  if (r < 0) {
    log_.error("event loop failed: " + errno_text(r));
    return kExitFailure;
  }
  return r;  // the code passed to sd_event_exit
}

std::uint64_t TickLoop::now_usec() const {
  std::uint64_t now = 0;
  if (event_ == nullptr || sd_event_now(event_, CLOCK_MONOTONIC, &now) < 0) {
    now = clock::monotonic_usec();
  }
  return now;
}

int TickLoop::on_signal(sd_event_source*, const signalfd_siginfo* info, void* self) {
  auto* loop = static_cast<TickLoop*>(self);
  if (info->ssi_signo == SIGHUP) {
    loop->handlers_.reload();
    return 0;
  }
  loop->log_.notice(
      std::string("received ") + strsignal(static_cast<int>(info->ssi_signo)) + ", stopping",
      {{"MEMTIDE_EVENT", "stop-requested"}});
  loop->handlers_.stop();
  sd_event_exit(loop->event_, kExitOk);  // also when the restore on the way out failed
  return 0;
}

int TickLoop::on_timer(sd_event_source*, std::uint64_t usec, void* self) {
  auto* loop = static_cast<TickLoop*>(self);
  loop->handlers_.tick();
  // Ticks keep a fixed cadence from the previous deadline, not from when the tick finished; if
  // a tick overran a whole interval, the next starts now instead of trying to catch up.
  const std::uint64_t next = std::max(usec + to_usec(loop->interval_), loop->now_usec());
  sd_event_source_set_time(loop->timer_, next);
  sd_event_source_set_enabled(loop->timer_, SD_EVENT_ONESHOT);
  return 0;
}

void TickLoop::set_interval(std::chrono::milliseconds interval) {
  if (interval == interval_) {
    return;
  }
  interval_ = interval;
  if (timer_ != nullptr) {
    sd_event_source_set_time(timer_, now_usec() + to_usec(interval_));
  }
}

void TickLoop::tick_soon() {
  // At most one tick per 200 ms however often the kernel signals.
  constexpr std::uint64_t kMinGapUsec = 200'000;
  if (now_usec() - last_tick_usec_ >= kMinGapUsec) {
    handlers_.tick();
    return;
  }
  std::uint64_t deadline = 0;
  if (sd_event_source_get_time(timer_, &deadline) >= 0 &&
      last_tick_usec_ + kMinGapUsec < deadline) {
    sd_event_source_set_time(timer_, last_tick_usec_ + kMinGapUsec);
  }
}

}  // namespace memtide::daemon
