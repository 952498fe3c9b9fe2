#include "config_files.hpp"

#include <cerrno>

#include <sys/stat.h>

#include <memtide/config/loader.hpp>

#include "options.hpp"

namespace memtide::daemon {

std::shared_ptr<const config::Config> load_config_or_defaults(const std::string& path,
                                                              bool path_given,
                                                              std::ostream& errors) {
  struct stat st {};
  if (!path_given && ::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    return config::default_config();
  }
  auto loaded = config::load_config_file(path);
  for (const auto& e : loaded.errors) {
    errors << e.to_string() << '\n';
  }
  return loaded.config;
}

int check_config_file(const std::string& path, std::ostream& out) {
  const auto loaded = config::load_config_file(path);
  for (const auto& e : loaded.errors) {
    out << e.to_string() << '\n';
  }
  if (!loaded.ok()) {
    out << loaded.errors.size() << (loaded.errors.size() == 1 ? " error" : " errors") << " in "
        << path << '\n';
    return kExitInvalidConfig;
  }
  out << path << ": valid\n";
  return kExitOk;
}

}  // namespace memtide::daemon
