#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <variant>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <memtide/config/loader.hpp>
#include <memtide/core/text.hpp>

namespace memtide::config {

std::string ConfigError::to_string() const {
  std::string out = file;
  if (line > 0) {
    out += ':' + std::to_string(line) + ':' + std::to_string(column > 0 ? column : 1);
  }
  out += ": ";
  if (!key_path.empty()) {
    out += key_path + ": ";
  }
  out += message;
  return out;
}

namespace {

// More errors than this in one file are summarised; beyond it they add nothing for the reader.
constexpr std::size_t kMaxErrors = 100;

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// The candidate closest to `word`, if it is close enough to be a plausible typo.
std::optional<std::string> closest(std::string_view word, const std::vector<std::string>& options) {
  std::optional<std::string> best;
  // A prefix ("warn" for "warning") is the likeliest typo of all.
  for (const auto& option : options) {
    if (word.size() >= 3 && option.size() > word.size() &&
        option.compare(0, word.size(), word) == 0) {
      return option;
    }
  }
  std::size_t best_distance = std::max<std::size_t>(2, word.size() / 3) + 1;
  for (const auto& option : options) {
    const auto d = edit_distance(word, option);
    if (d < best_distance) {
      best_distance = d;
      best = option;
    }
  }
  return best;
}

class Diagnostics {
 public:
  explicit Diagnostics(std::string file) : file_(std::move(file)) {}

  void add(int line, int column, std::string path, std::string message) {
    if (errors_.size() < kMaxErrors) {
      errors_.push_back({file_, line, column, std::move(path), std::move(message)});
    } else {
      ++dropped_;
    }
  }
  void add(const YAML::Mark& mark, std::string path, std::string message) {
    // yaml-cpp marks are 0-based; a null mark (-1) means "no position".
    add(mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0, std::move(path),
        std::move(message));
  }
  bool empty() const { return errors_.empty(); }
  // Something accepted that should change (a deprecated key); never fails the load.
  void warn(const YAML::Mark& mark, std::string path, std::string message) {
    warnings_.push_back({file_, mark.line >= 0 ? mark.line + 1 : 0,
                         mark.column >= 0 ? mark.column + 1 : 0, std::move(path),
                         std::move(message)});
  }
  std::vector<ConfigError> take_warnings() { return std::move(warnings_); }

  std::vector<ConfigError> take() {
    std::stable_sort(errors_.begin(), errors_.end(), [](const auto& a, const auto& b) {
      return std::tie(a.line, a.column) < std::tie(b.line, b.column);
    });
    if (dropped_ > 0) {
      errors_.push_back({file_, 0, 0, "", std::to_string(dropped_) + " further errors not shown"});
    }
    return std::move(errors_);
  }

 private:
  std::string file_;
  std::vector<ConfigError> errors_;
  std::vector<ConfigError> warnings_;
  std::size_t dropped_ = 0;
};

std::string node_kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "nothing";
    case YAML::NodeType::Scalar:
      return "a scalar";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Undefined:
      return "nothing";
  }
  return "?";
}

// Reads one YAML mapping against a fixed set of keys. Each `take` both fetches a key and declares
// it known; `finish` reports every key that was never asked for, with the nearest known key as a
// suggestion, and duplicate keys (which YAML forbids but yaml-cpp accepts silently).
class MapReader {
 public:
  MapReader(const YAML::Node& node, std::string path, Diagnostics& diag)
      : path_(std::move(path)), diag_(diag), mark_(node.Mark()) {
    if (node.IsNull()) {
      return;  // "section:" with nothing under it: all defaults
    }
    if (!node.IsMap()) {
      diag_.add(node.Mark(), path_, "expected a mapping of keys, got " + node_kind(node));
      return;
    }
    for (const auto& kv : node) {
      if (!kv.first.IsScalar()) {
        diag_.add(kv.first.Mark(), path_, "keys must be plain names, got " + node_kind(kv.first));
        continue;
      }
      const auto key = kv.first.Scalar();
      const auto [it, inserted] = entries_.try_emplace(key, Entry{kv.first.Mark(), kv.second});
      if (!inserted) {
        diag_.add(kv.first.Mark(), child_path(key),
                  "duplicate key (first defined on line " +
                      std::to_string(it->second.key_mark.line + 1) + ")");
      }
    }
  }

  MapReader(const MapReader&) = delete;
  MapReader& operator=(const MapReader&) = delete;
  ~MapReader() { finish(); }

  // Where `key` itself is written; a value that is missing altogether has no position of its
  // own, so errors about it point here.
  YAML::Mark key_mark(const std::string& key) const {
    const auto it = entries_.find(key);
    return it == entries_.end() ? mark_ : it->second.key_mark;
  }

  // The value under `key`, or nullopt when absent. Marks `key` as a known key.
  std::optional<YAML::Node> take(const std::string& key) {
    known_.push_back(key);
    const auto it = entries_.find(key);
    if (it == entries_.end()) {
      return std::nullopt;
    }
    it->second.used = true;
    return it->second.value;
  }

  std::string child_path(const std::string& key) const {
    return path_.empty() ? key : path_ + "." + key;
  }
  const YAML::Mark& mark() const { return mark_; }
  bool has(const std::string& key) const { return entries_.count(key) != 0; }

 private:
  struct Entry {
    YAML::Mark key_mark;
    YAML::Node value;
    bool used = false;
  };

  void finish() {
    for (const auto& [key, entry] : entries_) {
      if (entry.used) {
        continue;
      }
      std::string message = "unknown key '" + key + "'";
      if (const auto suggestion = closest(key, known_)) {
        message += "; did you mean '" + *suggestion + "'?";
      } else {
        std::string list;
        for (const auto& k : known_) {
          list += (list.empty() ? "" : ", ") + k;
        }
        message += "; known keys here: " + list;
      }
      diag_.add(entry.key_mark, child_path(key), message);
    }
  }

