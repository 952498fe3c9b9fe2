#include "log.hpp"

#include <cstdio>
#include <cstdlib>
#include <vector>

#include <sys/stat.h>
#include <sys/uio.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <memtide/core/text.hpp>

namespace memtide::daemon {

namespace {

Priority to_priority(config::LogLevel level) {
  switch (level) {
    case config::LogLevel::debug:
      return Priority::debug;
    case config::LogLevel::info:
      return Priority::info;
    case config::LogLevel::notice:
      return Priority::notice;
    case config::LogLevel::warning:
      return Priority::warning;
    case config::LogLevel::error:
      return Priority::err;
  }
  return Priority::info;
}

const char* priority_name(Priority p) {
  switch (p) {
    case Priority::err:
      return "error";
    case Priority::warning:
      return "warning";
    case Priority::notice:
      return "notice";
    case Priority::info:
      return "info";
    case Priority::debug:
      return "debug";
  }
  return "?";
}

// systemd sets JOURNAL_STREAM=DEV:INODE when it connects stderr to the journal; comparing it
// with stderr itself tells whether that is still so (a child may have redirected stderr).
bool stderr_is_journal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) {
    return false;
  }
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  if (std::sscanf(env, "%llu:%llu", &dev, &ino) != 2) {
    return false;
  }
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) {
    return false;
  }
  return st.st_dev == dev && st.st_ino == ino;
}

// sd_journal_send() reports success when the journal socket does not exist (it "fails silently
// if the journal is not available"), so absence has to be checked here or messages would vanish.
bool journal_socket_present() {
  struct stat st {};
  return ::stat("/run/systemd/journal/socket", &st) == 0 && S_ISSOCK(st.st_mode);
}

// Appends `text` as one line of valid UTF-8: invalid bytes become U+FFFD and control characters
// (a newline in a domain name could forge a log line) become "\\xNN".
void append_printable(std::string& line, std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (const char c : to_valid_utf8(text)) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      line += "\\x";
      line += kHex[u >> 4];
      line += kHex[u & 0xf];
    } else {
      line += c;
    }
  }
}

}  // namespace

bool parse_log_target(std::string_view text, Logger::Target& out) {
  if (text == "auto") {
    out = Logger::Target::automatic;
  } else if (text == "journal") {
    out = Logger::Target::journal;
  } else if (text == "stderr") {
    out = Logger::Target::stderr_only;
  } else {
    return false;
  }
  return true;
}

Logger::Logger(Target target, config::LogLevel level)
    : use_journal_(target == Target::journal ||
                   (target == Target::automatic && stderr_is_journal())),
      max_priority_(to_priority(level)) {}

void Logger::set_level(config::LogLevel level) {
  max_priority_ = to_priority(level);
}

bool Logger::enabled(Priority priority) const {
  return priority <= max_priority_;
}

void Logger::log(Priority priority, std::string_view message,
                 std::initializer_list<LogField> fields) {
  if (!enabled(priority)) {
    return;
  }
  if (use_journal_ && journal_socket_present()) {
    std::vector<std::string> entries;
    entries.reserve(fields.size() + 3);
    entries.push_back("MESSAGE=" + to_valid_utf8(message));
    entries.push_back("PRIORITY=" + std::to_string(static_cast<int>(priority)));
    entries.push_back("SYSLOG_IDENTIFIER=memtided");
    for (const auto& f : fields) {
      entries.push_back(std::string(f.name) + "=" + to_valid_utf8(f.value));
    }
    std::vector<iovec> iov;
    iov.reserve(entries.size());
    for (auto& e : entries) {
      iov.push_back({e.data(), e.size()});
    }
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) >= 0) {
      return;
    }
    // The journal is absent or refused the message: do not lose it.
  }
  to_stderr(priority, message, fields);
}

void Logger::to_stderr(Priority priority, std::string_view message,
                       std::initializer_list<LogField> fields) {
  std::string line = "memtided: ";
  line += priority_name(priority);
  line += ": ";
  append_printable(line, message);
  for (const auto& f : fields) {
    line += ' ';
    line += f.name;
    line += '=';
    const bool quote = f.value.find_first_of(" \"") != std::string::npos || f.value.empty();
    if (quote) {
      line += '"';
      std::string escaped;
      for (char c : f.value) {
        if (c == '"' || c == '\\') {
          escaped += '\\';
        }
        escaped += c;
      }
      append_printable(line, escaped);
      line += '"';
    } else {
      append_printable(line, f.value);
    }
  }
  line += '\n';
  std::lock_guard lock(mutex_);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace memtide::daemon
