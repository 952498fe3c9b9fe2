#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/page_scanner.hpp>

namespace memtide::collectors {

namespace {

constexpr std::uint64_t kPresent = 1ULL << 63;    // pagemap: page present in RAM
constexpr std::uint64_t kFile = 1ULL << 61;       // pagemap: file page or shared anonymous
constexpr std::uint64_t kExclusive = 1ULL << 56;  // pagemap: mapped by this process alone
constexpr std::size_t kBatchPages = 512;          // pages per batch read (2 MiB)
constexpr std::size_t kPagemapChunk = 4096;       // pagemap entries per read

bool parse_hex(std::string_view s, std::uint64_t& out) {
  if (s.empty() || s.size() > 16) {
    return false;
  }
  out = 0;
  for (const char c : s) {
    int d = 0;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return false;
    }
    out = out * 16 + static_cast<std::uint64_t>(d);
  }
  return true;
}

std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && line[i] == ' ') {
      ++i;
    }
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ') {
      ++i;
    }
    if (i > start) {
      out.push_back(line.substr(start, i - start));
    }
  }
  return out;
}

// The PAGEMAP_SCAN ioctl of /proc/PID/pagemap (Linux 6.7+; defined here because older
// kernel headers lack it). Layouts from include/uapi/linux/fs.h.
constexpr std::uint64_t kPageIsPfnZero = 1 << 5;
struct PageRegion {
  std::uint64_t start;
  std::uint64_t end;
  std::uint64_t categories;
};
struct PmScanArg {
  std::uint64_t size;
  std::uint64_t flags;
  std::uint64_t start;
  std::uint64_t end;
  std::uint64_t walk_end;
  std::uint64_t vec;
  std::uint64_t vec_len;
  std::uint64_t max_pages;
  std::uint64_t category_inverted;
  std::uint64_t category_mask;
  std::uint64_t category_anyof_mask;
  std::uint64_t return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PmScanArg);

// The parts of `r` mapped to the shared zero page (a read of memory never written maps it):
// present in the page map and all zero, but no memory that merging could save. nullopt when the
// kernel has no PAGEMAP_SCAN.
std::optional<std::vector<MemoryRegion>> zero_pfn_ranges(int pagemap, const MemoryRegion& r) {
  std::vector<MemoryRegion> out;
  std::vector<PageRegion> vec(1024);
  std::uint64_t start = r.start;
  while (start < r.end) {
    PmScanArg arg{};
    arg.size = sizeof arg;
    arg.start = start;
    arg.end = r.end;
    arg.vec = reinterpret_cast<std::uint64_t>(vec.data());
    arg.vec_len = vec.size();
    arg.category_mask = kPageIsPfnZero;
    arg.return_mask = kPageIsPfnZero;
    const int n = ioctl(pagemap, kPagemapScan, &arg);
    if (n < 0) {
      return std::nullopt;
    }
    for (int i = 0; i < n; ++i) {
      out.push_back({vec[static_cast<std::size_t>(i)].start, vec[static_cast<std::size_t>(i)].end});
    }
    if (arg.walk_end <= start) {
      break;
    }
    start = arg.walk_end;
  }
  return out;
}

}  // namespace

Result<std::vector<MemoryRegion>> parse_smaps_regions(std::string_view smaps, CandidateMemory which,
                                                      std::string_view origin) {
  std::vector<MemoryRegion> out;
  std::optional<MemoryRegion> current;
  bool current_anon = false;
  int number = 0;
  while (!smaps.empty()) {
    ++number;
    const auto nl = smaps.find('\n');
    const std::string_view line = smaps.substr(0, nl);
    smaps.remove_prefix(nl == std::string_view::npos ? smaps.size() : nl + 1);
    const auto f = fields(line);
    if (f.empty()) {
      continue;
    }
    if (f[0] == "VmFlags:") {
      if (!current) {
        return Error{std::string(origin), number, 0, "VmFlags before any mapping"};
      }
      const bool mergeable = std::find(f.begin() + 1, f.end(), "mg") != f.end();
      if ((which == CandidateMemory::mergeable && mergeable) ||
          (which == CandidateMemory::private_anonymous && current_anon)) {
        out.push_back(*current);
      }
      current.reset();
      continue;
    }
    const auto dash = f[0].find('-');
    if (f.size() >= 5 && dash != std::string_view::npos && f[0].back() != ':') {
      MemoryRegion r;
      if (!parse_hex(f[0].substr(0, dash), r.start) || !parse_hex(f[0].substr(dash + 1), r.end) ||
          r.end < r.start) {
        return Error{std::string(origin), number, 0,
                     "bad address range '" + std::string(f[0]) + "'"};
      }
      const std::string_view perms = f[1];
      const std::string_view path = f.size() >= 6 ? f[5] : std::string_view();
      const bool special = path == "[vdso]" || path == "[vvar]" || path == "[vsyscall]";
      current_anon =
          perms.size() == 4 && perms[3] == 'p' && f[4] == "0" && !special &&
          (path.empty() || path == "[heap]" || path == "[stack]" || path.rfind("[anon:", 0) == 0);
      current = r;
    }
  }
  return out;
}

