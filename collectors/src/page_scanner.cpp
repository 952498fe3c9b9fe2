#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/page_scanner.hpp>
#include <memtide/core/text.hpp>

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
                     "bad address range '" + shorten_utf8(f[0], 40) + "'"};
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

namespace {

// One pass over one process: the buffers, the batches awaiting a read and the counts. Kept in
// one object so that each step (walk a window of the address space, read a batch, hash a page)
// is a function of its own.
class Pass {
 public:
  Pass(int pid, std::uint64_t page, const ScanOptions& options, std::uint64_t stride,
       const std::unordered_map<std::uint64_t, std::uint64_t>& previous_sample, int pagemap,
       int mem)
      : pid_(pid),
        page_(page),
        options_(options),
        max_hashes_(std::max<std::size_t>(options.max_hashes, 2)),
        stride_(stride),
        previous_sample_(previous_sample),
        pagemap_(pagemap),
        mem_(mem),
        zero_(page, 0),
        zero_hash_(XXH3_64bits(zero_.data(), page)),
        buffer_(kBatchPages * page),
        entries_(kPagemapChunk) {
    exclusive_.reserve(kBatchPages);
    shared_.reserve(kBatchPages);
  }

  // Walks region `r`, a window of the address space at a time, reading what is resident.
  // Returns an errno: 0, ECANCELED (pace said stop), or a reason the process cannot be read.
  int walk(const MemoryRegion& r) {
    for (std::uint64_t start = r.start; start < r.end && error_ == 0;) {
      const std::uint64_t end = std::min(r.end, start + kWindowPages * page_);
      if (const int err = walk_window(start, end); err != 0) {
        return err;
      }
      start = end;
      // Paced by work done, not only by pages read: a sparse mapping of many TiB with little
      // resident costs CPU in the walk alone, and a stop must reach a pass within milliseconds.
      paced();
    }
    return error_;
  }

  // Reads the batches still waiting; then the figures are complete.
  int finish() {
    if (error_ == 0) {
      flush();
    }
    return error_;
  }

  PageScanFigures figures;
  std::vector<std::uint64_t> kept;  // non-zero hashes <= keep_below, for counting duplicates
  std::uint64_t keep_below = std::numeric_limits<std::uint64_t>::max();
  std::unordered_map<std::uint64_t, std::uint64_t> next_sample;
  std::uint64_t sampled = 0;  // volatility sample pages seen in both passes
  std::uint64_t changed = 0;  // of which changed
  int pagemap_errno = 0;      // the page map could not be read

 private:
  // The 64 MiB of address space walked between two pace calls.
  static constexpr std::uint64_t kWindowPages = 16384;

  int walk_window(std::uint64_t start, std::uint64_t end) {
    // Pages mapped to the shared zero page are not counted (nor read): they use no memory.
    const auto zero_pfns =
        zero_pfn_ranges(pagemap_, {start, end}).value_or(std::vector<MemoryRegion>{});
    auto zero_pfn = zero_pfns.begin();
    for (std::uint64_t first = start / page_; first < end / page_ && error_ == 0;
         first += kPagemapChunk) {
      const std::uint64_t count = std::min<std::uint64_t>(kPagemapChunk, end / page_ - first);
      const ssize_t n = pread(pagemap_, entries_.data(), count * sizeof(std::uint64_t),
                              static_cast<off_t>(first * sizeof(std::uint64_t)));
      if (n < 0) {
        pagemap_errno = errno;
        return pagemap_errno;
      }
      const auto read_entries = static_cast<std::uint64_t>(n) / sizeof(std::uint64_t);
      for (std::uint64_t i = 0; i < read_entries && error_ == 0; ++i) {
        const std::uint64_t address = (first + i) * page_;
        while (zero_pfn != zero_pfns.end() && zero_pfn->end <= address) {
          ++zero_pfn;
        }
        if ((entries_[i] & kPresent) == 0) {
          continue;
        }
        // The huge zero page shows as a file page; the 4 KiB one only to PAGEMAP_SCAN.
        if ((entries_[i] & kFile) != 0 ||
            (zero_pfn != zero_pfns.end() && zero_pfn->start <= address)) {
          ++figures.unmergeable_pages;
          continue;
        }
        auto& batch = (entries_[i] & kExclusive) != 0 ? exclusive_ : shared_;
        batch.push_back(address);
        if (batch.size() == kBatchPages) {
          flush();
          paced();
        }
      }
    }
    return 0;
  }

  void paced() {
    if (error_ == 0 && options_.pace &&
        !options_.pace((figures.resident_pages + figures.unreadable_pages) * page_)) {
      error_ = ECANCELED;
    }
  }

  void hash_page(const char* p, std::uint64_t address) {
    const std::uint64_t h = XXH3_64bits(p, page_);
    ++figures.resident_pages;
    if (h == zero_hash_ && std::memcmp(p, zero_.data(), page_) == 0) {
      ++figures.zero_pages;
    } else if (h <= keep_below) {
      kept.push_back(h);
      // The per-pass memory budget: past it, keep only the lower half of the hash range. A
      // content's copies all hash alike, so the kept pages are a sample in which duplicates
      // keep their share.
      while (kept.size() >= max_hashes_) {
        keep_below /= 2;
        std::erase_if(kept, [this](std::uint64_t k) { return k > keep_below; });
      }
    }
    if ((address / page_) % stride_ == 0) {
      next_sample[address] = h;
      if (const auto it = previous_sample_.find(address); it != previous_sample_.end()) {
        ++sampled;
        changed += it->second != h ? 1 : 0;
      }
    }
  }

