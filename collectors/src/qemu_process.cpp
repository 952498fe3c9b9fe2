#include <algorithm>
#include <cctype>
#include <cerrno>
#include <memory>
#include <utility>

#include <dirent.h>
#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/qemu_process.hpp>
#include <memtide/core/text.hpp>

#include "text.hpp"

namespace memtide::collectors {

using detail::content_error;
using detail::Lines;
using detail::quote;
using detail::trim;

Result<ProcessMemory> parse_process_status(std::string_view text, std::string_view origin) {
  ProcessMemory memory;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) {
      continue;
    }
    const auto key = line.substr(0, colon);
    std::optional<std::uint64_t>* dest = key == "VmRSS"    ? &memory.rss_bytes
                                         : key == "VmSwap" ? &memory.swap_bytes
                                                           : nullptr;
    if (dest == nullptr) {
      continue;
    }
    auto value = trim(line.substr(colon + 1));
    if (value.size() < 3 || value.substr(value.size() - 3) != " kB") {
      return content_error(origin, lines.number(),
                           shorten_utf8(key, 40) + ": expected a value in kB, got " + quote(value));
    }
    const auto kib = detail::to_u64(trim(value.substr(0, value.size() - 3)));
    const auto bytes = kib ? detail::checked_mul(*kib, 1024) : std::nullopt;
    if (!bytes) {
      return content_error(origin, lines.number(),
                           shorten_utf8(key, 40) + ": not a valid size: " + quote(value));
    }
    *dest = *bytes;
  }
  return memory;
}

Result<ProcessKsmStat> parse_process_ksm_stat(std::string_view text, std::uint64_t page_size_bytes,
                                              std::string_view origin) {
  ProcessKsmStat stat;
  bool have_rmap = false;
  Lines lines(text);
  std::string_view line;
  while (lines.next(line)) {
    if (trim(line).empty()) {
      continue;
    }
    const auto sp = line.find(' ');
    if (sp == std::string_view::npos) {
      return content_error(origin, lines.number(), "expected 'key value', got " + quote(line));
    }
    const auto key = line.substr(0, sp);
    const auto value = trim(line.substr(sp + 1));
    if (key == "ksm_process_profit") {
      const auto v = detail::to_i64(value);
      if (!v) {
        return content_error(origin, lines.number(), "ksm_process_profit: not an integer");
      }
      stat.profit_bytes = *v;
      continue;
    }
    const bool in_pages = key == "ksm_zero_pages" || key == "ksm_merging_pages";
    if (key != "ksm_rmap_items" && !in_pages) {
      continue;  // ksm_merge_any:, ksm_mergeable: and future fields
    }
    const auto v = detail::to_u64(value);
    const auto scaled = v && in_pages ? detail::checked_mul(*v, page_size_bytes) : v;
    if (!scaled) {
      return content_error(origin, lines.number(),
                           shorten_utf8(key, 40) + ": not a non-negative integer: " + quote(value));
    }
    if (key == "ksm_rmap_items") {
      stat.rmap_items = *scaled;
      have_rmap = true;
    } else if (key == "ksm_zero_pages") {
      stat.zero_pages_bytes = *scaled;
    } else {
      stat.merging_bytes = *scaled;
    }
  }
  if (!have_rmap) {
    return content_error(origin, 0, "ksm_rmap_items is missing");
  }
  return stat;
}

std::optional<ProcessKsmStat> empty_process_ksm_stat(const KsmSample& host) {
  if (!host.general_profit_bytes) {
    return std::nullopt;
  }
  ProcessKsmStat stat;
  stat.merging_bytes = 0;
  stat.profit_bytes = 0;
  if (host.zero_pages_bytes) {
    stat.zero_pages_bytes = 0;
  }
  return stat;
}

std::vector<std::uint32_t> parse_status_uids(std::string_view status) {
  Lines lines(status);
  std::string_view line;
  while (lines.next(line)) {
    if (line.rfind("Uid:", 0) != 0) {
      continue;
    }
    std::vector<std::uint32_t> uids;
    std::string_view rest = line.substr(4);
    while (!rest.empty()) {
      const auto start = rest.find_first_not_of(" \t");
      if (start == std::string_view::npos) {
        break;
      }
      rest.remove_prefix(start);
      const auto end = rest.find_first_of(" \t");
      const auto value = detail::to_u64(rest.substr(0, end));
      if (!value || *value > UINT32_MAX) {
        return {};
      }
      uids.push_back(static_cast<std::uint32_t>(*value));
      rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    }
    return uids.size() == 4 ? uids : std::vector<std::uint32_t>{};
  }
  return {};
}

namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// The value following "-uuid" in a NUL-separated command line, lower-cased; "" when absent.
std::string uuid_argument(std::string_view cmdline) {
  bool next_is_uuid = false;
  while (!cmdline.empty()) {
    const auto end = cmdline.find('\0');
    const auto arg = cmdline.substr(0, end);
    if (next_is_uuid) {
      return lower(std::string(arg));
    }
    next_is_uuid = arg == "-uuid";
    cmdline = end == std::string_view::npos ? std::string_view{} : cmdline.substr(end + 1);
  }
  return "";
}

}  // namespace

std::map<std::string, std::vector<QemuCandidate>> find_qemu_candidates(const std::string& procfs) {
  std::map<std::string, std::vector<QemuCandidate>> found;
  std::unique_ptr<DIR, DirClose> dir(opendir(procfs.c_str()));
  if (!dir) {
    return found;
  }
  while (const dirent* entry = readdir(dir.get())) {
    const auto pid = detail::to_u64(entry->d_name);
    if (!pid || *pid > INT32_MAX) {
      continue;
    }
    // Everything below is read through one descriptor of the process's directory: the same
    // process throughout, even if it exits and its PID is reused meanwhile (the reads then fail),
    // and /proc/PID is walked once rather than for each file.
    const OwnedFd process_dir(
        openat(dirfd(dir.get()), entry->d_name, O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (process_dir.get() < 0) {
      continue;
    }
    const std::string base = procfs + "/" + entry->d_name;
    auto cmdline = read_optional_file_at(process_dir.get(), "cmdline", base + "/cmdline", 1 << 20);
    if (!cmdline || !cmdline->has_value()) {
      continue;
    }
    auto uuid = uuid_argument(**cmdline);
    if (uuid.empty()) {
      continue;
    }
    QemuCandidate c;
    c.pid = static_cast<int>(*pid);
    if (auto status = read_optional_file_at(process_dir.get(), "status", base + "/status");
        status && status->has_value()) {
      c.uids = parse_status_uids(**status);
      if (auto memory = parse_process_status(**status, base + "/status")) {
        c.rss_bytes = memory->rss_bytes;
        c.swap_bytes = memory->swap_bytes;
      }
    }
    c.statm = std::make_shared<const OwnedFd>(
        openat(process_dir.get(), "statm", O_RDONLY | O_CLOEXEC | O_NOCTTY));
    char link[4096];
    const ssize_t n = readlinkat(process_dir.get(), "exe", link, sizeof link - 1);
    if (n > 0) {
      c.exe.assign(link, static_cast<std::size_t>(n));
    }
    // The file itself, through the process's link: still there after a package upgrade
    // replaced the binary on disk (the link then reads "PATH (deleted)").
    struct stat st {};
    if (fstatat(process_dir.get(), "exe", &st, 0) == 0) {
      c.exe_owner = st.st_uid;
      c.exe_mode = st.st_mode;
    }
    found[uuid].push_back(std::move(c));
  }
  for (auto& [uuid, candidates] : found) {
    std::sort(candidates.begin(), candidates.end(),
              [](const QemuCandidate& a, const QemuCandidate& b) { return a.pid < b.pid; });
  }
  return found;
}

std::string untrusted_reason(const QemuCandidate& c, const std::vector<std::uint32_t>& qemu_uids) {
  if (c.uids.empty()) {
    return "its owner cannot be read";
  }
  for (const auto uid : c.uids) {
    if (std::find(qemu_uids.begin(), qemu_uids.end(), uid) == qemu_uids.end()) {
      return "it runs as uid " + std::to_string(uid) + ", not as a user QEMU runs as";
    }
  }
  std::string name = c.exe;
  constexpr std::string_view kDeleted = " (deleted)";
  if (name.size() > kDeleted.size() &&
      name.compare(name.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0) {
    name.resize(name.size() - kDeleted.size());
  }
  name = name.substr(name.rfind('/') == std::string::npos ? 0 : name.rfind('/') + 1);
  if (name.rfind("qemu-system-", 0) != 0 && name != "qemu-kvm") {
    return "its executable '" + shorten_utf8(c.exe, 80) + "' is not a QEMU binary";
  }
  if (!c.exe_owner || *c.exe_owner != 0 || (c.exe_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return "its executable is not a root-owned file writable by root alone";
  }
  return "";
}

std::vector<std::uint32_t> default_qemu_uids() {
  std::vector<std::uint32_t> uids{0};
  for (const char* user : {"libvirt-qemu", "qemu"}) {
    passwd entry{};
    passwd* result = nullptr;
    std::vector<char> buffer(4096);
    if (getpwnam_r(user, &entry, buffer.data(), buffer.size(), &result) == 0 && result != nullptr) {
      uids.push_back(result->pw_uid);
    }
  }
  return uids;
}

std::optional<QemuProcess> read_qemu_process(const std::string& procfs, int pid,
                                             std::uint64_t page_size_bytes) {
  return QemuProcessReader(procfs, pid, page_size_bytes).read(ProcessReadHints{});
}

Result<std::uint64_t> parse_process_statm(std::string_view text, std::uint64_t page_size_bytes,
                                          std::string_view origin) {
  // "size resident shared text lib data dt", in pages, on one line.
  const auto first_end = text.find(' ');
  if (first_end == std::string_view::npos) {
    return content_error(origin, 1, "expected 7 fields, got " + quote(shorten_utf8(text, 80)));
  }
  auto rest = text.substr(first_end + 1);
  const auto pages = detail::to_u64(rest.substr(0, rest.find(' ')));
  const auto bytes = pages ? detail::checked_mul(*pages, page_size_bytes) : std::nullopt;
  if (!bytes) {
    return content_error(origin, 1, "resident: not a page count: " + quote(shorten_utf8(text, 80)));
  }
  return *bytes;
}

QemuProcessReader::QemuProcessReader(std::string procfs, int pid, std::uint64_t page_size_bytes)
    : base_(std::move(procfs) + "/" + std::to_string(pid)),
      pid_(pid),
      page_size_bytes_(page_size_bytes),
      statm_path_(base_ + "/statm"),
      statm_(std::make_shared<const OwnedFd>(
          ::open(statm_path_.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY))) {}

QemuProcessReader::QemuProcessReader(std::string procfs, const QemuCandidate& found,
                                     std::uint64_t page_size_bytes, const ProcessReadHints& hints)
    : base_(std::move(procfs) + "/" + std::to_string(found.pid)),
      pid_(found.pid),
      page_size_bytes_(page_size_bytes),
      statm_path_(base_ + "/statm"),
      // One the search could not open is read by path at each read, as read_rss does for any.
      statm_(found.statm ? found.statm : std::make_shared<const OwnedFd>(-1)),
      first_rss_(found.rss_bytes) {
  if (hints.swap_epoch) {
    swap_bytes_ = found.swap_bytes;
    swap_read_ = true;
    swap_epoch_ = *hints.swap_epoch;
  }
}

std::optional<std::optional<std::uint64_t>> QemuProcessReader::read_rss() {
  const std::string& origin = statm_path_;
  std::string text;
  if (statm_->get() >= 0) {
    char buffer[256];
    ssize_t n = 0;
    do {
      n = ::pread(statm_->get(), buffer, sizeof buffer, 0);
    } while (n < 0 && errno == EINTR);
    if (n <= 0) {
      return std::nullopt;  // ESRCH, or nothing: the process has exited
    }
    text.assign(buffer, static_cast<std::size_t>(n));
  } else {
    auto content = read_optional_file(origin, 4096);
    if (!content) {
      return std::optional<std::uint64_t>{};  // there, but unreadable
    }
    if (!content->has_value() || (*content)->empty()) {
      return std::nullopt;
    }
    text = std::move(**content);
  }
  auto rss = parse_process_statm(text, page_size_bytes_, origin);
  return rss ? std::optional<std::uint64_t>(*rss) : std::nullopt;
}

std::optional<QemuProcess> QemuProcessReader::read(const ProcessReadHints& hints) {
  // The first read of a process the search found takes the resident set it read moments ago.
  auto rss = first_rss_ ? std::optional<std::optional<std::uint64_t>>(first_rss_) : read_rss();
  first_rss_.reset();
  if (!rss) {
    return std::nullopt;
  }
  QemuProcess process;
  process.pid = pid_;
  process.rss_bytes = *rss;
  if (!hints.swap_in_use) {
    swap_bytes_ = 0;
    swap_read_ = false;  // read again once swap is in use
  } else if (!swap_read_ || !hints.swap_epoch || *hints.swap_epoch != swap_epoch_) {
    auto status = read_optional_file(base_ + "/status");
    if (status && !status->has_value()) {
      return std::nullopt;  // exited since statm was read
    }
    swap_bytes_.reset();
    if (status) {
      if (auto memory = parse_process_status(**status, base_ + "/status")) {
        swap_bytes_ = memory->swap_bytes;
      }
    }
    swap_read_ = true;
    swap_epoch_ = hints.swap_epoch.value_or(0);
  }
  process.swap_bytes = swap_bytes_;
  if (!ksm_read_ || !hints.ksm_epoch || *hints.ksm_epoch != ksm_epoch_) {
    // While KSM holds nothing the file's reading is known without reading it. ksm_stat needs
    // ptrace-read access to the process; without it the figure is just absent.
    ksm_ = hints.ksm_all_zero;
    if (!ksm_) {
      if (auto text = read_optional_file(base_ + "/ksm_stat"); text && text->has_value()) {
        if (auto ksm = parse_process_ksm_stat(**text, page_size_bytes_, base_ + "/ksm_stat")) {
          ksm_ = *ksm;
        }
      }
    }
    ksm_read_ = true;
    ksm_epoch_ = hints.ksm_epoch.value_or(0);
  }
  process.ksm = ksm_;
  return process;
}

}  // namespace memtide::collectors