Result<std::vector<MemoryRegion>> candidate_regions(const std::string& procfs, int pid,
                                                    CandidateMemory which) {
  const std::string path = procfs + "/" + std::to_string(pid) + "/smaps";
  auto text = read_file(path, std::size_t{256} << 20);
  if (!text) {
    return text.error();
  }
  return parse_smaps_regions(*text, which, path);
}

double PageScanFigures::zero_ratio() const {
  return resident_pages > 0 ? static_cast<double>(zero_pages) / static_cast<double>(resident_pages)
                            : 0.0;
}

double PageScanFigures::duplicate_ratio() const {
  return resident_pages > 0
             ? static_cast<double>(duplicate_pages) / static_cast<double>(resident_pages)
             : 0.0;
}

PageScanner::PageScanner(std::string procfs, std::size_t volatility_sample)
    : procfs_(std::move(procfs)), sample_size_(std::max<std::size_t>(1, volatility_sample)) {}

std::uint64_t sampled_duplicates(const std::vector<const std::vector<std::uint64_t>*>& samples,
                                 std::uint64_t below, std::uint64_t& sampled_pages) {
  std::vector<std::uint64_t> all;
  for (const auto* sample : samples) {
    const auto end = std::upper_bound(sample->begin(), sample->end(), below);
    all.insert(all.end(), sample->begin(), end);
  }
  std::sort(all.begin(), all.end());
  sampled_pages = all.size();
  const auto distinct =
      static_cast<std::uint64_t>(std::unique(all.begin(), all.end()) - all.begin());
  return sampled_pages - distinct;
}