  void flush() {
    flush_exclusive();
    if (error_ == 0) {
      flush_shared();
    }
  }

  // Pages mapped by the process alone: process_vm_readv, one call per batch.
  void flush_exclusive() {
    if (exclusive_.empty()) {
      return;
    }
    std::vector<iovec> local{{buffer_.data(), exclusive_.size() * page_}};
    std::vector<iovec> remote;  // one per run of contiguous pages
    for (const std::uint64_t address : exclusive_) {
      if (!remote.empty() &&
          reinterpret_cast<std::uint64_t>(remote.back().iov_base) + remote.back().iov_len ==
              address) {
        remote.back().iov_len += page_;
      } else {
        // An address in the other process, never dereferenced here: the cast is the API's.
        remote.push_back(
            {reinterpret_cast<void*>(address), page_});  // NOLINT(performance-no-int-to-ptr)
      }
    }
    const ssize_t n = process_vm_readv(pid_, local.data(), 1, remote.data(), remote.size(), 0);
    if (n < 0 && (errno == EPERM || errno == ESRCH)) {
      error_ = errno;  // no ptrace access, or the process is gone: nothing to count
    } else {
      // A partial read stops at the first run that failed (unmapped meanwhile): its pages and
      // the rest of the batch are counted as unreadable.
      const std::size_t got = n > 0 ? static_cast<std::size_t>(n) / page_ : 0;
      figures.unreadable_pages += exclusive_.size() - got;
      for (std::size_t k = 0; k < got; ++k) {
        hash_page(buffer_.data() + k * page_, exclusive_[k]);
      }
    }
    exclusive_.clear();
  }

  // Shared pages (KSM-merged, or shared after fork) through /proc/PID/mem: process_vm_readv
  // pins pages (FOLL_PIN), and since Linux 5.19 a read-only pin of a shared anonymous page
  // unshares it, so a pass would undo the merges KSM made; /proc/PID/mem takes plain references
  // (and costs about a fifth more per page).
  void flush_shared() {
    std::size_t i = 0;
    while (i < shared_.size() && error_ == 0) {
      std::size_t run = 1;
      while (i + run < shared_.size() && shared_[i + run] == shared_[i] + run * page_) {
        ++run;
      }
      const ssize_t n = pread(mem_, buffer_.data(), run * page_, static_cast<off_t>(shared_[i]));
      if (n < 0 && (errno == EPERM || errno == EACCES || errno == ESRCH)) {
        error_ = errno;
        break;
      }
      // A short read or EIO stops at a page unmapped meanwhile: the rest of the run is counted
      // as unreadable.
      const std::size_t got = n > 0 ? static_cast<std::size_t>(n) / page_ : 0;
      for (std::size_t k = 0; k < got; ++k) {
        hash_page(buffer_.data() + k * page_, shared_[i + k]);
      }
      figures.unreadable_pages += run - got;
      i += run;
    }
    shared_.clear();
  }

