#include <cerrno>
#include <cstdio>
#include <fstream>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <memtide/report/json_text.hpp>
#include <memtide/report/snapshot_json.hpp>
#include <memtide/trace/trace.hpp>

namespace memtide::trace {

TraceWriter::TraceWriter(config::RecordSection settings) : settings_(std::move(settings)) {}

TraceWriter::~TraceWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Status TraceWriter::open() {
  // O_RDWR to check how the file ends. O_NOFOLLOW: a symlink planted at the path must not
  // redirect root's writes. O_NONBLOCK: a FIFO there must not block the loop (it is refused
  // below). A file created here is 0600.
  fd_ = ::open(settings_.path.c_str(),
               O_RDWR | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
  if (fd_ < 0) {
    return Error{settings_.path, 0, errno,
                 errno == ELOOP ? "the trace path is a symbolic link; not followed"
                                : "cannot open the trace file"};
  }
  auto refuse = [this](int err, const char* why) {
    ::close(fd_);
    fd_ = -1;
    return Error{settings_.path, 0, err, why};
  };
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    return refuse(errno, "cannot stat the trace file");
  }
  // Only a plain file of memtided's own, with no other name (a hard link planted in a shared
  // directory would make the trace overwrite its target on rotation).
  if (!S_ISREG(st.st_mode)) {
    return refuse(0, "the trace path is not a regular file");
  }
  if (st.st_uid != ::geteuid() || st.st_nlink != 1) {
    return refuse(0, "the trace file belongs to another user or has other links; not written");
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
  // A file that does not end in a newline ends in a torn line (a crash or a full disk mid-write):
  // the next line starts on a line of its own, so only the torn one is lost.
  needs_newline_ = false;
  if (size_ > 0) {
    char last = '\n';
    if (::pread(fd_, &last, 1, static_cast<off_t>(size_ - 1)) == 1 && last != '\n') {
      needs_newline_ = true;
    }
  }
  return Ok{};
}

Status TraceWriter::rotate() {
  ::close(fd_);
  fd_ = -1;
  const std::string& path = settings_.path;
  if (settings_.files <= 1) {
    // Removed and created anew rather than truncated: truncation would act on whatever file the
    // path names, and this way only the name is touched.
    if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
      return Error{path, 0, errno, "cannot remove the full trace file"};
    }
    return open();
  }
  for (std::uint32_t i = settings_.files - 1; i >= 1; --i) {
    const std::string from = i == 1 ? path : path + "." + std::to_string(i - 1);
    const std::string to = path + "." + std::to_string(i);
    if (::rename(from.c_str(), to.c_str()) != 0 && errno != ENOENT) {
      return Error{from, 0, errno, "cannot rotate the trace file to " + to};
    }
  }
  return open();
}

Status TraceWriter::append(const Snapshot& snapshot) {
  std::string line = report::dump_json(report::to_json(snapshot));
  line += '\n';
  if (fd_ < 0) {
    if (auto s = open(); !s) {
      return s;
    }
  }
  if (size_ > 0 && size_ + line.size() > settings_.max_size_bytes) {
    if (auto s = rotate(); !s) {
      return s;
    }
  }
  if (needs_newline_) {
    line.insert(line.begin(), '\n');
    ++torn_lines_;
  }
  // One write(2): O_APPEND keeps a line whole against other writers; a short write (disk full)
  // leaves a torn line, which readers skip and the next append closes off.
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n < 0 || static_cast<std::size_t>(n) != line.size()) {
    const int err = n < 0 ? errno : ENOSPC;
    ::close(fd_);
    fd_ = -1;  // reopened (and its end checked) by the next append
    return Error{settings_.path, 0, err, "cannot append to the trace file"};
  }
  needs_newline_ = false;
  size_ += line.size();
  return Ok{};
}

Status read_trace(const std::string& path, const std::function<void(Snapshot&&)>& on_snapshot,
                  const std::function<void(const Error&)>& on_error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error{path, 0, errno, "cannot open the trace"};
  }
  auto handle = [&](const std::string& line, int number) {
    if (line.empty()) {
      return;
    }
    if (report::json_nesting_exceeds(line, kMaxTraceNesting)) {
      on_error(Error{
          path, number, 0,
          "nested deeper than " + std::to_string(kMaxTraceNesting) + " levels; not a snapshot"});
      return;
    }
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      on_error(Error{path, number, 0, "not valid JSON (a torn last line after a crash?)"});
      return;
    }
    auto snapshot = report::from_json(j);
    if (!snapshot) {
      on_error(Error{path, number, 0, snapshot.error().message});
      return;
    }
    on_snapshot(std::move(*snapshot));
  };
  // Read in blocks and split by hand: std::getline would take a file without newlines (or
  // /dev/zero) into memory whole.
  std::string line;
  int number = 1;
  std::vector<char> block(1 << 16);
  while (in) {
    in.read(block.data(), static_cast<std::streamsize>(block.size()));
    const auto got = static_cast<std::size_t>(in.gcount());
    std::size_t from = 0;
    for (std::size_t i = 0; i < got; ++i) {
      if (block[i] == '\n') {
        line.append(block.data() + from, i - from);
        handle(line, number++);
        line.clear();
        from = i + 1;
      }
    }
    line.append(block.data() + from, got - from);
    if (line.size() > kMaxTraceLineBytes) {
      return Error{path, number, 0,
                   "line longer than " + std::to_string(kMaxTraceLineBytes >> 20) +
                       " MiB; not a trace (reading stopped)"};
    }
  }
  if (in.bad()) {
    return Error{path, number, errno, "read error"};
  }
  handle(line, number);  // a last line without a newline (torn, or written by hand)
  return Ok{};
}

}  // namespace memtide::trace
