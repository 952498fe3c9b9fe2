#include <cerrno>

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <memtide/collectors/file_reader.hpp>

namespace memtide::collectors {

OwnedFd::~OwnedFd() {
  if (fd_ >= 0) {
    ::close(fd_);
  }
}

OwnedFd& OwnedFd::operator=(OwnedFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) {
      ::close(fd_);
    }
    fd_ = other.release();
  }
  return *this;
}

namespace {

Result<std::optional<std::string>> open_error(const std::string& path, int err) {
  if (err == ENOENT || err == ENOTDIR || err == EOPNOTSUPP) {
    return std::optional<std::string>{};
  }
  return Error{path, 0, err, "cannot open"};
}

// Reads `fd` whole from offset 0, without moving its offset. The descriptor stays open.
Result<std::optional<std::string>> read_from_start(int fd, const std::string& path,
                                                   std::size_t max_bytes) {
  std::string content;
  char buffer[8192];
  while (true) {
    const ssize_t n = ::pread(fd, buffer, sizeof buffer, static_cast<off_t>(content.size()));
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) {
        continue;
      }
      if (err == EOPNOTSUPP) {
        return std::optional<std::string>{};
      }
      return Error{path, 0, err, "cannot read"};
    }
    if (n == 0) {
      break;
    }
    if (content.size() + static_cast<std::size_t>(n) > max_bytes) {
      return Error{path, 0, 0,
                   "larger than " + std::to_string(max_bytes) + " bytes; refusing to read it"};
    }
    content.append(buffer, static_cast<std::size_t>(n));
  }
  return std::optional<std::string>{std::move(content)};
}

bool pseudo_file(int fd) {
  struct statfs fs {};
  return fstatfs(fd, &fs) == 0 && (fs.f_type == PROC_SUPER_MAGIC || fs.f_type == SYSFS_MAGIC);
}

}  // namespace

Result<std::optional<std::string>> read_optional_file(const std::string& path,
                                                      std::size_t max_bytes) {
  return read_optional_file_at(AT_FDCWD, path.c_str(), path, max_bytes);
}

Result<std::optional<std::string>> read_optional_file_at(int dir_fd, const char* name,
                                                         const std::string& path,
                                                         std::size_t max_bytes) {
  const int fd = ::openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return open_error(path, errno);
  }
  auto content = read_from_start(fd, path, max_bytes);
  ::close(fd);
  return content;
}

namespace {

// A file that must exist: its absence is an error too.
Result<std::string> required(Result<std::optional<std::string>> content, const std::string& path) {
  if (!content) {
    return content.error();
  }
  if (!content->has_value()) {
    return Error{path, 0, ENOENT, "cannot read"};
  }
  return std::move(**content);
}

}  // namespace

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
  return required(read_optional_file(path, max_bytes), path);
}

OpenFiles::~OpenFiles() {
  for (const auto& [path, fd] : kept_) {
    ::close(fd);
  }
}

Result<std::optional<std::string>> OpenFiles::read_optional(const std::string& path,
                                                            std::size_t max_bytes) {
  if (const auto it = kept_.find(path); it != kept_.end()) {
    auto content = read_from_start(it->second, path, max_bytes);
    if (content && content->has_value()) {
      return content;
    }
    ::close(it->second);  // failed in place: opened afresh below
    kept_.erase(it);
  }
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    return open_error(path, errno);
  }
  auto content = read_from_start(fd, path, max_bytes);
  if (content && content->has_value() && pseudo_file(fd)) {
    kept_.emplace(path, fd);
  } else {
    ::close(fd);
  }
  return content;
}

Result<std::string> OpenFiles::read(const std::string& path, std::size_t max_bytes) {
  return required(read_optional(path, max_bytes), path);
}

}  // namespace memtide::collectors
