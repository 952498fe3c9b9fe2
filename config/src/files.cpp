#include <cerrno>

#include <sys/stat.h>

#include <memtide/config/files.hpp>
#include <memtide/config/loader.hpp>

namespace memtide::config {

std::shared_ptr<const Config> load_config_or_defaults(const std::string& path, bool path_given,
                                                      std::ostream& errors) {
  struct stat st {};
  if (!path_given && ::stat(path.c_str(), &st) != 0 && errno == ENOENT) {
    return default_config();
  }
  auto loaded = load_config_file(path);
  for (const auto& e : loaded.errors) {
    errors << e.to_string() << '\n';
  }
  for (const auto& w : loaded.warnings) {
    errors << "warning: " << w.to_string() << '\n';
  }
  return loaded.config;
}

bool check_config_file(const std::string& path, std::ostream& out) {
  const auto loaded = load_config_file(path);
  for (const auto& e : loaded.errors) {
    out << e.to_string() << '\n';
  }
  if (!loaded.ok()) {
    out << loaded.errors.size() << (loaded.errors.size() == 1 ? " error" : " errors") << " in "
        << path << '\n';
    return false;
  }
  for (const auto& w : loaded.warnings) {
    out << "warning: " << w.to_string() << '\n';
  }
  out << path << ": valid\n";
  return true;
}

LoadResult reload_config_file(const std::string& path) {
  auto loaded = load_config_file(path);
  if (loaded.ok() && loaded.empty_document) {
    loaded.config.reset();
    loaded.errors.push_back({path, 0, 0, "",
                             "the file holds no settings (caught mid-write?); an empty "
                             "configuration is accepted only at start"});
  }
  return loaded;
}

}  // namespace memtide::config
