// The command-line grammar memtided and memtidectl share: "--name value" and "--name=value" for
// options with a value, "-x value" for their short forms, flags alone, and anything not starting
// with "-" an operand. Each program keeps its own table of options; this reads the words.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

namespace memtide {

class CommandLine {
 public:
  explicit CommandLine(std::vector<std::string> args) : args_(std::move(args)) {}

  struct Word {
    std::string text;                         // as given, for messages
    std::string name;                         // "--config" for "--config=x"; the word otherwise
    std::optional<std::string> inline_value;  // "x" for "--config=x"
    bool is_option() const { return name.size() > 1 && name[0] == '-'; }
  };

  bool done() const { return next_ >= args_.size(); }

  // The next word. Call only while !done().
  Word next() {
    Word w;
    w.text = args_[next_++];
    w.name = w.text;
    if (w.text.rfind("--", 0) == 0) {
      if (const auto eq = w.text.find('='); eq != std::string::npos) {
        w.inline_value = w.text.substr(eq + 1);
        w.name.resize(eq);
      }
    }
    value_taken_ = false;
    last_ = w;
    return w;
  }

  // The value of the option just read: its "=value", else the following word (consumed);
  // nullopt when there is none.
  std::optional<std::string> value() {
    value_taken_ = true;
    if (last_.inline_value) {
      return last_.inline_value;
    }
    if (done()) {
      return std::nullopt;
    }
    return args_[next_++];
  }

  // Whether the option just read was given "=value" that nobody took: a flag written as
  // "--dry-run=yes". Callers check it after handling the option.
  bool unused_inline_value() const { return last_.inline_value.has_value() && !value_taken_; }

 private:
  std::vector<std::string> args_;
  std::size_t next_ = 0;
  Word last_;
  bool value_taken_ = false;
};

}  // namespace memtide
