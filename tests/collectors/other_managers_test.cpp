// Finding other memory managers: by name on a procfs tree written here, and a real process on
// this host's /proc.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <memtide/collectors/other_managers.hpp>

namespace memtide::collectors {
namespace {

using namespace std::string_literals;
namespace fs = std::filesystem;

std::optional<std::string> identified(std::string_view comm, const std::string& cmdline) {
  const auto m = identify_manager(comm, cmdline, 7);
  return m ? std::optional<std::string>(m->name) : std::nullopt;
}

TEST(OtherManagers, IdentifiedByNameOrTheScriptAnInterpreterRuns) {
  // As each runs on its distribution: a shell script, Python and Perl daemons.
  EXPECT_EQ(identified("ksmtuned\n", "/bin/bash\0/usr/sbin/ksmtuned\0"s), "ksmtuned");
  EXPECT_EQ(identified("momd\n", "/usr/bin/python3\0/usr/sbin/momd\0-c\0/etc/vdsm/mom.conf\0"s),
            "momd");
  EXPECT_EQ(identified("python3\n", "python3\0/usr/sbin/momd\0"s), "momd");
  EXPECT_EQ(identified("python3.11\n", "/usr/bin/python3.11\0/usr/share/vdsm/vdsmd\0"s), "vdsm");
  EXPECT_EQ(identified("pvestatd\n", "pvestatd\0"s), "pvestatd");
  EXPECT_EQ(identified("memtided\n", "/usr/sbin/memtided\0"s), "memtided");
  const auto m = identify_manager("momd", "momd\0"s, 812);
  ASSERT_TRUE(m.has_value());
  EXPECT_EQ(*m, (OtherManager{"momd", 812, true, true}));
  EXPECT_EQ(*identify_manager("ksmtuned", "ksmtuned\0"s, 1),
            (OtherManager{"ksmtuned", 1, false, true}));
  EXPECT_EQ(*identify_manager("pvestatd", "pvestatd\0"s, 1),
            (OtherManager{"pvestatd", 1, true, false}));
  // Not managers: other names, a name as an argument of a program that is no interpreter, a
  // name inside a longer one.
  EXPECT_EQ(identified("bash\n", "/bin/bash\0"s), std::nullopt);
  EXPECT_EQ(identified("vim\n", "vim\0/usr/sbin/ksmtuned\0"s), std::nullopt);
  EXPECT_EQ(identified("ksmtuned-helper\n", "ksmtuned-helper\0"s), std::nullopt);
  EXPECT_EQ(identified("", ""), std::nullopt);
  EXPECT_EQ(manager_user("vdsm"), "vdsm");
  EXPECT_EQ(manager_user("ksmtuned"), "");
}

// A procfs tree with one directory per process.
class ProcTree {
 public:
  ProcTree() {
    char tmpl[] = "/tmp/memtide-proc-XXXXXX";
    root_ = mkdtemp(tmpl);
  }
  ~ProcTree() { fs::remove_all(root_); }
  void process(int pid, const std::string& comm, const std::string& cmdline, unsigned uid) {
    const std::string dir = root_ + "/" + std::to_string(pid);
    fs::create_directories(dir);
    std::ofstream(dir + "/comm") << comm << '\n';
    std::ofstream(dir + "/cmdline") << cmdline;
    std::ofstream(dir + "/status") << "Name:\t" << comm << "\nUid:\t" << uid << '\t' << uid << '\t'
                                   << uid << '\t' << uid << "\nGid:\t0\t0\t0\t0\n";
  }
  const std::string& root() const { return root_; }

 private:
  std::string root_;
};

TEST(OtherManagers, OnlyProcessesOfRootOrTheManagersUserCount) {
  ProcTree proc;
  proc.process(900, "pvestatd", "pvestatd\0"s, 0);
  proc.process(812, "momd", "/usr/bin/python3\0/usr/sbin/momd\0"s, 0);
  proc.process(1000, "ksmtuned", "/bin/bash\0/home/eve/ksmtuned\0"s, 1000);  // a user's process
  proc.process(2, "kthreadd", "", 0);                                        // a kernel thread
  proc.process(50, "memtided", "/usr/sbin/memtided\0"s, 0);                  // this process
  proc.process(60, "sshd", "sshd\0"s, 0);
  fs::create_directories(proc.root() + "/self");
  const auto found = find_other_managers(proc.root(), 50);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_EQ(found[0], (OtherManager{"momd", 812, true, true}));  // in PID order
  EXPECT_EQ(found[1], (OtherManager{"pvestatd", 900, true, false}));
  EXPECT_TRUE(find_other_managers("/nonexistent", 1).empty());
}

// Kept from collection to collection: /proc is listed at most once a pass interval, a process
// looked at is not read again until the next full pass, so one that becomes a manager under the
// same PID shows then; new processes, and managers that stop, show at the next pass.
TEST(OtherManagers, TheFinderReadsNewProcessesAtOnceAndTheRestOnFullPasses) {
  ProcTree proc;
  proc.process(60, "sshd", "sshd\0"s, 0);
  proc.process(61, "bash", "/bin/bash\0"s, 0);
  OtherManagerFinder finder(proc.root(), 1, std::chrono::seconds(1), std::chrono::seconds(10));
  EXPECT_TRUE(finder.find(0).empty());

  proc.process(900, "pvestatd", "pvestatd\0"s, 0);  // a new PID: seen at the next pass
  EXPECT_TRUE(finder.find(500).empty());            // within the pass interval: the last answer
  ASSERT_EQ(finder.find(1000).size(), 1u);
  // PID 61 execs ksmtuned: not read again before the full pass 10 s after the first.
  proc.process(61, "ksmtuned", "/bin/bash\0/usr/sbin/ksmtuned\0"s, 0);
  EXPECT_EQ(finder.find(2000).size(), 1u);
  const auto full = finder.find(10'000);
  ASSERT_EQ(full.size(), 2u);
  EXPECT_EQ(full[0], (OtherManager{"ksmtuned", 61, false, true}));
  // A manager that stops is gone at the next pass.
  fs::remove_all(proc.root() + "/900");
  const auto after = finder.find(11'000);
  ASSERT_EQ(after.size(), 1u);
  EXPECT_EQ(after[0].pid, 61);
}

// A real process named ksmtuned on this host's /proc: found when it runs as root, ignored when it
// runs as anyone else.
TEST(OtherManagers, ARealProcessOnThisHost) {
  char tmpl[] = "/tmp/memtide-ksmtuned-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string program = dir + "/ksmtuned";
  fs::copy_file("/bin/sleep", program);
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  auto start = [&program](bool as_nobody) {
    const pid_t pid = fork();
    if (pid == 0) {
      if (as_nobody && (setgid(65534) != 0 || setuid(65534) != 0)) {
        _exit(126);
      }
      execl(program.c_str(), program.c_str(), "30", static_cast<char*>(nullptr));
      _exit(127);
    }
    return pid;
  };
  auto seen = [](pid_t pid) {
    for (int i = 0; i < 100; ++i) {  // until the exec is done (comm is set by exec)
      for (const auto& m : find_other_managers("/proc", getpid())) {
        if (m.pid == pid) {
          return true;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  };
  auto stop = [](pid_t pid) {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
  };
  const pid_t mine = start(false);
  EXPECT_EQ(seen(mine), getuid() == 0);
  stop(mine);
  if (getuid() == 0) {
    const pid_t nobody = start(true);
    EXPECT_FALSE(seen(nobody));
    stop(nobody);
  }
  fs::remove_all(dir);
}

}  // namespace
}  // namespace memtide::collectors
