// ConnectionSet over real libvirt connections: libvirt's test driver (each test:///FILE
// connection is a private hypervisor with the file's domains, so two connections to one file are
// two daemons reporting the same UUIDs), a socket that accepts and never answers, and discovery
// over real Unix sockets in a temporary directory.
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <memtide/collectors/connection_set.hpp>

#include "../support/sizes.hpp"

namespace memtide::collectors {
namespace {

using namespace std::chrono_literals;
using memtide::test_sizes::MiB;

const std::string kNodeUri =
    std::string("test://") + MEMTIDE_FIXTURES + "/libvirt/node-metadata.xml";
constexpr const char* kWebUuid = "11111111-1111-1111-1111-111111111111";  // web-1 in that file

ConnectionSetOptions options() {
  ConnectionSetOptions o;
  o.base.procfs = "/nonexistent";  // the test driver has no QEMU processes
  // Ample for a first collection under ThreadSanitizer on a loaded machine (500 ms was not);
  // AHungDaemonDoesNotHoldTheOthers sets the budget it measures.
  o.budget = 5s;
  o.discover_interval = 0ms;  // every collection reads the globs
  return o;
}

const VmSample* find(const std::vector<VmSample>& vms, const std::string& key) {
  for (const auto& vm : vms) {
    if (vm.key() == key) {
      return &vm;
    }
  }
  return nullptr;
}

// A Unix socket listening at `path` that accepts nothing and says nothing, as a daemon that
// hangs. Bound through its directory's descriptor, as a path may be longer than an address.
class ListeningSocket {
 public:
  explicit ListeningSocket(const std::string& path) : fd_(socket(AF_UNIX, SOCK_STREAM, 0)) {
    const auto slash = path.rfind('/');
    const int dir = open(path.substr(0, slash).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    const std::string at = "/proc/self/fd/" + std::to_string(dir) + path.substr(slash);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", at.c_str());
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0) << path;
    EXPECT_EQ(listen(fd_, 16), 0);
    close(dir);
  }
  ~ListeningSocket() { close(fd_); }
  ListeningSocket(const ListeningSocket&) = delete;
  ListeningSocket& operator=(const ListeningSocket&) = delete;

 private:
  int fd_;
};

std::size_t entries(const char* dir) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) {
    ++n;
  }
  return n;
}

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/memtide-connections-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ConnectionSet, TwoDaemonsReportingTheSameUuidAreTwoVms) {
  auto o = options();
  o.connections = {{"east", kNodeUri}, {"west", kNodeUri}};
  ConnectionSet set(o);
  const auto first = set.collect(0);
  ASSERT_TRUE(first.ok()) << first.error().to_string();
  ASSERT_EQ(first->size(), 8u);  // 4 running domains each
  const auto* east = find(*first, std::string("east/") + kWebUuid);
  const auto* west = find(*first, std::string("west/") + kWebUuid);
  ASSERT_NE(east, nullptr);
  ASSERT_NE(west, nullptr);
  EXPECT_EQ(east->uuid, west->uuid);
  EXPECT_EQ(east->connection, "east");
  EXPECT_EQ((*first)[0].name, (*first)[1].name) << "sorted by name, then connection";

  // A command reaches the VM of its key, and only that one.
  const auto set_to = set.set_memory_size(std::string("west/") + kWebUuid, 2048 * MiB, 0);
  ASSERT_TRUE(set_to.ok()) << set_to.error().to_string();
  const auto second = set.collect(1000);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(find(*second, std::string("west/") + kWebUuid)->current_bytes, 2048 * MiB);
  EXPECT_EQ(find(*second, std::string("east/") + kWebUuid)->current_bytes, 3072 * MiB);

  EXPECT_FALSE(set.set_memory_size(kWebUuid, 2048 * MiB, 0).ok()) << "a key without connection";
  EXPECT_FALSE(set.set_memory_size(std::string("north/") + kWebUuid, 2048 * MiB, 0).ok());
  const auto states = set.connection_states();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].status, ConnectionState::Status::up);
  EXPECT_EQ(states[0].vms, 4u);
}

