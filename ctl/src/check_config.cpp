#include <iostream>

#include <memtide/config/loader.hpp>
#include <memtide/core/exit_code.hpp>
#include <memtide/report/json_text.hpp>

#include "commands.hpp"

namespace memtide::ctl {

namespace {

nlohmann::json to_json(const std::vector<config::ConfigError>& list) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& e : list) {
    out.push_back({{"file", e.file},
                   {"line", e.line},
                   {"column", e.column},
                   {"key", e.key_path},
                   {"message", e.message}});
  }
  return out;
}

}  // namespace

int check_config_json(const std::string& path) {
  const auto loaded = config::load_config_with_dropins(path);
  nlohmann::json files = nlohmann::json::array({path});
  for (const auto& f : config::list_dropins(config::dropin_directory(path)).files) {
    files.push_back(f);
  }
  std::cout << report::dump_json(nlohmann::json{{"valid", loaded.ok()},
                                                {"files", files},
                                                {"errors", to_json(loaded.errors)},
                                                {"warnings", to_json(loaded.warnings)}},
                                 2)
            << '\n';
  return loaded.ok() ? kExitOk : kExitInvalidConfig;
}

}  // namespace memtide::ctl
