#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <memtide/actuators/huge_page_release.hpp>

namespace memtide::actuators {

namespace {

constexpr std::uint64_t kHugePageBytes = 2ULL << 20;
constexpr std::uint64_t kBytesPerCall = 1ULL << 30;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

Result<std::uint64_t> advise_cold(int pid, const std::vector<collectors::MemoryRegion>& regions) {
  if (pid <= 0) {
    return Error{"", 0, 0, "no process to advise"};
  }
  const Fd pidfd(static_cast<int>(syscall(SYS_pidfd_open, pid, 0)));
  if (pidfd.get() < 0) {
    return Error{"", 0, 0, "pidfd_open(" + std::to_string(pid) + "): " + std::strerror(errno)};
  }
  std::uint64_t advised = 0;
  for (const auto& region : regions) {
    // One range per call, of at most kBytesPerCall: the kernel advises at most MAX_RW_COUNT
    // (just under 2 GiB) per call and silently leaves the rest.
    for (std::uint64_t at = region.start; at < region.end;) {
      iovec iov{reinterpret_cast<void*>(at),  // NOLINT(performance-no-int-to-ptr)
                std::min(kBytesPerCall, region.end - at)};
      const long done = syscall(SYS_process_madvise, pidfd.get(), &iov, 1, MADV_COLD, 0U);
      if (done < 0) {
        // ENOMEM: the range was unmapped meanwhile (QEMU unplugged memory, or the process
        // ended).
        return Error{"", 0, 0,
                     "process_madvise(MADV_COLD) on process " + std::to_string(pid) + ": " +
                         std::strerror(errno) +
                         (errno == EPERM ? " (needs CAP_SYS_NICE and ptrace access)" : "")};
      }
      if (done == 0) {
        break;  // nothing advised: do not spin
      }
      advised += static_cast<std::uint64_t>(done);
      at += static_cast<std::uint64_t>(done);
    }
  }
  return advised;
}

Result<std::vector<collectors::MemoryRegion>> guest_ram_regions(const std::string& procfs,
                                                                int pid) {
  auto regions = collectors::candidate_regions(procfs, pid, collectors::CandidateMemory::mergeable);
  if (regions && regions->empty()) {
    regions =
        collectors::candidate_regions(procfs, pid, collectors::CandidateMemory::private_anonymous);
  }
  if (!regions) {
    return regions.error();
  }
  std::erase_if(*regions,
                [](const collectors::MemoryRegion& r) { return r.end - r.start < kHugePageBytes; });
  return regions;
}

std::vector<HugePageRelease::Released> HugePageRelease::run(const Snapshot& snapshot,
                                                            std::int64_t now_ms) {
  std::vector<Released> out;
  const bool partly_mapped = snapshot.host.thp_partially_mapped_bytes.value_or(0) > 0;
  std::set<std::string> present;
  for (const auto& vm : snapshot.vms) {
    if (vm.state != VmState::running || !vm.process || vm.process->pid <= 0) {
      continue;
    }
    present.insert(vm.key());
    auto [it, first_sight] = seen_.try_emplace(vm.key(), Seen{vm.current_bytes, 0, false});
    Seen& seen = it->second;
    if (first_sight) {
      continue;
    }
    if (vm.current_bytes > seen.balloon_bytes) {
      seen.balloon_bytes = vm.current_bytes;  // grown: shrinks count from the new size
      continue;
    }
    const bool shrunk = vm.current_bytes + kHugePageReleaseMinShrinkBytes <= seen.balloon_bytes;
    const bool due = !seen.released || now_ms - seen.released_ms >= kHugePageReleaseIntervalMs;
    if (!partly_mapped || !shrunk || !due) {
      continue;
    }
    seen.balloon_bytes = vm.current_bytes;
    seen.released_ms = now_ms;
    seen.released = true;
    Released r{vm.name, 0, ""};
    auto regions = guest_ram_regions(procfs_, vm.process->pid);
    if (!regions) {
      r.error = regions.error().to_string();
    } else if (auto advised = advise_cold(vm.process->pid, *regions); !advised) {
      r.error = advised.error().to_string();
    } else {
      r.advised_bytes = *advised;
    }
    out.push_back(std::move(r));
  }
  std::erase_if(seen_, [&present](const auto& entry) { return present.count(entry.first) == 0; });
  return out;
}

}  // namespace memtide::actuators
