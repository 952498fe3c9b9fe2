#include <memtide/config/files.hpp>
#include <memtide/config/loader.hpp>

namespace memtide::config {

namespace {

// "PATH" or "PATH and its N drop-ins" for messages about the whole configuration.
std::string what_was_read(const std::string& path, const LoadResult& loaded) {
  const std::size_t n = loaded.config ? loaded.config->dropins.size() : 0;
  if (n == 0) {
    return path;
  }
  return path + " and " + std::to_string(n) + (n == 1 ? " drop-in" : " drop-ins") + " in " +
         dropin_directory(path);
}

}  // namespace

std::shared_ptr<const Config> load_config_or_defaults(const std::string& path, bool path_given,
                                                      std::ostream& errors) {
  auto loaded = load_config_with_dropins(path, !path_given);
  for (const auto& e : loaded.errors) {
    errors << e.to_string() << '\n';
  }
  for (const auto& w : loaded.warnings) {
    errors << "warning: " << w.to_string() << '\n';
  }
  return loaded.config;
}

bool check_config_file(const std::string& path, std::ostream& out) {
  const auto loaded = load_config_with_dropins(path);
  for (const auto& e : loaded.errors) {
    out << e.to_string() << '\n';
  }
  if (!loaded.ok()) {
    out << loaded.errors.size() << (loaded.errors.size() == 1 ? " error" : " errors") << " in "
        << path << (list_dropins(dropin_directory(path)).files.empty() ? "" : " and its drop-ins")
        << '\n';
    return false;
  }
  for (const auto& w : loaded.warnings) {
    out << "warning: " << w.to_string() << '\n';
  }
  out << what_was_read(path, loaded) << ": valid\n";
  return true;
}

LoadResult reload_config_file(const std::string& path, const Config& running) {
  auto loaded = load_config_with_dropins(path);
  if (loaded.ok() && !loaded.config->source_has_settings && running.source_has_settings) {
    loaded.config.reset();
    loaded.errors.push_back({path, 0, 0, "",
                             "the file holds no settings, where the running configuration's "
                             "had some (caught mid-write?); a reload never falls back to the "
                             "defaults: restart memtided for that"});
  }
  return loaded;
}

}  // namespace memtide::config