  std::string path_;
  Diagnostics& diag_;
  YAML::Mark mark_;
  std::map<std::string, Entry> entries_;
  std::vector<std::string> known_;
};

// Reads scalar `key` of `map` through `parse` (string -> Result<T>) and then `check`
// (T -> error message or ""), storing the value in `dest` only when both succeed.
template <typename T, typename Parse>
void read_scalar(MapReader& map, Diagnostics& diag, const std::string& key, T& dest, Parse parse,
                 const std::function<std::string(const T&)>& check = nullptr) {
  const auto node = map.take(key);
  if (!node) {
    return;
  }
  const auto path = map.child_path(key);
  if (node->IsNull()) {
    diag.add(map.key_mark(key), path, "expected a value, got nothing");
    return;
  }
  if (!node->IsScalar()) {
    diag.add(node->Mark(), path, "expected a value, got " + node_kind(*node));
    return;
  }
  auto parsed = parse(node->Scalar());
  if (!parsed) {
    diag.add(node->Mark(), path, parsed.error().message);
    return;
  }
  if (check) {
    if (auto problem = check(*parsed); !problem.empty()) {
      diag.add(node->Mark(), path, problem);
      return;
    }
  }
  dest = *parsed;
}

// Reads `key`, or `old_key`, the name it had before, with a warning that names the new one;
// giving both is an error.
template <typename T, typename Parse>
void read_renamed(MapReader& map, Diagnostics& diag, const std::string& key,
                  const std::string& old_key, T& dest, Parse parse,
                  const std::function<std::string(const T&)>& check = nullptr) {
  if (map.has(old_key) && map.has(key)) {
    map.take(old_key);
    diag.add(map.key_mark(old_key), map.child_path(old_key),
             "give " + key + " only: " + old_key + " is its old name");
  } else if (map.has(old_key)) {
    diag.warn(map.key_mark(old_key), map.child_path(old_key),
              old_key + " is deprecated: call it " + key + " (same value)");
    read_scalar(map, diag, old_key, dest, parse, check);
  }
  read_scalar(map, diag, key, dest, parse, check);
}

// A rate in bytes per second, "256MiB/s". A size without "/s" is the old spelling: still read,
// with a warning.
template <typename Check>
void read_rate(MapReader& map, Diagnostics& diag, const std::string& key, std::uint64_t& dest,
               Check check) {
  if (const auto node = map.take(key); node && node->IsScalar()) {
    const std::string& text = node->Scalar();
    if (text.size() < 2 || text.compare(text.size() - 2, 2, "/s") != 0) {
      diag.warn(node->Mark(), map.child_path(key),
                "a rate is written per second: " + shorten_utf8(text, 40) + "/s");
    }
  }
  read_scalar(map, diag, key, dest, parse_rate,
              std::function<std::string(const std::uint64_t&)>(check));
}

Result<bool> parse_bool(std::string_view text) {
  if (text == "true") {
    return true;
  }
  if (text == "false") {
    return false;
  }
  return Error{"", 0, 0, "expected true or false, got '" + shorten_utf8(text, 40) + "'"};
}

Result<std::string> parse_string(std::string_view text) {
  if (text.empty()) {
    return Error{"", 0, 0, "must not be empty"};
  }
  return std::string(text);
}

Result<std::string> parse_absolute_path(std::string_view text) {
  if (text.empty() || text.front() != '/') {
    return Error{"", 0, 0, "expected an absolute path, got '" + shorten_utf8(text, 40) + "'"};
  }
  return std::string(text);
}

// An absolute path, or "" for "none".
Result<std::string> parse_optional_path(std::string_view text) {
  if (text.empty()) {
    return std::string();
  }
  return parse_absolute_path(text);
}

Result<std::uint32_t> parse_uint32(std::string_view text) {
  std::uint64_t value = 0;
  if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) {
    return Error{"", 0, 0, "expected a whole number, got '" + shorten_utf8(text, 40) + "'"};
  }
  if (text.size() > 10) {
    return Error{"", 0, 0, "number too large: '" + shorten_utf8(text, 40) + "'"};
  }
  for (char c : text) {
    value = value * 10 + static_cast<std::uint64_t>(c - '0');
  }
  if (value > UINT32_MAX) {
    return Error{"", 0, 0, "number too large: '" + shorten_utf8(text, 40) + "'"};
  }
  return static_cast<std::uint32_t>(value);
}

// Parser for an enumeration given as (name, value) pairs.
template <typename E>
auto enum_parser(std::vector<std::pair<std::string, E>> choices) {
  return [choices = std::move(choices)](std::string_view text) -> Result<E> {
    std::vector<std::string> names;
    for (const auto& [name, value] : choices) {
      if (name == text) {
        return value;
      }
      names.push_back(name);
    }
    std::string list;
    for (const auto& n : names) {
      list += (list.empty() ? "" : ", ") + n;
    }
    std::string message = "unknown value '" + shorten_utf8(text, 40) + "'; expected one of " + list;
    if (const auto suggestion = closest(text, names)) {
      message += " (did you mean '" + *suggestion + "'?)";
    }
    return Error{"", 0, 0, message};
  };
}

template <typename T>
std::function<std::string(const T&)> within(T low, T high, std::function<std::string(T)> show) {
  return [=](const T& v) -> std::string {
    if (v < low || v > high) {
      return "must be between " + show(low) + " and " + show(high) + ", got " + show(v);
    }
    return "";
  };
}

std::string show_duration(std::chrono::milliseconds d) {
  return format_duration(d);
}
std::string show_rate(std::uint64_t b) {
  return format_size(b) + "/s";
}
std::string show_size(std::uint64_t b) {
  return format_size(b);
}
std::string show_percent(double r) {
  std::ostringstream out;
  out << r * 100 << "%";
  return out.str();
}

