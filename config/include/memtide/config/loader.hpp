// Loading memtide.yaml into a Config. All problems in a file are reported together, each with
// its position and the dotted key path, in the form compilers use so editors can jump to it:
//
//   /etc/memtide/memtide.yaml:12:14: classes[0].balloon.floor: percentage must be between ...
//
// Unknown keys are errors (a typo must not silently fall back to a default) and come with a
// "did you mean" suggestion. Input is untrusted: size, nesting depth, NUL bytes and tab
// indentation are checked before YAML parsing, and nothing in it can crash or hang the loader.
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <memtide/config/config.hpp>

namespace memtide::config {

// Files larger than this are rejected unread: a real configuration is a few KiB.
inline constexpr std::size_t kMaxConfigBytes = 1 << 20;

struct ConfigError {
  std::string file;
  int line = 0;          // 1-based; 0 when the error concerns the whole file
  int column = 0;        // 1-based
  std::string key_path;  // "classes[0].balloon.floor"; empty for syntax and file errors
  std::string message;

  // "FILE:LINE:COLUMN: key.path: message" (parts that are empty are left out).
  std::string to_string() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // set exactly when errors is empty
  std::vector<ConfigError> errors;       // sorted by position
  std::vector<ConfigError> warnings;     // of a valid file: deprecated keys, in file order
  // The document held no settings at all (an empty file, or only comments): valid, it means
  // the defaults, but on a reload it is far more likely a file caught mid-write.
  bool empty_document = false;

  bool ok() const { return config != nullptr; }
};

// Reads `path` once (a regular file only: a FIFO or device is refused without blocking) and
// loads it.
LoadResult load_config_file(const std::string& path);

// `origin` names the text in errors (and becomes Config::source).
LoadResult load_config_string(std::string_view yaml, std::string_view origin);

// Drop-ins: the files NAME.yaml in the directory beside the main file named after it
// (/etc/memtide/memtide.yaml -> /etc/memtide/memtide.d/), read in byte order of their names
// after the main file. Each applies to what the files before it made: a key it gives replaces
// the earlier value, keys it leaves out keep theirs, so sections merge key by key; `classes` and
// `alerts.alertmanager.labels` are values of their own and are replaced whole. Names starting
// with "." and names not ending in ".yaml" are skipped (editor backups, package leftovers).
inline constexpr std::size_t kMaxDropIns = 100;
std::string dropin_directory(const std::string& main_path);

struct DropIns {
  std::vector<std::string> files;    // full paths, sorted
  std::optional<ConfigError> error;  // the directory exists but cannot be listed, or too many
};
// The drop-ins in `directory`; none (and no error) when it does not exist.
DropIns list_dropins(const std::string& directory);

// The main file at `path` and then its drop-ins. With `main_optional`, a main file that does not
// exist counts as empty (the built-in defaults, then the drop-ins). Every file is checked and
// each error names its own file and line; Config::source is `path` ("" when it was absent) and
// Config::dropins the drop-ins read. empty_document: no file held any setting.
LoadResult load_config_with_dropins(const std::string& path, bool main_optional = false);

// The configuration an empty file yields.
std::shared_ptr<const Config> default_config();

}  // namespace memtide::config
