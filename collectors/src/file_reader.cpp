#include <cerrno>

#include <fcntl.h>
#include <unistd.h>

#include <memtide/collectors/file_reader.hpp>

namespace memtide::collectors {

Result<std::optional<std::string>> read_optional_file(const std::string& path,
                                                      std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR || err == EOPNOTSUPP) {
      return std::optional<std::string>{};
    }
    return Error{path, 0, err, "cannot open"};
  }
  std::string content;
  char buffer[8192];
  while (true) {
    const ssize_t n = ::read(fd, buffer, sizeof buffer);
    if (n < 0) {
      const int err = errno;
      if (err == EINTR) {
        continue;
      }
      ::close(fd);
      if (err == EOPNOTSUPP) {
        return std::optional<std::string>{};
      }
      return Error{path, 0, err, "cannot read"};
    }
    if (n == 0) {
      break;
    }
    if (content.size() + static_cast<std::size_t>(n) > max_bytes) {
      ::close(fd);
      return Error{path, 0, 0,
                   "larger than " + std::to_string(max_bytes) + " bytes; refusing to read it"};
    }
    content.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return std::optional<std::string>{std::move(content)};
}

Result<std::string> read_file(const std::string& path, std::size_t max_bytes) {
  auto content = read_optional_file(path, max_bytes);
  if (!content) {
    return content.error();
  }
  if (!content->has_value()) {
    return Error{path, 0, ENOENT, "cannot read"};
  }
  return std::move(**content);
}

}  // namespace memtide::collectors