void read_daemon(MapReader& root, Diagnostics& diag, DaemonSection& out) {
  const auto node = root.take("daemon");
  if (!node) {
    return;
  }
  MapReader map(*node, "daemon", diag);
  read_scalar(map, diag, "interval", out.interval, parse_duration,
              within<std::chrono::milliseconds>(100ms, 1h, show_duration));
  read_scalar(map, diag, "procfs", out.procfs, parse_absolute_path);
  read_scalar(map, diag, "sysfs", out.sysfs, parse_absolute_path);
  read_scalar(map, diag, "log_level", out.log_level,
              enum_parser<LogLevel>({{"debug", LogLevel::debug},
                                     {"info", LogLevel::info},
                                     {"notice", LogLevel::notice},
                                     {"warning", LogLevel::warning},
                                     {"error", LogLevel::error}}));
  read_scalar(map, diag, "dry_run", out.dry_run, parse_bool);
  read_scalar(map, diag, "coexist", out.coexist,
              enum_parser<Coexist>({{"auto", Coexist::yield}, {"force", Coexist::force}}));
  read_scalar(map, diag, "on_stop", out.on_stop,
              enum_parser<OnStop>({{"restore", OnStop::restore}, {"keep", OnStop::keep}}));
  read_scalar(map, diag, "control_socket", out.control_socket, parse_optional_path);
  read_scalar(map, diag, "state_file", out.state_file, [](std::string_view text) {
    return text == "auto" ? Result<std::string>(std::string(text)) : parse_optional_path(text);
  });
  if (const auto record = map.take("record")) {
    MapReader r(*record, "daemon.record", diag);
    read_scalar(r, diag, "path", out.record.path, parse_optional_path);
    read_scalar(r, diag, "max_size", out.record.max_size_bytes, parse_size,
                within<std::uint64_t>(64ULL << 10, 1ULL << 40, show_size));
    read_scalar(r, diag, "files", out.record.files, parse_uint32,
                within<std::uint32_t>(1, 100, [](std::uint32_t v) { return std::to_string(v); }));
  }
}

Result<std::string> parse_uri(std::string_view text) {
  if (text.find("://") == std::string_view::npos) {
    return Error{
        "", 0, 0,
        "expected a libvirt URI such as qemu:///system, got '" + shorten_utf8(text, 40) + "'"};
  }
  return std::string(text);
}

