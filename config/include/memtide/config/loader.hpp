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

// The configuration an empty file yields.
std::shared_ptr<const Config> default_config();

}  // namespace memtide::config