// A daemon that accepts and never answers holds neither the collection nor the commands of the
// others beyond the budget; its state says so, and a dead URI is only down.
TEST(ConnectionSet, AHungDaemonDoesNotHoldTheOthers) {
  TempDir dir;
  const std::string hung = dir.path() + "/hung-sock";
  ListeningSocket silent(hung);
  auto o = options();
  // The budget this test measures: long enough for the good connection's first collection under
  // ThreadSanitizer on a loaded machine (500 ms was not), short beside the hang it cuts off.
  o.budget = 2s;
  const auto bound = o.budget + 1s;
  o.connections = {{"good", kNodeUri},
                   {"hung", "qemu+unix:///session?socket=" + hung},
                   {"dead", "qemu+unix:///session?socket=" + dir.path() + "/no-such-sock"}};
  ConnectionSet set(o);
  for (std::int64_t tick = 0; tick < 3; ++tick) {
    const auto start = std::chrono::steady_clock::now();
    const auto vms = set.collect(tick * 1000);
    const auto took = std::chrono::steady_clock::now() - start;
    ASSERT_TRUE(vms.ok()) << vms.error().to_string();
    EXPECT_EQ(vms->size(), 4u);
    EXPECT_LT(took, bound) << "tick " << tick << " waited for the hung daemon";
  }
  const auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(set.set_memory_size(std::string("good/") + kWebUuid, 2048 * MiB, 0).ok());
  EXPECT_FALSE(set.set_memory_size("hung/00000000-0000-0000-0000-000000000001", 1, 0).ok());
  EXPECT_LT(std::chrono::steady_clock::now() - start, bound);
  const auto states = set.connection_states();
  ASSERT_EQ(states.size(), 3u);  // by name: dead, good, hung
  EXPECT_EQ(states[0].status, ConnectionState::Status::down);
  EXPECT_NE(states[0].error.find("cannot connect"), std::string::npos) << states[0].error;
  EXPECT_EQ(states[1].status, ConnectionState::Status::up);
  EXPECT_EQ(states[2].status, ConnectionState::Status::down);
  EXPECT_EQ(states[2].down_since_ms, 0);
  EXPECT_FALSE(states[2].error.empty());
}

// The daemon keeps a down connection's guests from its last snapshot, in the snapshot's order,
// and only those.
TEST(ConnectionSet, ADownConnectionsGuestsKeepTheirLastFigures) {
  auto vm = [](const char* name, const char* connection, std::uint64_t bytes) {
    VmSample v;
    v.name = name;
    v.connection = connection;
    v.uuid = std::string("uuid-") + name;
    v.current_bytes = bytes;
    return v;
  };
  std::vector<VmSample> last = {vm("a", "east", 1), vm("b", "west", 2), vm("c", "east", 3),
                                vm("d", "north", 4)};
  Snapshot now;
  now.vms = {vm("b", "west", 20), vm("bb", "west", 30)};
  now.connections.resize(3);
  now.connections[0].name = "east";
  now.connections[0].status = ConnectionState::Status::down;
  now.connections[1].name = "west";
  now.connections[1].status = ConnectionState::Status::up;
  now.connections[2].name = "north";
  now.connections[2].status = ConnectionState::Status::refused;
  keep_guests_of_down_connections(now, last);
  std::vector<std::string> keys;
  for (const auto& v : now.vms) {
    keys.push_back(v.key() + "=" + std::to_string(v.current_bytes));
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"east/uuid-a=1", "west/uuid-b=20", "west/uuid-bb=30",
                                            "east/uuid-c=3"}));
}

TEST(ConnectionSet, EveryConnectionDownFailsTheCollection) {
  TempDir dir;
  auto o = options();
  o.connections = {{"dead", "qemu+unix:///session?socket=" + dir.path() + "/no-such-sock"}};
  ConnectionSet set(o);
  const auto vms = set.collect(0);
  ASSERT_FALSE(vms.ok());
  EXPECT_NE(vms.error().message.find("dead: "), std::string::npos) << vms.error().message;
}