// A connection's name, as it appears in VM keys ("name/uuid"), metric labels and file names.
Result<std::string> parse_connection_name(std::string_view text) {
  const bool valid = !text.empty() && text.size() <= 64 &&
                     text.find_first_not_of(
                         "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                         "0123456789._-") == std::string_view::npos;
  if (!valid) {
    return Error{"", 0, 0,
                 "expected a name of 1 to 64 letters, digits, '.', '_' or '-', got '" +
                     shorten_utf8(text, 40) + "'"};
  }
  return std::string(text);
}

// The items of list `key` as maps, each read by `item(map, path)`; `what` names an item.
template <typename Fn>
void read_list(MapReader& parent, Diagnostics& diag, const std::string& key, const char* what,
               Fn item) {
  const auto node = parent.take(key);
  if (!node) {
    return;
  }
  const std::string path = parent.child_path(key);
  if (!node->IsSequence()) {
    diag.add(node->Mark(), path,
             std::string("expected a list of ") + what + ", got " + node_kind(*node));
    return;
  }
  std::size_t index = 0;
  for (const auto& element : *node) {
    const std::string at = path + "[" + std::to_string(index++) + "]";
    MapReader map(element, at, diag);
    if (element.IsMap()) {
      item(map, element, at);
    }
  }
}

// A required scalar `key` of an item at `at`.
template <typename T, typename Parse>
void read_required(MapReader& map, Diagnostics& diag, const YAML::Node& item, const std::string& at,
                   const std::string& key, T& out, Parse parse) {
  if (!map.has(key)) {
    diag.add(item.Mark(), at, "missing required key '" + key + "'");
    return;
  }
  read_scalar(map, diag, key, out, parse);
}

// libvirt.connections and libvirt.discover: names unique across both.
void read_libvirt_connections(MapReader& map, Diagnostics& diag, LibvirtSection& out) {
  std::map<std::string, int> first_line_of_name;
  auto unique_name = [&](MapReader& item, const YAML::Node& node, const std::string& name) {
    const auto mark = node["name"].Mark();
    const auto [it, inserted] = first_line_of_name.try_emplace(name, mark.line + 1);
    if (!inserted) {
      diag.add(mark, item.child_path("name"),
               "connection '" + name + "' is already named on line " + std::to_string(it->second));
    }
  };
  read_list(map, diag, "connections", "connections",
            [&](MapReader& item, const YAML::Node& node, const std::string& at) {
              LibvirtConnectionSpec c;
              read_required(item, diag, node, at, "name", c.name, parse_connection_name);
              read_required(item, diag, node, at, "uri", c.uri, parse_uri);
              if (!c.name.empty()) {
                unique_name(item, node, c.name);
              }
              out.connections.push_back(std::move(c));
            });
  read_list(map, diag, "discover", "socket globs",
            [&](MapReader& item, const YAML::Node& node, const std::string& at) {
              LibvirtDiscovery d;
              read_required(item, diag, node, at, "name", d.name, parse_connection_name);
              read_required(item, diag, node, at, "socket", d.socket, parse_absolute_path);
              read_scalar(item, diag, "uri", d.uri,
                          [](std::string_view text) -> Result<std::string> {
                            if (text.find("{socket}") == std::string_view::npos) {
                              return Error{"", 0, 0, "must hold {socket}, the socket's path"};
                            }
                            return parse_uri(text);
                          });
              if (const auto owners = item.take("owners")) {
                if (!owners->IsSequence()) {
                  diag.add(owners->Mark(), item.child_path("owners"),
                           "expected a list of user IDs, got " + node_kind(*owners));
                } else {
                  for (const auto& o : *owners) {
                    auto uid = o.IsScalar()
                                   ? parse_uint32(o.Scalar())
                                   : Result<std::uint32_t>(Error{"", 0, 0, "expected a user ID"});
                    if (uid) {
                      d.owners.push_back(*uid);
                    } else {
                      diag.add(o.Mark(), item.child_path("owners"), uid.error().message);
                    }
                  }
                }
              }
              if (!d.name.empty()) {
                unique_name(item, node, d.name);
              }
              out.discover.push_back(std::move(d));
            });
}

void read_libvirt(MapReader& root, Diagnostics& diag, LibvirtSection& out) {
  const auto node = root.take("libvirt");
  if (!node) {
    return;
  }
  MapReader map(*node, "libvirt", diag);
  read_scalar(map, diag, "uri", out.uri, parse_uri);
  read_libvirt_connections(map, diag, out);
  if (map.has("uri") && (!out.connections.empty() || !out.discover.empty())) {
    diag.add(map.key_mark("uri"), "libvirt.uri",
             "set either uri (one daemon) or connections/discover (several), not both: name "
             "this URI among the connections");
  }
  read_scalar(map, diag, "max_connections", out.max_connections, parse_uint32,
              within<std::uint32_t>(1, 1024, [](std::uint32_t v) { return std::to_string(v); }));
  read_scalar(map, diag, "discover_interval", out.discover_interval, parse_duration,
              within<std::chrono::milliseconds>(1s, 1h, show_duration));
  if (out.connections.size() > out.max_connections) {
    diag.add(map.key_mark("connections"), "libvirt.connections",
             "lists " + std::to_string(out.connections.size()) +
                 " connections, more than max_connections (" + std::to_string(out.max_connections) +
                 ")");
  }
  read_scalar(map, diag, "timeout", out.timeout, parse_duration,
              within<std::chrono::milliseconds>(100ms, 60s, show_duration));
  if (const auto keepalive = map.take("keepalive")) {
    MapReader k(*keepalive, "libvirt.keepalive", diag);
    read_scalar(k, diag, "interval", out.keepalive_interval, parse_duration,
                within<std::chrono::milliseconds>(1s, 60s, show_duration));
    read_scalar(k, diag, "count", out.keepalive_count, parse_uint32,
                within<std::uint32_t>(1, 100, [](std::uint32_t v) { return std::to_string(v); }));
  }
  read_scalar(map, diag, "reconnect_max_backoff", out.reconnect_max_backoff, parse_duration,
              within<std::chrono::milliseconds>(1s, 1h, show_duration));
  read_scalar(map, diag, "relist_interval", out.relist_interval, parse_duration,
              within<std::chrono::milliseconds>(1s, 1h, show_duration));
  std::chrono::milliseconds period = out.stats_period;
  read_scalar(map, diag, "stats_period", period, parse_duration,
              std::function<std::string(const std::chrono::milliseconds&)>(
                  [](const std::chrono::milliseconds& v) -> std::string {
                    if (v.count() % 1000 != 0 || v > 1h) {
                      return "must be whole seconds between 0s and 1h, got " + format_duration(v);
                    }
                    return "";
                  }));
  out.stats_period = std::chrono::duration_cast<std::chrono::seconds>(period);
}

void read_host(MapReader& root, Diagnostics& diag, HostSection& out) {
  const auto node = root.take("host");
  if (!node) {
    return;
  }
  MapReader map(*node, "host", diag);
  read_scalar(map, diag, "reserve", out.reserve_bytes, parse_size,
              within<std::uint64_t>(0, 1ULL << 44, show_size));
  if (const auto forecast = map.take("swap_forecast")) {
    MapReader f(*forecast, "host.swap_forecast", diag);
    read_scalar(f, diag, "horizon", out.swap_forecast.horizon, parse_duration,
                within<std::chrono::milliseconds>(10s, 24h, show_duration));
    read_scalar(f, diag, "window", out.swap_forecast.window, parse_duration,
                within<std::chrono::milliseconds>(10s, 1h, show_duration));
  }
  if (const auto pressure = map.take("pressure")) {
    MapReader p(*pressure, "host.pressure", diag);
    read_scalar(p, diag, "psi_some_avg10", out.pressure.psi_some_avg10_ratio, parse_percent);
    read_scalar(p, diag, "psi_full_avg10", out.pressure.psi_full_avg10_ratio, parse_percent);
    read_rate(p, diag, "swap_rate", out.pressure.swap_rate_bytes_per_second,
              within<std::uint64_t>(4096, 1ULL << 40, show_rate));
  }
  read_scalar(map, diag, "release_huge_pages", out.release_huge_pages, parse_bool);
}

// "HOST:PORT" with an IPv4 literal or a bracketed IPv6 literal, or "" (off).
Result<std::string> parse_listen_address(std::string_view text) {
  if (text.empty()) {
    return std::string();
  }
  const auto colon = text.rfind(':');
  const std::string_view host = colon == std::string_view::npos ? "" : text.substr(0, colon);
  const std::string_view port = colon == std::string_view::npos ? "" : text.substr(colon + 1);
  const bool bracketed = host.size() >= 2 && host.front() == '[' && host.back() == ']';
  const bool ipv4ish =
      !host.empty() && host.find_first_not_of("0123456789.") == std::string_view::npos;
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos ||
      std::stoul(std::string(port)) > 65535 || !(bracketed || ipv4ish)) {
    return Error{"", 0, 0,
                 "expected HOST:PORT with an IP address (127.0.0.1:9847, [::1]:9847) or \"\", "
                 "got '" +
                     shorten_utf8(text, 40) + "'"};
  }
  return std::string(text);
}