  int pid_;
  std::uint64_t page_;
  const ScanOptions& options_;
  std::size_t max_hashes_;
  std::uint64_t stride_;
  const std::unordered_map<std::uint64_t, std::uint64_t>& previous_sample_;
  int pagemap_;
  int mem_;
  std::vector<char> zero_;
  std::uint64_t zero_hash_;
  std::vector<char> buffer_;
  std::vector<std::uint64_t> entries_;
  // Addresses of present pages awaiting a read, by how they are read.
  std::vector<std::uint64_t> exclusive_;
  std::vector<std::uint64_t> shared_;
  int error_ = 0;
};

// The figures of a finished pass: duplicates among the non-zero pages (exact while every hash
// fit the budget, else the share of duplicates in the kept sample applied to all of them), the
// hash sample for estimates across processes, and the volatile share.
PageScanFigures summarise(Pass& pass, std::uint64_t page, std::uint64_t candidate_pages,
                          const ScanOptions& options) {
  PageScanFigures f = std::move(pass.figures);
  f.page_size_bytes = page;
  f.candidate_pages = candidate_pages;
  auto& kept = pass.kept;
  std::sort(kept.begin(), kept.end());
  const std::uint64_t nonzero = f.resident_pages - f.zero_pages;
  const auto kept_pages = static_cast<std::uint64_t>(kept.size());
  const std::uint64_t kept_distinct = kept_pages == 0 ? 0 : [&] {
    std::uint64_t d = 1;
    for (std::size_t i = 1; i < kept.size(); ++i) {
      d += kept[i] != kept[i - 1] ? 1 : 0;
    }
    return d;
  }();
  std::uint64_t nonzero_duplicates = kept_pages - kept_distinct;
  if (kept_pages > 0 && kept_pages < nonzero) {
    nonzero_duplicates = static_cast<std::uint64_t>(
        std::llround(static_cast<double>(nonzero_duplicates) * static_cast<double>(nonzero) /
                     static_cast<double>(kept_pages)));
  }
  f.kept_hash_ratio =
      nonzero > 0 ? static_cast<double>(kept_pages) / static_cast<double>(nonzero) : 1.0;
  f.duplicate_pages = nonzero_duplicates + (f.zero_pages > 1 ? f.zero_pages - 1 : 0);
  f.distinct_pages = f.resident_pages - f.duplicate_pages;
  // The sample for estimates across processes: at most the threshold the budget left.
  f.hash_sample_below = std::min(options.hash_sample_below, pass.keep_below);
  if (options.hash_sample_below != 0) {
    const auto end = std::upper_bound(kept.begin(), kept.end(), f.hash_sample_below);
    f.sampled_hashes.assign(kept.begin(), end);
  }
  if (pass.sampled > 0) {
    f.volatile_ratio = static_cast<double>(pass.changed) / static_cast<double>(pass.sampled);
  }
  return f;
}

// A process's page map and memory, open for reading, closed with this.
struct MemoryFiles {
  std::string pagemap_path;
  int pagemap = -1;
  int mem = -1;
  MemoryFiles() = default;
  MemoryFiles(const MemoryFiles&) = delete;
  MemoryFiles& operator=(const MemoryFiles&) = delete;
  ~MemoryFiles() {
    if (mem >= 0) {
      close(mem);
    }
    if (pagemap >= 0) {
      close(pagemap);
    }
  }
};

Result<std::unique_ptr<MemoryFiles>> open_memory(const std::string& procfs, int pid) {
  auto files = std::make_unique<MemoryFiles>();
  files->pagemap_path = procfs + "/" + std::to_string(pid) + "/pagemap";
  files->pagemap = open(files->pagemap_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (files->pagemap < 0) {
    return Error{files->pagemap_path, 0, errno, "cannot open the page map"};
  }
  const std::string mem_path = procfs + "/" + std::to_string(pid) + "/mem";
  files->mem = open(mem_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (files->mem < 0) {
    return Error{mem_path, 0, errno, "cannot open the process's memory"};
  }
  return files;
}

}  // namespace

Result<PageScanFigures> PageScanner::scan(int pid, const std::vector<MemoryRegion>& regions,
                                          const ScanOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  std::uint64_t candidate_pages = 0;
  for (const auto& r : regions) {
    candidate_pages += (r.end - r.start) / page;
  }
  auto files = open_memory(procfs_, pid);
  if (!files) {
    return files.error();
  }
  const std::string pagemap_path = (*files)->pagemap_path;  // outlives the files
  const int pagemap = (*files)->pagemap;
  const int mem = (*files)->mem;
  // Every Nth candidate page (by address) is a volatility sample.
  const std::uint64_t stride = std::max<std::uint64_t>(1, candidate_pages / sample_size_);
  Pass pass(pid, page, options, stride, sample_, pagemap, mem);
  int err = 0;
  for (const auto& r : regions) {
    if ((err = pass.walk(r)) != 0) {
      break;
    }
  }
  if (err == 0) {
    err = pass.finish();
  }
  files->reset();
  if (pass.pagemap_errno != 0) {
    return Error{pagemap_path, 0, pass.pagemap_errno, "cannot read the page map"};
  }
  if (err == ECANCELED) {
    return Error{"process " + std::to_string(pid), 0, err, "scan abandoned"};
  }
  if (err != 0) {
    return Error{"process " + std::to_string(pid), 0, err, "cannot read its memory"};
  }

  PageScanFigures f = summarise(pass, page, candidate_pages, options);
  sample_ = std::move(pass.next_sample);
  f.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  return f;
}

Result<ProbeFigures> PageScanner::probe(int pid, std::size_t max_pages) const {
  ProbeFigures out;
  if (sample_.empty() || max_pages == 0) {
    return out;
  }
  const auto page = static_cast<std::uint64_t>(sysconf(_SC_PAGESIZE));
  auto files = open_memory(procfs_, pid);
  if (!files) {
    return files.error();
  }
  const int pagemap = (*files)->pagemap;
  const int mem = (*files)->mem;
  std::vector<char> buffer(page);
  const std::size_t step = std::max<std::size_t>(1, sample_.size() / max_pages);
  std::size_t i = 0;
  for (const auto& [address, hash] : sample_) {
    if (i++ % step != 0) {
      continue;
    }
    std::uint64_t entry = 0;
    if (pread(pagemap, &entry, sizeof entry, static_cast<off_t>(address / page * sizeof entry)) !=
            sizeof entry ||
        (entry & kPresent) == 0 || (entry & kFile) != 0) {
      continue;
    }
    if (pread(mem, buffer.data(), page, static_cast<off_t>(address)) !=
        static_cast<ssize_t>(page)) {
      continue;  // unmapped meanwhile
    }
    ++out.probed_pages;
    out.changed_pages += XXH3_64bits(buffer.data(), page) != hash ? 1 : 0;
  }
  return out;
}

}  // namespace memtide::collectors