// Sockets matching a glob become connections named after what the wildcards matched, and go
// when their socket goes; a file that is no socket, a socket of an untrusted owner, and one past
// the cap are refused and listed.
TEST(ConnectionSet, DiscoveryFollowsSocketsAndRefusesTheUntrusted) {
  TempDir dir;
  for (const char* pod : {"pod-a", "pod-b", "pod-c", "pod-d", "pod-e"}) {
    std::filesystem::create_directories(dir.path() + "/pods/" + pod + "/libvirt");
  }
  auto socket_of = [&dir](const char* pod) {
    return dir.path() + "/pods/" + pod + "/libvirt/sock";
  };
  auto a = std::make_unique<ListeningSocket>(socket_of("pod-a"));
  ListeningSocket b(socket_of("pod-b"));
  std::ofstream(socket_of("pod-c")) << "not a socket\n";
  ListeningSocket d(socket_of("pod-d"));
  ASSERT_EQ(chown(socket_of("pod-d").c_str(), 65534, 65534), 0);
  auto o = options();
  o.discover = {{"kv", dir.path() + "/pods/*/libvirt/sock", "test://{socket}", {}}};
  o.max_connections = 2;
  std::vector<std::string> uris;
  o.make = [&uris](const LibvirtOptions& base) -> std::unique_ptr<Hypervisor> {
    uris.push_back(base.uri);
    auto test = base;
    test.uri = kNodeUri;  // the test driver stands in for each socket's daemon
    return std::make_unique<LibvirtHypervisor>(test);
  };
  ConnectionSet set(o);
  const auto vms = set.collect(0);
  ASSERT_TRUE(vms.ok()) << vms.error().to_string();
  EXPECT_EQ(vms->size(), 8u);
  ASSERT_EQ(uris.size(), 2u);
  auto states = set.connection_states();
  ASSERT_EQ(states.size(), 4u);
  EXPECT_EQ(states[0].name, "kv-pod-a");
  EXPECT_EQ(states[0].uri, "test://" + socket_of("pod-a"));
  EXPECT_EQ(states[0].status, ConnectionState::Status::up);
  EXPECT_TRUE(states[0].discovered);
  EXPECT_EQ(states[1].name, "kv-pod-b");
  EXPECT_EQ(states[2].name, "kv-pod-c");
  EXPECT_EQ(states[2].status, ConnectionState::Status::refused);
  EXPECT_EQ(states[2].error, "not a socket");
  EXPECT_EQ(states[3].name, "kv-pod-d");
  EXPECT_NE(states[3].error.find("owned by user 65534"), std::string::npos) << states[3].error;
  EXPECT_NE(find(*vms, std::string("kv-pod-b/") + kWebUuid), nullptr);

  // pod-a's socket goes: its connection and guests go; pod-e's arrives within the cap.
  a.reset();
  std::filesystem::remove(socket_of("pod-a"));
  ListeningSocket e(socket_of("pod-e"));
  const auto later = set.collect(1000);
  ASSERT_TRUE(later.ok());
  EXPECT_EQ(find(*later, std::string("kv-pod-a/") + kWebUuid), nullptr);
  EXPECT_NE(find(*later, std::string("kv-pod-e/") + kWebUuid), nullptr);
  EXPECT_EQ(set.size(), 2u);

  // The owner is trusted once the discovery names it.
  o.discover[0].owners = {65534};
  o.max_connections = 8;
  ConnectionSet trusting(o);
  ASSERT_TRUE(trusting.collect(0).ok());
  EXPECT_EQ(trusting.size(), 3u);  // pod-b, pod-d, pod-e
}

// The glob docs/multiple-daemons.md gives for KubeVirt nodes finds each launcher pod's socket in
// the kubelet's layout (here under a temporary root) and names the connection after the pod.
TEST(ConnectionSet, TheKubevirtGlobFindsLauncherSockets) {
  std::ifstream page(std::string(MEMTIDE_TESTS) + "/../docs/multiple-daemons.md");
  std::string glob;
  for (std::string line; std::getline(page, line) && glob.empty();) {
    if (const auto at = line.find("socket: /var/lib/kubelet/"); at != std::string::npos) {
      glob = line.substr(at + 8);
    }
  }
  ASSERT_FALSE(glob.empty()) << "no kubelet socket glob in docs/multiple-daemons.md";
  TempDir root;
  const std::string pods = root.path() + "/var/lib/kubelet/pods/";
  const std::string volume = "/volumes/kubernetes.io~empty-dir/libvirt-runtime/";
  std::vector<std::unique_ptr<ListeningSocket>> sockets;
  for (const char* uid : {"0f1e2d3c-aaaa-4bbb-8ccc-000000000001", "9a8b7c6d-aaaa-4bbb-8ccc-2"}) {
    std::string runtime = pods;
    runtime.append(uid).append(volume);
    std::filesystem::create_directories(runtime);
    sockets.push_back(std::make_unique<ListeningSocket>(runtime + "virtqemud-sock"));
  }
  // Another pod's emptyDir of the same name without a daemon, and another volume: not matched.
  std::filesystem::create_directories(pods + "no-daemon" + volume);
  std::filesystem::create_directories(pods + "other/volumes/kubernetes.io~empty-dir/private");
  sockets.push_back(std::make_unique<ListeningSocket>(
      pods + "other/volumes/kubernetes.io~empty-dir/private/virtqemud-sock"));
  auto o = options();
  o.discover = {{"pod", root.path() + glob, "qemu+unix:///session?socket={socket}", {}}};
  std::vector<std::string> uris;
  o.make = [&uris](const LibvirtOptions& base) -> std::unique_ptr<Hypervisor> {
    uris.push_back(base.uri);
    auto test = base;
    test.uri = kNodeUri;
    return std::make_unique<LibvirtHypervisor>(test);
  };
  ConnectionSet set(o);
  ASSERT_TRUE(set.collect(0).ok());
  const auto states = set.connection_states();
  ASSERT_EQ(states.size(), 2u);
  EXPECT_EQ(states[0].name, "pod-0f1e2d3c-aaaa-4bbb-8ccc-000000000001");
  EXPECT_EQ(states[1].name, "pod-9a8b7c6d-aaaa-4bbb-8ccc-2");
  // The kubelet's path is longer than a socket address: libvirt is given one through the
  // directory memtided holds open, which names the same socket.
  const std::string socket =
      pods + "0f1e2d3c-aaaa-4bbb-8ccc-000000000001" + volume + "virtqemud-sock";
  EXPECT_GT(socket.size(), sizeof(sockaddr_un::sun_path));
  EXPECT_EQ(states[0].uri, "qemu+unix:///session?socket=" + socket);
  ASSERT_EQ(uris.size(), 2u);
  const std::string prefix = "qemu+unix:///session?socket=/proc/self/fd/";
  ASSERT_EQ(uris[0].rfind(prefix, 0), 0u) << uris[0];
  const std::string given = uris[0].substr(uris[0].find('=') + 1);
  EXPECT_LT(given.size(), sizeof(sockaddr_un::sun_path));
  struct stat via {};
  struct stat real {};
  ASSERT_EQ(stat(given.c_str(), &via), 0) << given;
  ASSERT_EQ(stat(socket.c_str(), &real), 0);
  EXPECT_EQ(via.st_ino, real.st_ino);
  EXPECT_TRUE(S_ISSOCK(via.st_mode));
}