void read_metrics(MapReader& root, Diagnostics& diag, MetricsSection& out) {
  const auto node = root.take("metrics");
  if (!node) {
    return;
  }
  MapReader map(*node, "metrics", diag);
  read_scalar(map, diag, "listen", out.listen, parse_listen_address);
  read_scalar(map, diag, "per_vm", out.per_vm,
              enum_parser<PerVmMetrics>({{"full", PerVmMetrics::full},
                                         {"decisions", PerVmMetrics::decisions},
                                         {"off", PerVmMetrics::off}}));
}

Result<std::string> parse_http_url(std::string_view text) {
  if (text.empty()) {
    return std::string();
  }
  if (text.rfind("http://", 0) != 0 && text.rfind("https://", 0) != 0) {
    return Error{"", 0, 0,
                 "expected an http:// or https:// URL, got '" + shorten_utf8(text, 40) + "'"};
  }
  std::string url(text);
  while (!url.empty() && url.back() == '/') {
    url.pop_back();
  }
  return url;
}

// alerts.runbook_base: an http(s) or file URL without a fragment (the alert's anchor is added).
Result<std::string> parse_runbook_base(std::string_view text) {
  constexpr std::size_t kMaxBytes = 1024;
  const bool scheme = text.rfind("http://", 0) == 0 || text.rfind("https://", 0) == 0 ||
                      text.rfind("file:///", 0) == 0;
  if (!scheme || text.size() > kMaxBytes ||
      text.find_first_of("# \t\n\"") != std::string_view::npos) {
    return Error{"", 0, 0,
                 "expected an http://, https:// or file:/// URL of at most 1024 bytes without "
                 "'#' or blanks, got '" +
                     shorten_utf8(text, 40) + "'"};
  }
  return std::string(text);
}

// alerts.alertmanager.labels: Prometheus label names (not reserved, not memtided's own) to
// short UTF-8 values.
void read_alert_labels(const YAML::Node& node, const std::string& path, Diagnostics& diag,
                       std::map<std::string, std::string>& out) {
  if (!node.IsMap()) {
    diag.add(node.Mark(), path,
             "expected a mapping of label names to values, got " + node_kind(node));
    return;
  }
  constexpr std::size_t kMaxValueBytes = 1024;
  std::map<std::string, std::string> labels;
  for (const auto& kv : node) {
    if (!kv.first.IsScalar() || !kv.second.IsScalar()) {
      diag.add(kv.first.Mark(), path, "expected label: value pairs, got " + node_kind(kv.second));
      continue;
    }
    const std::string& name = kv.first.Scalar();
    const std::string& value = kv.second.Scalar();
    const auto where = path + "." + shorten_utf8(name, 40);
    const bool well_formed =
        !name.empty() &&
        (std::isalpha(static_cast<unsigned char>(name[0])) != 0 || name[0] == '_') &&
        std::all_of(name.begin(), name.end(), [](char c) {
          return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
        });
    if (!well_formed || name.rfind("__", 0) == 0) {
      diag.add(
          kv.first.Mark(), where,
          "not a Prometheus label name (letters, digits and _, not starting with a digit or __)");
    } else if (name == "alertname" || name == "severity" || name == "domain") {
      diag.add(kv.first.Mark(), where, name + " is set by memtided for each alert");
    } else if (value.empty() || value.size() > kMaxValueBytes || !is_valid_utf8(value)) {
      diag.add(kv.second.Mark(), where, "expected a value of 1 to 1024 bytes of UTF-8");
    } else if (!labels.emplace(name, value).second) {
      diag.add(kv.first.Mark(), where, "duplicate label");
    }
  }
  out = std::move(labels);
}

void read_alerts(MapReader& root, Diagnostics& diag, AlertsSection& out) {
  const auto node = root.take("alerts");
  if (!node) {
    return;
  }
  MapReader map(*node, "alerts", diag);
  read_scalar(map, diag, "runbook_base", out.runbook_base, parse_runbook_base);
  if (const auto am = map.take("alertmanager")) {
    MapReader a(*am, "alerts.alertmanager", diag);
    read_scalar(a, diag, "url", out.alertmanager_url, parse_http_url);
    read_scalar(a, diag, "resend_interval", out.alertmanager_resend_interval, parse_duration,
                within<std::chrono::milliseconds>(1s, 1h, show_duration));
    read_scalar(a, diag, "timeout", out.alertmanager_timeout, parse_duration,
                within<std::chrono::milliseconds>(100ms, 60s, show_duration));
    if (const auto labels = a.take("labels")) {
      read_alert_labels(*labels, a.child_path("labels"), diag, out.alertmanager_labels);
    }
  }
  if (const auto ex = map.take("exec")) {
    MapReader e(*ex, "alerts.exec", diag);
    read_scalar(e, diag, "command", out.exec_command, parse_optional_path);
    read_scalar(e, diag, "timeout", out.exec_timeout, parse_duration,
                within<std::chrono::milliseconds>(100ms, 5min, show_duration));
  }
}

