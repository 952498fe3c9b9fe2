#include "pressure_trigger.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/epoll.h>
#include <sys/vfs.h>
#include <systemd/sd-event.h>
#include <unistd.h>

namespace memtide::daemon {

PressureTrigger::~PressureTrigger() {
  sd_event_source_unref(source_);
  if (fd_ >= 0) {
    close(fd_);
  }
}

void PressureTrigger::start(sd_event* event, const std::string& procfs, Logger& log,
                            OnEvent on_event) {
  static constexpr const char* kTrigger = "some 150000 2000000";
  const std::string path = procfs + "/pressure/memory";
  int fd = open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  struct statfs fs {};
  const bool on_procfs = fd >= 0 && fstatfs(fd, &fs) == 0 && fs.f_type == PROC_SUPER_MAGIC;
  if (fd >= 0) {
    close(fd);
    fd = -1;
  }
  if (on_procfs) {
    fd = open(path.c_str(), O_RDWR | O_NONBLOCK | O_CLOEXEC);
  } else {
    errno = ENOTSUP;
  }
  if (fd < 0 || write(fd, kTrigger, std::strlen(kTrigger) + 1) < 0) {
    log.notice(std::string("no memory pressure trigger (") +
                   (on_procfs ? std::strerror(errno) : "not a procfs file") + " on " + path +
                   "); reacting on the tick only",
               {{"MEMTIDE_EVENT", "psi-trigger-unavailable"}});
    if (fd >= 0) {
      close(fd);
    }
    return;
  }
  fd_ = fd;
  on_event_ = std::move(on_event);
  const int r =
      sd_event_add_io(event, &source_, fd_, EPOLLPRI, &PressureTrigger::on_pressure, this);
  if (r < 0) {
    log.warning(std::string("cannot watch the memory pressure trigger: ") + std::strerror(-r));
  }
}

int PressureTrigger::on_pressure(sd_event_source* source, int, std::uint32_t revents, void* self) {
  auto* t = static_cast<PressureTrigger*>(self);
  if ((revents & EPOLLERR) != 0) {
    // The trigger's file went away (e.g. cgroup removal); stop watching, ticks go on.
    sd_event_source_set_enabled(source, SD_EVENT_OFF);
    return 0;
  }
  std::uint64_t now = 0;
  sd_event_now(sd_event_source_get_event(source), CLOCK_MONOTONIC, &now);
  t->on_event_(now);
  return 0;
}

}  // namespace memtide::daemon