Result<PageScanFigures> PageScanner::scan(int pid, const std::vector<MemoryRegion>& regions,
                                          const ScanOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  PageScanFigures f;
  const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  f.page_size_bytes = page;
  for (const auto& r : regions) {
    f.candidate_pages += (r.end - r.start) / page;
  }
  const std::string pagemap_path = procfs_ + "/" + std::to_string(pid) + "/pagemap";
  const int pagemap = open(pagemap_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (pagemap < 0) {
    return Error{pagemap_path, 0, errno, "cannot open the page map"};
  }
  // Every Nth candidate page (by address) is a volatility sample.
  const std::uint64_t stride = std::max<std::uint64_t>(1, f.candidate_pages / sample_size_);
  const std::vector<char> zero(page, 0);
  const std::uint64_t zero_hash = XXH3_64bits(zero.data(), page);
  std::vector<char> buffer(kBatchPages * page);
  std::vector<std::uint64_t> hashes;
  std::vector<std::uint64_t> entries(kPagemapChunk);
  // Addresses of present pages awaiting a read: pages mapped by this process alone, and the
  // others (KSM-merged or shared after fork), which are read differently (below).
  std::vector<std::uint64_t> exclusive;
  std::vector<std::uint64_t> shared;
  exclusive.reserve(kBatchPages);
  shared.reserve(kBatchPages);
  std::unordered_map<std::uint64_t, std::uint64_t> next_sample;
  std::uint64_t sampled = 0;
  std::uint64_t changed = 0;
  int access_errno = 0;

  // Exclusive pages are read with process_vm_readv (one call per batch). Shared ones through
  // /proc/PID/mem: process_vm_readv pins pages (FOLL_PIN), and since Linux 5.19 a read-only pin
  // of a shared anonymous page unshares it, so a pass would undo the merges KSM made;
  // /proc/PID/mem takes plain references (and costs about a fifth more per page).
  const std::string mem_path = procfs_ + "/" + std::to_string(pid) + "/mem";
  const int mem = open(mem_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (mem < 0) {
    const int err = errno;
    close(pagemap);
    return Error{mem_path, 0, err, "cannot open the process's memory"};
  }
  auto hash_page = [&](const char* p, std::uint64_t address) {
    const std::uint64_t h = XXH3_64bits(p, page);
    ++f.resident_pages;
    if (h == zero_hash && std::memcmp(p, zero.data(), page) == 0) {
      ++f.zero_pages;
    } else if (h <= options.hash_sample_below && options.hash_sample_below != 0) {
      f.sampled_hashes.push_back(h);
    }
    hashes.push_back(h);
    if ((address / page) % stride == 0) {
      next_sample[address] = h;
      if (const auto it = sample_.find(address); it != sample_.end()) {
        ++sampled;
        changed += it->second != h ? 1 : 0;
      }
    }
  };
  auto flush_exclusive = [&]() {
    if (exclusive.empty()) {
      return;
    }
    std::vector<iovec> local{{buffer.data(), exclusive.size() * page}};
    std::vector<iovec> remote;  // one per run of contiguous pages
    for (const std::uint64_t address : exclusive) {
      if (!remote.empty() &&
          reinterpret_cast<std::uint64_t>(remote.back().iov_base) + remote.back().iov_len ==
              address) {
        remote.back().iov_len += page;
      } else {
        // An address in the other process, never dereferenced here: the cast is the API's.
        remote.push_back(
            {reinterpret_cast<void*>(address), page});  // NOLINT(performance-no-int-to-ptr)
      }
    }
    const ssize_t n = process_vm_readv(pid, local.data(), 1, remote.data(), remote.size(), 0);
    if (n < 0 && (errno == EPERM || errno == ESRCH)) {
      access_errno = errno;  // no ptrace access, or the process is gone: nothing to count
    } else {
      // A partial read stops at the first run that failed (unmapped meanwhile): its pages and
      // the rest of the batch are counted as unreadable.
      const std::size_t got = n > 0 ? static_cast<std::size_t>(n) / page : 0;
      f.unreadable_pages += exclusive.size() - got;
      for (std::size_t k = 0; k < got; ++k) {
        hash_page(buffer.data() + k * page, exclusive[k]);
      }
    }
    exclusive.clear();
  };
  auto flush_shared = [&]() {
    std::size_t i = 0;
    while (i < shared.size() && access_errno == 0) {
      std::size_t run = 1;
      while (i + run < shared.size() && shared[i + run] == shared[i] + run * page) {
        ++run;
      }
      const ssize_t n = pread(mem, buffer.data(), run * page, static_cast<off_t>(shared[i]));
      if (n < 0 && (errno == EPERM || errno == EACCES || errno == ESRCH)) {
        access_errno = errno;
        break;
      }
      // A short read or EIO stops at a page unmapped meanwhile: the rest of the run is counted
      // as unreadable.
      const std::size_t got = n > 0 ? static_cast<std::size_t>(n) / page : 0;
      for (std::size_t k = 0; k < got; ++k) {
        hash_page(buffer.data() + k * page, shared[i + k]);
      }
      f.unreadable_pages += run - got;
      i += run;
    }
    shared.clear();
  };
  auto flush = [&]() {
    flush_exclusive();
    if (access_errno == 0) {
      flush_shared();
    }
  };

  for (const auto& r : regions) {
    // Pages mapped to the shared zero page are not counted (nor read): they use no memory.
    const auto zero_pfns = zero_pfn_ranges(pagemap, r).value_or(std::vector<MemoryRegion>{});
    auto zero_pfn = zero_pfns.begin();
    for (std::uint64_t first = r.start / page; first < r.end / page && access_errno == 0;
         first += kPagemapChunk) {
      const std::uint64_t count = std::min<std::uint64_t>(kPagemapChunk, r.end / page - first);
      const ssize_t n = pread(pagemap, entries.data(), count * sizeof(std::uint64_t),
                              static_cast<off_t>(first * sizeof(std::uint64_t)));
      if (n < 0) {
        const int err = errno;
        close(mem);
        close(pagemap);
        return Error{pagemap_path, 0, err, "cannot read the page map"};
      }
      const auto read_entries = static_cast<std::uint64_t>(n) / sizeof(std::uint64_t);
      for (std::uint64_t i = 0; i < read_entries; ++i) {
        const std::uint64_t address = (first + i) * page;
        while (zero_pfn != zero_pfns.end() && zero_pfn->end <= address) {
          ++zero_pfn;
        }
        if ((entries[i] & kPresent) == 0) {
          continue;
        }
        // The huge zero page shows as a file page; the 4 KiB one only to PAGEMAP_SCAN.
        if ((entries[i] & kFile) != 0 ||
            (zero_pfn != zero_pfns.end() && zero_pfn->start <= address)) {
          ++f.unmergeable_pages;
          continue;
        }
        auto& batch = (entries[i] & kExclusive) != 0 ? exclusive : shared;
        batch.push_back(address);
        if (batch.size() == kBatchPages) {
          flush();
          if (access_errno == 0 && options.pace &&
              !options.pace((f.resident_pages + f.unreadable_pages) * page)) {
            access_errno = ECANCELED;
          }
          if (access_errno != 0) {
            break;
          }
        }
      }
    }
  }
  if (access_errno == 0) {
    flush();
  }
  close(mem);
  close(pagemap);
  if (access_errno == ECANCELED) {
    return Error{"process " + std::to_string(pid), 0, access_errno, "scan abandoned"};
  }
  if (access_errno != 0) {
    return Error{"process " + std::to_string(pid), 0, access_errno, "cannot read its memory"};
  }
  std::sort(f.sampled_hashes.begin(), f.sampled_hashes.end());

  std::sort(hashes.begin(), hashes.end());
  f.distinct_pages =
      static_cast<std::uint64_t>(std::unique(hashes.begin(), hashes.end()) - hashes.begin());
  f.duplicate_pages = f.resident_pages - f.distinct_pages;
  if (sampled > 0) {
    f.volatile_ratio = static_cast<double>(changed) / static_cast<double>(sampled);
  }
  sample_ = std::move(next_sample);
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return f;
}

}  // namespace memtide::collectors