void read_ksm(MapReader& root, Diagnostics& diag, KsmSection& out) {
  const auto node = root.take("ksm");
  if (!node) {
    return;
  }
  MapReader map(*node, "ksm", diag);
  read_scalar(map, diag, "mode", out.mode,
              enum_parser<KsmMode>({{"off", KsmMode::off},
                                    {"on", KsmMode::on},
                                    {"auto", KsmMode::automatic},
                                    {"unmanaged", KsmMode::unmanaged}}));
  read_scalar(map, diag, "min_savings", out.min_savings_ratio, parse_percent);
  read_scalar(map, diag, "max_cpu", out.max_cpu_ratio, parse_percent,
              within<double>(0.01, 1.0, show_percent));
  // The kernel takes any sleep_millisecs up to 2^32-1, but 0 spins ksmd and more than a minute
  // between wake-ups never finishes a pass; the advisor's target scan time is whole seconds.
  read_scalar(map, diag, "full_scan_time", out.full_scan_time, parse_duration,
              within<std::chrono::milliseconds>(10s, 24h, show_duration));
  read_scalar(map, diag, "sleep", out.sleep, parse_duration,
              within<std::chrono::milliseconds>(1ms, 60s, show_duration));
  read_scalar(
      map, diag, "advisor", out.advisor,
      enum_parser<KsmAdvisor>({{"none", KsmAdvisor::none}, {"scan-time", KsmAdvisor::scan_time}}));
  read_scalar(map, diag, "unmerge", out.unmerge, parse_bool);
  read_scalar(map, diag, "merge_across_nodes", out.merge_across_nodes, parse_bool);
  if (const auto scan = map.take("scan")) {
    MapReader s(*scan, "ksm.scan", diag);
    read_scalar(s, diag, "enabled", out.scan.enabled, parse_bool);
    read_renamed(s, diag, "max_cpu", "cpu", out.scan.cpu_ratio, parse_percent,
                 within<double>(0.001, 1.0, show_percent));
    read_rate(s, diag, "max_read_rate", out.scan.read_bytes_per_second,
              within<std::uint64_t>(1ULL << 20, 1ULL << 40, show_rate));
    read_scalar(s, diag, "interval", out.scan.interval, parse_duration,
                within<std::chrono::milliseconds>(10s, 24h, show_duration));
    read_scalar(s, diag, "converged_interval", out.scan.converged_interval, parse_duration,
                within<std::chrono::milliseconds>(10s, 7 * 24h, show_duration));
    read_scalar(s, diag, "converged_width", out.scan.converged_width, parse_percent,
                within<double>(0.001, 0.5, show_percent));
    read_scalar(s, diag, "probe_interval", out.scan.probe_interval, parse_duration,
                within<std::chrono::milliseconds>(5s, 24h, show_duration));
    read_scalar(s, diag, "wake_on_change", out.scan.wake_on_change, parse_percent,
                within<double>(0.01, 1.0, show_percent));
    read_scalar(s, diag, "max_memory", out.scan.max_memory_bytes, parse_size,
                within<std::uint64_t>(64ULL << 10, 1ULL << 30, show_size));
  }
}

std::function<std::string(const SizeOrRatio&)> positive_size_or_ratio() {
  return [](const SizeOrRatio& v) -> std::string {
    if (v.is_ratio() ? std::get<1>(v.value) <= 0 : std::get<0>(v.value) == 0) {
      return "must be greater than zero";
    }
    return "";
  };
}

void read_balloon(MapReader& cls, Diagnostics& diag, BalloonSettings& out) {
  const auto node = cls.take("balloon");
  if (!node) {
    return;
  }
  MapReader map(*node, cls.child_path("balloon"), diag);
  read_scalar(map, diag, "enabled", out.enabled, parse_bool);
  read_renamed(map, diag, "floor", "min", out.floor, parse_size_or_percent);
  read_scalar(map, diag, "guest_free", out.guest_free_ratio, parse_percent,
              within<double>(0.0, 0.9, show_percent));
  read_scalar(
      map, diag, "shares", out.shares, parse_uint32,
      within<std::uint32_t>(1, 1'000'000, [](std::uint32_t v) { return std::to_string(v); }));
  read_scalar(map, diag, "max_step", out.max_step, parse_size_or_percent, positive_size_or_ratio());
  read_scalar(map, diag, "deadband", out.deadband_bytes, parse_size,
              within<std::uint64_t>(0, 16ULL << 30, show_size));
  read_scalar(map, diag, "hysteresis", out.hysteresis, parse_duration,
              within<std::chrono::milliseconds>(0ms, 24h, show_duration));
  read_scalar(map, diag, "grow_when_host_idle", out.grow_when_host_idle, parse_bool);
  read_scalar(map, diag, "cache_protection", out.cache_protection, parse_duration,
              within<std::chrono::milliseconds>(0ms, 24h, show_duration));
}

void read_classes(MapReader& root, Diagnostics& diag, std::vector<VmClass>& out) {
  const auto node = root.take("classes");
  if (!node) {
    return;
  }
  if (!node->IsSequence()) {
    diag.add(node->Mark(), "classes", "expected a list of classes, got " + node_kind(*node));
    return;
  }
  if (node->size() == 0) {
    diag.add(node->Mark(), "classes", "must list at least one class");
    return;
  }
  out.clear();
  std::map<std::string, int> first_line_of_name;
  std::size_t index = 0;
  for (const auto& item : *node) {
    const std::string path = "classes[" + std::to_string(index++) + "]";
    VmClass cls;
    MapReader map(item, path, diag);
    if (!item.IsMap()) {
      continue;
    }
    const auto name_node = map.take("name");
    if (!name_node) {
      diag.add(item.Mark(), path, "missing required key 'name'");
    } else if (!name_node->IsScalar() || name_node->Scalar().empty()) {
      diag.add(name_node->Mark(), map.child_path("name"), "expected a non-empty class name");
    } else {
      cls.name = name_node->Scalar();
      const auto [it, inserted] =
          first_line_of_name.try_emplace(cls.name, name_node->Mark().line + 1);
      if (!inserted) {
        diag.add(
            name_node->Mark(), map.child_path("name"),
            "class '" + cls.name + "' is already defined on line " + std::to_string(it->second));
      }
    }
    const auto match_node = map.take("match");
    if (!match_node) {
      diag.add(item.Mark(), path, "missing required key 'match' (use {name: \"*\"} for all VMs)");
    } else {
      MapReader match(*match_node, map.child_path("match"), diag);
      read_scalar(match, diag, "name", cls.match_name, parse_string);
      read_scalar(match, diag, "class", cls.match_class, parse_string);
      if (match_node->IsMap() && !match.has("name") && !match.has("class")) {
        diag.add(match_node->Mark(), map.child_path("match"),
                 "needs 'name' (a glob) or 'class' (from domain metadata)");
      }
    }
    read_balloon(map, diag, cls.balloon);
    out.push_back(std::move(cls));
  }
}

