// Reading procfs/sysfs files. Separate from the parsers so they stay pure.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>

#include <dirent.h>

#include <memtide/core/result.hpp>

namespace memtide::collectors {

// Pseudo-files are small; anything larger than this is treated as an error rather than read
// into memory without bound.
inline constexpr std::size_t kMaxPseudoFileBytes = std::size_t{4} << 20;

// An open file descriptor, closed with its owner; -1 for none.
class OwnedFd {
 public:
  explicit OwnedFd(int fd) : fd_(fd) {}
  ~OwnedFd();
  OwnedFd(OwnedFd&& other) noexcept : fd_(other.release()) {}
  OwnedFd& operator=(OwnedFd&& other) noexcept;
  OwnedFd(const OwnedFd&) = delete;
  OwnedFd& operator=(const OwnedFd&) = delete;
  int get() const { return fd_; }

 private:
  int release() { return std::exchange(fd_, -1); }
  int fd_;
};

// Closes a directory stream from opendir() with its owner: std::unique_ptr<DIR, DirClose>.
struct DirClose {
  void operator()(DIR* d) const { closedir(d); }
};

// Reads the whole file. Returns std::nullopt when the file does not exist (ENOENT, ENOTDIR) or
// the kernel has the feature compiled in but switched off (EOPNOTSUPP, as PSI does with psi=0):
// that is "unavailable", which callers report but do not treat as a failure. Any other failure
// is an Error carrying the path and errno.
Result<std::optional<std::string>> read_optional_file(const std::string& path,
                                                      std::size_t max_bytes = kMaxPseudoFileBytes);

// read_optional_file of `name` in the directory open as `dir_fd` (O_PATH will do): the path is
// not walked again, and under /proc/PID every read is of that process even if its PID is reused
// meanwhile. `path` names the file in errors.
Result<std::optional<std::string>> read_optional_file_at(
    int dir_fd, const char* name, const std::string& path,
    std::size_t max_bytes = kMaxPseudoFileBytes);

// Like read_optional_file, but a missing file is an error too.
Result<std::string> read_file(const std::string& path, std::size_t max_bytes = kMaxPseudoFileBytes);

// Files read again and again (the host's figures, every tick): each stays open after its first
// read and is read again in place (from offset 0), which spares the kernel the path walk and the
// file's setup on every read, a few microseconds a file. Only files of procfs and sysfs are
// kept, whose content is made anew at each read from the start; any other file (a fixture tree)
// is opened for each read, so a file replaced under its name is seen. A kept file that fails is
// closed and opened afresh once. Results are those of read_optional_file and read_file. Not
// thread-safe.
class OpenFiles {
 public:
  OpenFiles() = default;
  ~OpenFiles();
  OpenFiles(const OpenFiles&) = delete;
  OpenFiles& operator=(const OpenFiles&) = delete;

  Result<std::optional<std::string>> read_optional(const std::string& path,
                                                   std::size_t max_bytes = kMaxPseudoFileBytes);
  Result<std::string> read(const std::string& path, std::size_t max_bytes = kMaxPseudoFileBytes);

 private:
  std::unordered_map<std::string, int> kept_;  // path -> open descriptor
};

}  // namespace memtide::collectors
