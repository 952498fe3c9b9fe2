// Errors as values. Library layers (core, config, collectors, policy) never log and never
// throw across their public interfaces; they return Result<T>, and only daemon/ decides what to
// print. An Error names where the problem is (a file and, for text inputs, a 1-based line) so an
// operator can go straight to it.
#pragma once

#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace memtide {

struct Error {
  std::string file;     // path or other origin ("/proc/meminfo"); empty when not applicable
  int line = 0;         // 1-based line in `file`; 0 when the error concerns the whole file
  int sys_errno = 0;    // errno of a failed system call; 0 for content errors
  std::string message;  // what is wrong, without the location

  // "FILE:LINE: message" / "FILE: message (strerror)" / "message".
  std::string to_string() const {
    std::string out;
    if (!file.empty()) {
      out += file;
      if (line > 0) {
        out += ':';
        out += std::to_string(line);
      }
      out += ": ";
    }
    out += message;
    if (sys_errno != 0) {
      out += " (";
      out += std::strerror(sys_errno);
      out += ')';
    }
    return out;
  }

  friend bool operator==(const Error&, const Error&) = default;
};

// A minimal std::expected stand-in (C++23 is not available with the toolchain we target).
// Holds either a T or an Error; accessing the wrong alternative is a programming error and
// terminates via std::get's exception.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit
  Result(Error error) : data_(std::in_place_index<1>, std::move(error)) {}  // NOLINT: implicit

  bool ok() const { return data_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const { return std::get<1>(data_); }

 private:
  std::variant<T, Error> data_;
};

// Result<void>: success or an Error.
struct Ok {};
using Status = Result<Ok>;

}  // namespace memtide