// Cross-field rules, checked only when each field on its own was valid.
void check_consistency(const YAML::Node& root, const Config& config, Diagnostics& diag) {
  const auto& window = config.host.swap_forecast.window;
  if (window < 3 * config.daemon.interval) {
    YAML::Mark mark = root.Mark();
    if (root["host"] && root["host"]["swap_forecast"] && root["host"]["swap_forecast"]["window"]) {
      mark = root["host"]["swap_forecast"]["window"].Mark();
    }
    diag.add(mark, "host.swap_forecast.window",
             "must cover at least 3 ticks of daemon.interval (" +
                 format_duration(config.daemon.interval) + "), got " + format_duration(window));
  }
}

// Problems YAML parsers handle badly or not at all, found by a plain scan of the text. Invalid
// UTF-8 is refused here because yaml-cpp passes it through: a URI or path holding it would reach
// the logs and the strict JSON writers of the trace and the control socket.
void prescan(std::string_view text, Diagnostics& diag) {
  int line = 1;
  int column = 1;  // in characters
  bool in_indent = true;
  int tab_errors = 0;
  for (std::size_t i = 0; i < text.size(); ++column) {
    const char c = text[i];
    if (c == '\0') {
      diag.add(line, column, "", "NUL byte: this is not a text file");
      return;
    }
    const std::size_t n = utf8_sequence_length(text.substr(i));
    if (n == 0) {
      diag.add(line, column, "", "invalid UTF-8 byte sequence; the file must be UTF-8 text");
      return;
    }
    i += n;
    if (c == '\t' && in_indent && tab_errors++ < 10) {
      diag.add(line, column, "", "tab in indentation; YAML allows only spaces there");
    }
    if (c == '\n') {
      ++line;
      column = 0;
      in_indent = true;
      continue;
    }
    if (c != ' ' && c != '\t') {
      in_indent = false;
    }
  }
}

std::vector<VmClass> default_classes() {
  VmClass all;
  all.name = "default";
  all.match_name = "*";
  return {all};
}

}  // namespace

namespace {

// Reads `yaml` (from `origin`) onto `config`: every key it gives replaces the value there, keys
// it leaves out keep theirs. Problems go to `diag`; `config` is then partly updated and must be
// thrown away. Returns whether the document held any settings.
bool apply_yaml(std::string_view yaml, Config& config, Diagnostics& diag) {
  if (yaml.size() > kMaxConfigBytes) {
    diag.add(0, 0, "",
             "file is " + std::to_string(yaml.size()) + " bytes; a configuration may be at most " +
                 format_size(kMaxConfigBytes));
    return false;
  }
  prescan(yaml, diag);
  if (!diag.empty()) {
    return false;
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    diag.add(e.mark, "", "YAML syntax error: " + e.msg);
    return false;
  }
  try {
    if (!root.IsNull() && !root.IsMap()) {
      diag.add(root.Mark(), "",
               "the top level must be a mapping of sections, got " + node_kind(root));
    } else {
      {
        MapReader map(root, "", diag);
        read_daemon(map, diag, config.daemon);
        read_libvirt(map, diag, config.libvirt);
        read_host(map, diag, config.host);
        read_ksm(map, diag, config.ksm);
        read_metrics(map, diag, config.metrics);
        read_alerts(map, diag, config.alerts);
        read_classes(map, diag, config.classes);
      }
      if (diag.empty()) {
        check_consistency(root, config, diag);
      }
    }
  } catch (const YAML::Exception& e) {
    // yaml-cpp throws for some malformed documents only when the node is accessed.
    diag.add(e.mark, "", "YAML error: " + e.msg);
  }
  return !root.IsNull();
}

// Whether what `st` describes (a configuration file, or the directory of drop-ins), as opened,
// may be trusted: owned by root or by the user reading it (memtided's own), and writable by no
// group and no other user. A configuration names commands memtided runs (alerts.exec) and
// decides every guest's memory, so a file or directory someone else may write is refused, as
// sshd, sudo and logrotate refuse theirs. Checked on the opened descriptor, so a symlink is
// judged by what it leads to and a rename in between changes nothing. nullopt when trusted.
std::optional<std::string> untrusted(const struct stat& st) {
  const uid_t self = ::geteuid();
  if (st.st_uid != 0 && st.st_uid != self) {
    return "owned by uid " + std::to_string(st.st_uid) +
           ", neither root nor the user reading it: refused (chown root)";
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return std::string("writable by ") + ((st.st_mode & S_IWOTH) != 0 ? "others" : "its group") +
           " (mode " + mode + "): refused (chmod go-w)";
  }
  return std::nullopt;
}

// The whole of the regular file `path`, read once (a FIFO or device is refused without
// blocking), or the error that prevented it.
std::variant<std::string, ConfigError> read_config_text(const std::string& path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer (and hang a reload
  // on the event loop). Whatever is opened is checked to be a regular file before it is read.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    return ConfigError{path, 0, 0, "", std::string("cannot open: ") + std::strerror(errno)};
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    return ConfigError{path, 0, 0, "", "not a regular file"};
  }
  if (auto why = untrusted(st)) {
    ::close(fd);
    return ConfigError{path, 0, 0, "", *why};
  }
  // Read once into memory, at most one byte past the limit: enough to tell that the file is too
  // large without reading all of it. The text parsed is the text read, whatever happens to the
  // file meanwhile.
  std::string text(kMaxConfigBytes + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {
    const ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return ConfigError{path, 0, 0, "", std::string("cannot read: ") + std::strerror(err)};
    }
    if (n == 0) {
      break;
    }
    got += static_cast<std::size_t>(n);
  }
  ::close(fd);
  text.resize(got);
  if (text.size() > kMaxConfigBytes) {
    return ConfigError{path, 0, 0, "",
                       "file is " + std::to_string(st.st_size) +
                           " bytes; a configuration may be at most " +
                           format_size(kMaxConfigBytes)};
  }
  return text;
}

// Reads file `path` onto `config` (apply_yaml), adding its errors and warnings to `result`.
// Returns whether the file held settings.
bool apply_file(const std::string& path, Config& config, LoadResult& result) {
  auto text = read_config_text(path);
  if (auto* error = std::get_if<ConfigError>(&text)) {
    result.errors.push_back(std::move(*error));
    return false;
  }
  Diagnostics diag{path};
  const bool settings = apply_yaml(std::get<std::string>(text), config, diag);
  for (auto& e : diag.take()) {
    result.errors.push_back(std::move(e));
  }
  for (auto& w : diag.take_warnings()) {
    result.warnings.push_back(std::move(w));
  }
  return settings;
}

}  // namespace

