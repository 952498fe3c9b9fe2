#include "trace.hpp"

#include <cerrno>
#include <cstdio>
#include <fstream>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_text.hpp"
#include "snapshot_json.hpp"

namespace memtide::daemon {

TraceWriter::TraceWriter(config::RecordSection settings) : settings_(std::move(settings)) {}

TraceWriter::~TraceWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

Status TraceWriter::open() {
  fd_ = ::open(settings_.path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) {
    return Error{settings_.path, 0, errno, "cannot open the trace file"};
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    return Error{settings_.path, 0, err, "cannot stat the trace file"};
  }
  size_ = static_cast<std::uint64_t>(st.st_size);
  return Ok{};
}

Status TraceWriter::rotate() {
  ::close(fd_);
  fd_ = -1;
  const std::string& path = settings_.path;
  if (settings_.files <= 1) {
    if (::truncate(path.c_str(), 0) != 0 && errno != ENOENT) {
      return Error{path, 0, errno, "cannot truncate the trace file"};
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
  std::string line = dump_json(to_json(snapshot));
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
  // One write(2): O_APPEND keeps a line whole against other writers; a short write (disk full)
  // leaves a torn line, which readers skip.
  const ssize_t n = ::write(fd_, line.data(), line.size());
  if (n < 0 || static_cast<std::size_t>(n) != line.size()) {
    const int err = n < 0 ? errno : ENOSPC;
    ::close(fd_);
    fd_ = -1;
    return Error{settings_.path, 0, err, "cannot append to the trace file"};
  }
  size_ += line.size();
  return Ok{};
}

Status read_trace(const std::string& path, const std::function<void(Snapshot&&)>& on_snapshot,
                  const std::function<void(const Error&)>& on_error) {
  std::ifstream in(path);
  if (!in) {
    return Error{path, 0, errno, "cannot open the trace"};
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.empty()) {
      continue;
    }
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      on_error(Error{path, number, 0, "not valid JSON (a torn last line after a crash?)"});
      continue;
    }
    auto snapshot = from_json(j);
    if (!snapshot) {
      on_error(Error{path, number, 0, snapshot.error().message});
      continue;
    }
    on_snapshot(std::move(*snapshot));
  }
  if (in.bad()) {
    return Error{path, number, errno, "read error"};
  }
  return Ok{};
}

}  // namespace memtide::daemon
