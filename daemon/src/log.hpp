// Structured logging for memtided. Messages go to the systemd journal with their own fields
// (MESSAGE, PRIORITY, SYSLOG_IDENTIFIER, CODE_* plus MEMTIDE_* fields given by the caller) so
// operators can filter with `journalctl MEMTIDE_EVENT=config-reload-failed`; without a journal
// they go to stderr as one line each, fields appended as KEY=value.
#pragma once

#include <atomic>
#include <initializer_list>
#include <mutex>
#include <string>
#include <string_view>

#include <memtide/config/config.hpp>

namespace memtide::daemon {

// syslog(3) priorities, as the journal's PRIORITY field expects.
enum class Priority { err = 3, warning = 4, notice = 5, info = 6, debug = 7 };

struct LogField {
  std::string_view name;  // journal field name: upper case letters, digits and '_'
  std::string value;
};

class Logger {
 public:
  enum class Target {
    automatic,  // journal when stderr is connected to it (JOURNAL_STREAM), else stderr
    journal,    // journal; stderr when the journal is absent or refuses a message
    stderr_only
  };

  explicit Logger(Target target = Target::automatic,
                  config::LogLevel level = config::LogLevel::info);

  void set_level(config::LogLevel level);
  bool enabled(Priority priority) const;

  void log(Priority priority, std::string_view message,
           std::initializer_list<LogField> fields = {});

  void error(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(Priority::err, m, f);
  }
  void warning(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(Priority::warning, m, f);
  }
  void notice(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(Priority::notice, m, f);
  }
  void info(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(Priority::info, m, f);
  }
  void debug(std::string_view m, std::initializer_list<LogField> f = {}) {
    log(Priority::debug, m, f);
  }

  bool uses_journal() const { return use_journal_; }

 private:
  void to_stderr(Priority priority, std::string_view message,
                 std::initializer_list<LogField> fields);

  bool use_journal_;
  std::atomic<Priority> max_priority_;
  std::mutex mutex_;  // one line at a time on stderr
};

// Parses "auto" | "journal" | "stderr".
bool parse_log_target(std::string_view text, Logger::Target& out);

}  // namespace memtide::daemon