LoadResult load_config_string(std::string_view yaml, std::string_view origin) {
  Diagnostics diag{std::string(origin)};
  LoadResult result;
  auto config = std::make_shared<Config>(*default_config());
  config->source = std::string(origin);
  config->source_has_settings = apply_yaml(yaml, *config, diag);
  result.empty_document = !config->source_has_settings;
  result.errors = diag.take();
  if (result.errors.empty()) {
    result.config = std::move(config);
    result.warnings = diag.take_warnings();
  }
  return result;
}

LoadResult load_config_file(const std::string& path) {
  auto text = read_config_text(path);
  if (auto* error = std::get_if<ConfigError>(&text)) {
    LoadResult result;
    result.errors.push_back(std::move(*error));
    return result;
  }
  return load_config_string(std::get<std::string>(text), path);
}

std::string dropin_directory(const std::string& path) {
  const std::filesystem::path p(path);
  return (p.parent_path() / (p.stem().string() + ".d")).string();
}

DropIns list_dropins(const std::string& directory) {
  DropIns found;
  const int fd = ::open(directory.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT && errno != ENOTDIR) {
      found.error = ConfigError{directory, 0, 0, "",
                                std::string("cannot list drop-ins: ") + std::strerror(errno)};
    }
    return found;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    found.error = ConfigError{directory, 0, 0, "",
                              std::string("cannot list drop-ins: ") + std::strerror(errno)};
    ::close(fd);
    return found;
  }
  if (auto why = untrusted(st)) {
    // Files anyone else could have put there are not read.
    found.error = ConfigError{directory, 0, 0, "", "drop-in directory " + *why};
    ::close(fd);
    return found;
  }
  DIR* dir = ::fdopendir(fd);  // takes the descriptor
  if (dir == nullptr) {
    found.error = ConfigError{directory, 0, 0, "",
                              std::string("cannot list drop-ins: ") + std::strerror(errno)};
    ::close(fd);
    return found;
  }
  std::size_t count = 0;
  while (const dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name.empty() || name[0] == '.' || name.size() <= 5 ||
        name.compare(name.size() - 5, 5, ".yaml") != 0) {
      continue;  // editors' backups (memtide.yaml~, .#x.yaml), dpkg's .dpkg-old and the like
    }
    if (++count <= kMaxDropIns) {  // more are only counted
      found.files.push_back((std::filesystem::path(directory) / name).string());
    }
  }
  ::closedir(dir);
  std::sort(found.files.begin(), found.files.end());  // byte order: 10-x.yaml before 20-y.yaml
  if (count > kMaxDropIns) {
    found.error = ConfigError{
        directory, 0, 0, "",
        std::to_string(count) + " drop-ins; at most " + std::to_string(kMaxDropIns) + " are read"};
    found.files.clear();
  }
  return found;
}

LoadResult load_config_with_dropins(const std::string& path, bool main_optional) {
  LoadResult result;
  auto config = std::make_shared<Config>(*default_config());
  config->source = path;
  bool settings = false;
  struct stat st {};
  if (!main_optional || ::stat(path.c_str(), &st) == 0 || errno != ENOENT) {
    settings = apply_file(path, *config, result);
    config->source_has_settings = settings;
  } else {
    config->source.clear();  // the built-in defaults, and drop-ins if any
  }
  auto dropins = list_dropins(dropin_directory(path));
  if (dropins.error) {
    result.errors.push_back(std::move(*dropins.error));
  }
  // Each drop-in applies to what the files before it made, and is checked on its own, so its
  // errors name it and its own lines. A file with errors stops nothing: every file is checked.
  for (const auto& file : dropins.files) {
    Config before = *config;
    const std::size_t errors_before = result.errors.size();
    settings = apply_file(file, *config, result) || settings;
    if (result.errors.size() != errors_before) {
      *config = std::move(before);
    }
  }
  config->dropins = std::move(dropins.files);
  result.empty_document = !settings;
  if (result.errors.empty()) {
    result.config = std::move(config);
  }
  return result;
}

std::shared_ptr<const Config> default_config() {
  auto config = std::make_shared<Config>();
  config->classes = default_classes();
  return config;
}

}  // namespace memtide::config
