#include <cerrno>

#include <fcntl.h>
#include <unistd.h>

#include <memtide/actuators/ksm_writer.hpp>

namespace memtide::actuators {

KsmWriter::KsmWriter(std::string sysfs_root) : dir_(std::move(sysfs_root) + "/kernel/mm/ksm") {}

namespace {

// One pending write: file, the value to write, and what the sample holds now.
struct Pending {
  std::string file;
  std::string value;
  std::string current;
};

Status write_sysfs(const std::string& path, const std::string& value) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) {
    return Error{path, 0, errno, "cannot open for writing"};
  }
  const std::string line = value + "\n";
  const ssize_t n = write(fd, line.data(), line.size());
  const int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(line.size())) {
    return Error{path, 0, n < 0 ? err : EIO, "cannot write '" + value + "'"};
  }
  return Ok{};
}

std::string bool_text(bool b) {
  return b ? "1" : "0";
}

// The writes that take the kernel from `c` to `w`, in the order they must be made, checking each
// value against the kernel's range; what is wrong goes to `problems`.
std::vector<Pending> plan_writes(const KsmSettings& w, const KsmSample& c,
                                 std::vector<std::string>& problems) {
  constexpr std::uint64_t kUintMax = 0xffffffffULL;
  std::vector<Pending> pending;
  auto number = [&](const char* file, const std::optional<std::uint64_t>& want,
                    std::optional<std::uint64_t> now, std::uint64_t low, std::uint64_t high) {
    if (!want) {
      return;
    }
    if (*want < low || *want > high) {
      problems.push_back(std::string(file) + ": " + std::to_string(*want) + " is outside " +
                         std::to_string(low) + " .. " + std::to_string(high));
      return;
    }
    if (!now) {
      problems.push_back(std::string(file) + ": this kernel has no such setting");
      return;
    }
    if (*want != *now) {
      pending.push_back({file, std::to_string(*want), std::to_string(*now)});
    }
  };
  auto flag = [&](const char* file, const std::optional<bool>& want, std::optional<bool> now) {
    if (!want) {
      return;
    }
    if (!now) {
      problems.push_back(std::string(file) + ": this kernel has no such setting");
      return;
    }
    if (*want != *now) {
      pending.push_back({file, bool_text(*want), bool_text(*now)});
    }
  };
  number("pages_to_scan", w.pages_to_scan, c.pages_to_scan, 1, kUintMax);
  number("sleep_millisecs", w.sleep_ms, c.sleep_ms, 0, kUintMax);
  flag("use_zero_pages", w.use_zero_pages, c.use_zero_pages);
  if (w.advisor_mode) {
    if (*w.advisor_mode != "none" && *w.advisor_mode != "scan-time") {
      problems.push_back("advisor_mode: '" + *w.advisor_mode + "' is neither none nor scan-time");
    } else if (!c.advisor_mode) {
      problems.push_back("advisor_mode: this kernel has no such setting");
    } else if (*w.advisor_mode != *c.advisor_mode) {
      pending.push_back({"advisor_mode", *w.advisor_mode, *c.advisor_mode});
    }
  }
  number("advisor_max_cpu", w.advisor_max_cpu_percent, c.advisor_max_cpu_percent, 1, 100);
  number("advisor_target_scan_time", w.advisor_target_scan_time_seconds,
         c.advisor_target_scan_time_seconds, 1, kUintMax);
  std::optional<std::uint64_t> run_now = c.run;
  if (w.merge_across_nodes && c.merge_across_nodes &&
      *w.merge_across_nodes != *c.merge_across_nodes) {
    // The kernel changes it only while nothing is merged: unmerge (run=2) first.
    if (c.run != 2) {
      pending.push_back({"run", "2", std::to_string(c.run)});
      run_now = 2;
    }
  }
  flag("merge_across_nodes", w.merge_across_nodes, c.merge_across_nodes);
  if (w.run) {
    if (*w.run > 2) {
      problems.push_back("run: " + std::to_string(*w.run) + " is outside 0 .. 2");
    } else if (*w.run != *run_now) {
      pending.push_back({"run", std::to_string(*w.run), std::to_string(*run_now)});
    }
  }
  return pending;
}

}  // namespace

Result<std::vector<KsmWrite>> KsmWriter::apply(const KsmSettings& w, const KsmSample& c) const {
  std::vector<std::string> problems;
  const auto pending = plan_writes(w, c, problems);
  if (!problems.empty()) {
    std::string message = problems.front();
    for (std::size_t i = 1; i < problems.size(); ++i) {
      message += "; " + problems[i];
    }
    return Error{dir_, 0, 0, message + " (nothing written)"};
  }
  std::vector<KsmWrite> done;
  for (const auto& p : pending) {
    if (auto s = write_sysfs(dir_ + "/" + p.file, p.value); !s) {
      return s.error();
    }
    done.push_back({p.file, p.current, p.value});
  }
  return done;
}

}  // namespace memtide::actuators
