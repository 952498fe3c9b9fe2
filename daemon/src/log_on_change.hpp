// "Log a failure once, not every tick": remembers the last message of one kind of failure so the
// caller logs only when it changes, and once when things work again.
#pragma once

#include <string>
#include <utility>

namespace memtide::daemon {

class LogOnChange {
 public:
  // True when `message` differs from the last failure seen (log it); remembers it either way.
  bool failed(const std::string& message) {
    if (message == last_) {
      return false;
    }
    last_ = message;
    return true;
  }
  // True when the last call was a failure (log the recovery once); forgets it.
  bool recovered() { return !std::exchange(last_, std::string()).empty(); }
  // The failure still in force; "" while things work.
  const std::string& current() const { return last_; }

 private:
  std::string last_;
};

}  // namespace memtide::daemon