TEST(ConnectionSet, DiscoveredNamesArePlainAndBounded) {
  config::LibvirtDiscovery d{"kv", "/var/lib/kubelet/pods/*/volumes/x/sock", "", {}};
  EXPECT_EQ(discovered_name(d, "/var/lib/kubelet/pods/0f1e-22/volumes/x/sock"), "kv-0f1e-22");
  EXPECT_EQ(discovered_name(d, "/var/lib/kubelet/pods/a b\xc3\xa9/volumes/x/sock"), "kv-a_b__");
  const auto long_name =
      discovered_name(d, "/var/lib/kubelet/pods/" + std::string(100, 'p') + "/volumes/x/sock");
  EXPECT_LE(long_name.size(), 64u);
  EXPECT_EQ(long_name.rfind("kv-", 0), 0u);
}

// Connections appearing and vanishing at a high rate leave no descriptor and no thread behind.
TEST(ConnectionSet, ChurnLeaksNoDescriptorOrThread) {
  TempDir dir;
  auto o = options();
  o.discover = {{"kv", dir.path() + "/*.sock", "test://{socket}", {}}};
  o.make = [](const LibvirtOptions& base) -> std::unique_ptr<Hypervisor> {
    auto test = base;
    test.uri = kNodeUri;
    return std::make_unique<LibvirtHypervisor>(test);
  };
  ConnectionSet set(o);
  ASSERT_FALSE(set.collect(0).ok());  // nothing discovered yet
  std::size_t fds_before = 0;
  std::size_t threads_before = 0;
  for (std::int64_t round = 0; round < 120; ++round) {
    {
      ListeningSocket s1(dir.path() + "/" + std::to_string(round) + ".sock");
      ListeningSocket s2(dir.path() + "/" + std::to_string(round) + "b.sock");
      ASSERT_TRUE(set.collect(round * 10 + 1).ok());
      EXPECT_EQ(set.size(), 2u);
    }
    std::filesystem::remove(dir.path() + "/" + std::to_string(round) + ".sock");
    std::filesystem::remove(dir.path() + "/" + std::to_string(round) + "b.sock");
    EXPECT_FALSE(set.collect(round * 10 + 2).ok());
    EXPECT_EQ(set.size(), 0u);
    if (round == 19) {  // after the first connections' threads have settled
      std::this_thread::sleep_for(500ms);
      fds_before = entries("/proc/self/fd");
      threads_before = entries("/proc/self/task");
    }
  }
  std::this_thread::sleep_for(500ms);  // retired connections close on threads of their own
  EXPECT_LE(entries("/proc/self/fd"), fds_before + 2);
  EXPECT_LE(entries("/proc/self/task"), threads_before + 2);
}

}  // namespace
}  // namespace memtide::collectors
