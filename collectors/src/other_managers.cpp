#include <algorithm>
#include <array>
#include <memory>

#include <dirent.h>
#include <pwd.h>

#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/other_managers.hpp>
#include <memtide/collectors/qemu_process.hpp>

#include "text.hpp"

namespace memtide::collectors {

namespace {

struct Known {
  std::string_view name;
  std::string_view user;  // its system user besides root, or ""
  bool balloons;
  bool ksm;
};

// ksmtuned tunes KSM only; MOM (standalone momd, or driven by oVirt's vdsm) resizes balloons and
// tunes KSM; Proxmox VE's automatic ballooning runs in pvestatd (KSM is left to ksmtuned there);
// another memtided does both.
constexpr std::array<Known, 5> kKnown = {{
    {"ksmtuned", "", false, true},
    {"momd", "vdsm", true, true},
    {"vdsm", "vdsm", true, true},
    {"pvestatd", "", true, false},
    {"memtided", "", true, true},
}};

const Known* known(std::string_view name) {
  // "vdsmd" is vdsm's service and script name on some releases.
  if (name == "vdsmd") {
    name = "vdsm";
  }
  const auto it =
      std::find_if(kKnown.begin(), kKnown.end(), [name](const Known& k) { return k.name == name; });
  return it == kKnown.end() ? nullptr : &*it;
}

std::string_view base_name(std::string_view path) {
  const auto slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// "python3.11", "perl", "bash", "sh": a program that runs the script named by argv[1].
bool interpreter(std::string_view name) {
  for (const std::string_view prefix : {"python", "perl", "bash", "sh", "dash"}) {
    if (name.rfind(prefix, 0) == 0 &&
        name.find_first_not_of("0123456789.", prefix.size()) == std::string_view::npos) {
      return true;
    }
  }
  return false;
}

std::optional<std::uint32_t> user_uid(std::string_view user) {
  if (user.empty()) {
    return std::nullopt;
  }
  const passwd* pw = getpwnam(std::string(user).c_str());
  return pw != nullptr ? std::optional<std::uint32_t>(pw->pw_uid) : std::nullopt;
}

}  // namespace

std::optional<OtherManager> identify_manager(std::string_view comm, std::string_view cmdline,
                                             int pid) {
  while (!comm.empty() && comm.back() == '\n') {
    comm.remove_suffix(1);
  }
  const std::string_view argv0 = cmdline.substr(0, cmdline.find('\0'));
  std::string_view argv1;
  if (argv0.size() < cmdline.size()) {
    const std::string_view rest = cmdline.substr(argv0.size() + 1);
    argv1 = rest.substr(0, rest.find('\0'));
  }
  const Known* k = known(comm);
  k = k != nullptr ? k : known(base_name(argv0));
  if (k == nullptr && interpreter(base_name(argv0))) {
    k = known(base_name(argv1));
  }
  if (k == nullptr) {
    return std::nullopt;
  }
  return OtherManager{std::string(k->name), pid, k->balloons, k->ksm};
}

std::vector<std::string_view> known_manager_names() {
  std::vector<std::string_view> names;
  names.reserve(kKnown.size());
  for (const auto& k : kKnown) {
    names.push_back(k.name);
  }
  return names;
}

std::string_view manager_user(std::string_view name) {
  const Known* k = known(name);
  return k != nullptr ? k->user : std::string_view{};
}

namespace {

// Whether process `pid` (its /proc directory `base`) is a manager that counts; nullopt for
// ordinary processes and for ones that vanish or cannot be read.
std::optional<OtherManager> check_process(const std::string& base, int pid, bool& gone) {
  gone = false;
  // comm (at most 16 bytes) names almost every process; the command line is read only where it
  // could name a manager that comm does not: a known name, or a script an interpreter runs.
  const auto comm = read_optional_file(base + "/comm", 64);
  if (!comm || !comm->has_value()) {
    gone = true;  // gone or unreadable
    return std::nullopt;
  }
  std::string_view name = **comm;
  while (!name.empty() && name.back() == '\n') {
    name.remove_suffix(1);
  }
  if (known(name) == nullptr && !interpreter(name)) {
    return std::nullopt;
  }
  const auto cmdline = read_optional_file(base + "/cmdline", 8192);
  if (!cmdline || !cmdline->has_value() || (*cmdline)->empty()) {
    return std::nullopt;  // gone, unreadable, or a kernel thread
  }
  auto manager = identify_manager(**comm, **cmdline, pid);
  if (!manager) {
    return std::nullopt;
  }
  const auto status = read_optional_file(base + "/status");
  if (!status || !status->has_value()) {
    return std::nullopt;
  }
  const auto uids = parse_status_uids(**status);
  const auto own_user = user_uid(manager_user(manager->name));
  if (uids.empty() || (uids[0] != 0 && uids[0] != own_user)) {
    return std::nullopt;  // any user may name a process so; only root's (or the manager's user's)
                          // count
  }
  return manager;
}

}  // namespace

OtherManagerFinder::OtherManagerFinder(std::string procfs, int self_pid,
                                       std::chrono::milliseconds pass_interval,
                                       std::chrono::milliseconds full_pass_interval)
    : procfs_(std::move(procfs)),
      self_pid_(self_pid),
      pass_interval_(pass_interval),
      full_pass_interval_(full_pass_interval) {}

std::vector<OtherManager> OtherManagerFinder::find(std::int64_t monotonic_ms) {
  if (last_pass_ms_ != INT64_MIN && monotonic_ms - last_pass_ms_ < pass_interval_.count()) {
    return found_;
  }
  std::unique_ptr<DIR, DirClose> dir(opendir(procfs_.c_str()));
  if (!dir) {
    return {};
  }
  last_pass_ms_ = monotonic_ms;
  const bool full_pass = last_full_pass_ms_ == INT64_MIN ||
                         monotonic_ms - last_full_pass_ms_ >= full_pass_interval_.count();
  if (full_pass) {
    last_full_pass_ms_ = monotonic_ms;
  }
  ++passes_;
  found_.clear();
  while (const dirent* entry = readdir(dir.get())) {
    const auto parsed = detail::to_u64(entry->d_name);
    if (!parsed || *parsed > INT32_MAX || static_cast<int>(*parsed) == self_pid_) {
      continue;
    }
    const int pid = static_cast<int>(*parsed);
    if (!full_pass) {
      if (const auto it = ordinary_.find(pid); it != ordinary_.end()) {
        it->second = passes_;  // looked at already: listed, not read
        continue;
      }
    }
    bool gone = false;
    if (auto manager = check_process(procfs_ + "/" + entry->d_name, pid, gone)) {
      ordinary_.erase(pid);
      found_.push_back(std::move(*manager));
    } else if (!gone) {
      ordinary_[pid] = passes_;
    }
  }
  // PIDs not listed this pass have exited.
  std::erase_if(ordinary_, [this](const auto& entry) { return entry.second != passes_; });
  std::sort(found_.begin(), found_.end(),
            [](const OtherManager& a, const OtherManager& b) { return a.pid < b.pid; });
  return found_;
}

std::vector<OtherManager> find_other_managers(const std::string& procfs, int self_pid) {
  return OtherManagerFinder(procfs, self_pid, std::chrono::milliseconds(0)).find(0);
}

}  // namespace memtide::collectors
