// A measurement, not a test of the suite (run by `scripts/bench --resize`): on real TCG guests
// under a private session libvirtd, how fast a balloon and a virtio-mem device give the host
// memory back, what the guest sees, and how fast a guest that then needs its memory gets it.
//
// Each guest (1 GiB: all balloon, or 256 MiB of base memory and a 768 MiB virtio-mem device
// fully plugged) touches 600 MiB and frees it, so the host holds that memory for it. One
// command takes 512 MiB; the QEMU process's VmRSS is sampled every 100 ms until it settles.
// Then one command gives the 512 MiB back, and the guest's MemTotal is watched until it is
// whole again. Figures are printed; the checks only make sure each run measured something.
#include <cstdio>
#include <fstream>
#include <sstream>
#include <vector>

#include <memtide/collectors/qemu_process.hpp>

#include "real_guest.hpp"

namespace memtide::collectors {
namespace {

struct Figures {
  double rss_before_mib = 0;
  double rss_after_mib = 0;
  double seconds_to_90 = 0;  // until 90 % of what was freed in all
  double total_before_mib = 0;
  double total_after_mib = 0;
  double seconds_back = 0;  // until the guest's MemTotal is within 8 MiB of where it was
};

double mib(std::uint64_t bytes) {
  return static_cast<double>(bytes) / MiB;
}

class Resize : public RealGuest {
 public:
  Figures measure(const std::string& name) {
    LibvirtOptions o;
    o.uri = uri_;
    LibvirtHypervisor h(o);
    auto vm = wait_for(
        h, name,
        [&](const VmSample& v) {
          return v.stats_status == GuestStatsStatus::ok && v.process &&
                 file(name + ".log").find("holding 0 MiB") != std::string::npos;
        },
        180s);
    Figures f;
    if (!vm || !vm->process) {
      ADD_FAILURE() << name << ": no statistics or process";
      return f;
    }
    std::this_thread::sleep_for(3s);
    vm = wait_for(
        h, name, [](const VmSample&) { return true; }, 10s);
    const std::uint64_t full = vm->current_bytes;
    const int pid = vm->process->pid;
    auto rss = [pid]() {
      const auto p = read_qemu_process("/proc", pid, 4096);
      return p && p->rss_bytes ? mib(*p->rss_bytes) : 0.0;
    };
    f.rss_before_mib = rss();
    f.total_before_mib = mib(vm->guest.total_bytes.value_or(0));
    const auto start = std::chrono::steady_clock::now();
    const auto set = h.set_memory_size(vm->uuid, full - 512 * MiB, 0);
    EXPECT_TRUE(set.ok()) << set.error().to_string();
    std::vector<std::pair<double, double>> samples;  // seconds, VmRSS MiB
    double last_change = 0;
    double low = f.rss_before_mib;
    while (true) {
      std::this_thread::sleep_for(100ms);
      const double t =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      const double r = rss();
      samples.emplace_back(t, r);
      if (r < low - 1) {
        low = r;
        last_change = t;
      }
      if (t - last_change > 5 || t > 60) {
        break;
      }
    }
    f.rss_after_mib = low;
    const double goal = f.rss_before_mib - 0.9 * (f.rss_before_mib - low);
    for (const auto& [t, r] : samples) {
      if (r <= goal) {
        f.seconds_to_90 = t;
        break;
      }
    }
    vm = wait_for(
        h, name,
        [&](const VmSample& v) {
          return v.guest.total_bytes.value_or(0) + 400 * MiB < vm->guest.total_bytes.value_or(0);
        },
        30s);
    f.total_after_mib = mib(vm->guest.total_bytes.value_or(0));
    // Needs its memory back at once: one command, then until its MemTotal is whole again.
    const auto back = std::chrono::steady_clock::now();
    EXPECT_TRUE(h.set_memory_size(vm->uuid, full, 0).ok());
    while (std::chrono::steady_clock::now() < back + 60s) {
      auto r = h.collect(now_ms());
      const VmSample* v = nullptr;
      for (const auto& x : r ? *r : std::vector<VmSample>{}) {
        v = x.name == name ? &x : v;
      }
      if (v != nullptr && mib(v->guest.total_bytes.value_or(0)) + 8 >= f.total_before_mib) {
        f.seconds_back =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - back).count();
        break;
      }
      std::this_thread::sleep_for(100ms);
    }
    return f;
  }
};

void print(const char* what, const Figures& f) {
  const double freed = f.rss_before_mib - f.rss_after_mib;
  std::printf(
      "%-10s host freed %.0f MiB with 1 command (VmRSS %.0f -> %.0f MiB), 90%% of it in %.1f s "
      "(%.0f MiB/s); guest MemTotal %.0f -> %.0f MiB; back to %.0f MiB %.1f s after 1 command\n",
      what, freed, f.rss_before_mib, f.rss_after_mib, f.seconds_to_90,
      f.seconds_to_90 > 0 ? 0.9 * freed / f.seconds_to_90 : 0.0, f.total_before_mib,
      f.total_after_mib, f.total_before_mib, f.seconds_back);
}

TEST_F(Resize, BalloonAndVirtioMem) {
  const std::string stats = "<memballoon model='virtio'><stats period='1'/></memballoon>";
  start_guest("balloon", 1024, "600:10,0:3600", "random", "", "", "", stats);
  start_virtio_mem_guest("virtio-mem", 256, 768, 768, "600:10,0:3600", stats);
  const auto balloon = measure("balloon");
  const auto virtio_mem = measure("virtio-mem");
  print("balloon", balloon);
  print("virtio-mem", virtio_mem);
  EXPECT_GT(balloon.rss_before_mib - balloon.rss_after_mib, 100);
  EXPECT_GT(virtio_mem.rss_before_mib - virtio_mem.rss_after_mib, 100);
}

}  // namespace
}  // namespace memtide::collectors
