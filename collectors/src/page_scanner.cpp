#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include <fcntl.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/page_scanner.hpp>

namespace memtide::collectors {

namespace {

constexpr std::uint64_t kPresent = 1ULL << 63;  // pagemap: page present in RAM
constexpr std::size_t kBatchPages = 512;        // pages per process_vm_readv (2 MiB)
constexpr std::size_t kPagemapChunk = 4096;     // pagemap entries per read

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
  std::vector<std::uint64_t> batch;  // addresses of present pages awaiting a read
  batch.reserve(kBatchPages);
  std::unordered_map<std::uint64_t, std::uint64_t> next_sample;
  std::uint64_t sampled = 0;
  std::uint64_t changed = 0;
  int access_errno = 0;

  auto flush = [&]() {
    if (batch.empty()) {
      return;
    }
    std::vector<iovec> local{{buffer.data(), batch.size() * page}};
    // One remote iovec per run of contiguous pages (guest RAM is mostly resident in long runs).
    std::vector<iovec> remote;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (!remote.empty() &&
          reinterpret_cast<std::uint64_t>(remote.back().iov_base) + remote.back().iov_len ==
              batch[i]) {
        remote.back().iov_len += page;
      } else {
        // An address in the other process, never dereferenced here: the cast is the API's.
        remote.push_back(
            {reinterpret_cast<void*>(batch[i]), page});  // NOLINT(performance-no-int-to-ptr)
      }
    }
    const ssize_t n = process_vm_readv(pid, local.data(), 1, remote.data(), remote.size(), 0);
    if (n < 0 && (errno == EPERM || errno == ESRCH)) {
      access_errno = errno;  // no ptrace access, or the process is gone: nothing to count
      batch.clear();
      return;
    }
    // A partial read stops at the first run that failed (unmapped meanwhile): its pages and the
    // rest of the batch are counted as unreadable.
    const std::size_t got = n > 0 ? static_cast<std::size_t>(n) / page : 0;
    f.unreadable_pages += batch.size() - got;
    for (std::size_t i = 0; i < got; ++i) {
      const char* p = buffer.data() + i * page;
      const std::uint64_t h = XXH3_64bits(p, page);
      ++f.resident_pages;
      if (h == zero_hash && std::memcmp(p, zero.data(), page) == 0) {
        ++f.zero_pages;
      } else if (h <= options.hash_sample_below && options.hash_sample_below != 0) {
        f.sampled_hashes.push_back(h);
      }
      hashes.push_back(h);
      const std::uint64_t address = batch[i];
      if ((address / page) % stride == 0) {
        next_sample[address] = h;
        if (const auto it = sample_.find(address); it != sample_.end()) {
          ++sampled;
          changed += it->second != h ? 1 : 0;
        }
      }
    }
    batch.clear();
  };

  for (const auto& r : regions) {
    for (std::uint64_t first = r.start / page; first < r.end / page && access_errno == 0;
         first += kPagemapChunk) {
      const std::uint64_t count = std::min<std::uint64_t>(kPagemapChunk, r.end / page - first);
      const ssize_t n = pread(pagemap, entries.data(), count * sizeof(std::uint64_t),
                              static_cast<off_t>(first * sizeof(std::uint64_t)));
      if (n < 0) {
        const int err = errno;
        close(pagemap);
        return Error{pagemap_path, 0, err, "cannot read the page map"};
      }
      const auto read_entries = static_cast<std::uint64_t>(n) / sizeof(std::uint64_t);
      for (std::uint64_t i = 0; i < read_entries; ++i) {
        if ((entries[i] & kPresent) != 0) {
          batch.push_back((first + i) * page);
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
  }
  if (access_errno == 0) {
    flush();
  }
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
