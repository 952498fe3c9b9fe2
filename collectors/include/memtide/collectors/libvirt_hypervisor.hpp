// Hypervisor over the libvirt C API.
//
// Threads: libvirt's default event loop runs on a thread of its own (shared by all instances in
// the process); it delivers lifecycle events and connection-close notices, which only touch
// the small mutex-guarded queue and atomic flag below. collect() and set_memory_size() must be
// called from one thread at a time (the daemon's hypervisor worker); they make blocking libvirt
// calls, so the caller bounds their duration (see daemon/src/hypervisor_worker.hpp).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <memtide/collectors/domain_xml.hpp>
#include <memtide/collectors/hypervisor.hpp>

// libvirt's opaque handle types, declared here so that users of this header need not include
// libvirt's headers. The names are libvirt's own.
typedef struct _virConnect* virConnectPtr;  // NOLINT(bugprone-reserved-identifier)
typedef struct _virDomain* virDomainPtr;    // NOLINT(bugprone-reserved-identifier)

namespace memtide::collectors {

struct LibvirtOptions {
  std::string uri = "qemu:///system";
  std::chrono::seconds keepalive_interval{5};
  unsigned keepalive_count = 3;
  std::chrono::milliseconds reconnect_min_backoff{1000};
  std::chrono::milliseconds reconnect_max_backoff{60'000};
  std::chrono::milliseconds relist_interval{60'000};
  std::uint32_t stats_period_s = 5;  // set on guests whose statistics are disabled; 0: never
  std::string procfs = "/proc";      // where QEMU processes are looked up
  std::uint64_t page_size_bytes = 4096;
  // A transient domain's virtio-mem boot sizes (what a restore returns its devices to) come from
  // memtide's record in its live metadata (domain_xml.hpp: kBootNamespace). With none recorded,
  // memtided (`record_boot_sizes`) takes the sizes it first sees and records them, so a
  // restarted memtided and the unit's safety net know them after memtided died; a client that
  // does not record (memtidectl restore) restores such a device to its full size rather than
  // leave the guest short of memory it may have booted with.
  bool record_boot_sizes = false;
};

class LibvirtEventLoop;

class LibvirtHypervisor final : public Hypervisor {
 public:
  explicit LibvirtHypervisor(LibvirtOptions options);
  ~LibvirtHypervisor() override;
  LibvirtHypervisor(const LibvirtHypervisor&) = delete;
  LibvirtHypervisor& operator=(const LibvirtHypervisor&) = delete;

  using Hypervisor::collect;
  Result<std::vector<VmSample>> collect(std::int64_t monotonic_ms,
                                        const ProcessReadHints& hints) override;
  Result<std::uint64_t> set_memory_size(const std::string& uuid, std::uint64_t target_bytes,
                                        std::uint64_t floor_bytes) override;

  // Opens the connection now, if it is not open (collect opens it when needed). Lets a caller
  // tell the connection's cost (with the test driver, libvirt parsing every domain definition
  // in-process) from the first collection's.
  Status connect(std::int64_t monotonic_ms) { return ensure_connected(monotonic_ms); }
  bool connected() const { return conn_ != nullptr && !closed_; }
  std::uint64_t connects_total() const { return connects_total_; }
  // Domain events received (lifecycle and metadata changes), for tests.
  std::uint64_t domain_events_total() const { return events_total_; }
  std::size_t inventory_size() const { return inventory_.size(); }
  // Domains whose balloon statistics were asked of libvirt, summed over collections (each one
  // costs libvirtd a query to QEMU), for tests and benchmarks.
  std::uint64_t balloon_queries_total() const { return balloon_queries_total_; }
  // The uuids whose statistics period this instance set (for tests and the daemon's report).
  const std::vector<std::string>& stats_period_set_on() const { return stats_period_set_on_; }

 private:
  // What a domain's balloon statistics said when they were last asked for.
  struct BalloonFigures {
    std::uint64_t current_bytes = 0;
    std::uint64_t max_bytes = 0;
    std::optional<std::uint64_t> host_rss_bytes;
    std::optional<std::uint64_t> disk_read_bytes_total;  // bulk block statistics only
    std::int64_t asked_ms = 0;                           // our clock
    GuestMemory guest;
    std::optional<std::string> invalid_sizes;
    // Answered per domain (no bulk balloon group): the actual-balloon statistic, which leaves
    // out what virtio-mem devices plug.
    bool from_domain_calls = false;
  };
  struct Domain {
    std::string name;
    // Balloon statistics are asked for only when due (see balloon_due); between times the last
    // figures stand. nullopt until first asked, and again after a reconnection.
    std::optional<BalloonFigures> balloon;
    std::int64_t balloon_due_ms = INT64_MIN;  // our clock; INT64_MIN: at the next collection
    // After set_memory_size, the balloon is followed at every collection until it reaches
    // `requested_bytes` or this time passes.
    std::int64_t follow_until_ms = INT64_MIN;
    std::uint64_t requested_bytes = 0;
    std::optional<DomainXmlFacts> facts;       // nullopt until the XML was read
    std::optional<std::int64_t> last_update;   // last balloon.last-update seen
    std::int64_t last_update_seen_ms = 0;      // our clock when it last changed
    std::optional<int> pid;                    // QEMU process, once found
    std::optional<QemuProcessReader> process;  // reads it, once read
    std::uint64_t seen_in = 0;                 // the last collection that listed it
    // Its maximum in KiB, asked per domain where the driver has no bulk balloon statistics.
    std::optional<unsigned long> max_kib;
    std::optional<std::string> process_unavailable;  // why no process was taken for it
    bool pid_searched = false;
    bool period_requested = false;
    // A transient domain's virtio-mem requested sizes when first seen, by alias: what a restore
    // returns to (a persistent domain's come from its inactive XML).
    std::map<std::string, std::uint64_t> first_requested;
    bool boot_record_tried = false;  // memtide's boot record was written (or tried) for it
  };
  struct Event {
    std::string uuid;
    int type;  // a virDomainEventType, kMetadataChanged or kMemoryDeviceSizeChanged
  };
  // A domain's <metadata> changed (virsh metadata --live): its XML is read again.
  static constexpr int kMetadataChanged = -1;
  // A virtio-mem device's plugged size changed (the guest plugged or unplugged blocks).
  static constexpr int kMemoryDeviceSizeChanged = -2;
  // QEMU reported the balloon's new size (it moves in steps after a command, or another client
  // set it): the balloon statistics are asked for at the next collection.
  static constexpr int kBalloonChanged = -3;

  struct StatsRecords;

  Status ensure_connected(std::int64_t monotonic_ms);
  // `error`, after dropping the connection if libvirt says it is dead.
  Error collection_failed(Error error);
  // Asks in one call for the balloon group of those domains in `all` whose balloon statistics
  // are due (`uuids`: theirs, in the same order); their records go to `due`.
  Status ask_due_balloons(const StatsRecords& all, const std::vector<std::string>& uuids,
                          std::int64_t monotonic_ms, StatsRecords& due);
  // The balloon group of a bulk statistics record; nullopt when it has none (the driver does
  // not offer the group).
  static std::optional<BalloonFigures> bulk_balloon_figures(const void* params, int n);
  void drop_connection(const std::string& why);
  void apply_events();
  Status relist();
  void load_facts(virDomainPtr dom, Domain& d);
  // Finds the QEMU process of each domain not yet searched, and makes its reader (starting
  // from the VmSwap the search read, under `hints`).
  void find_processes(const ProcessReadHints& hints);
  // Whether `d`'s balloon statistics are asked for at this collection: never asked yet, a
  // balloon change reported by QEMU, a balloon being followed after a command, or the time
  // the guest's next report is expected (schedule_balloon).
  static bool balloon_due(const Domain& d, std::int64_t monotonic_ms);
  // When `d`'s balloon statistics, just asked for, are next due.
  void schedule_balloon(Domain& d, std::int64_t monotonic_ms) const;
  // `state_params`: the domain's record with the state group; `balloon_params`: its record with
  // the balloon group when that was asked in bulk (nullptr: not asked at this collection).
  VmSample sample_from_record(virDomainPtr dom, std::string uuid, const void* state_params,
                              int n_state, const void* balloon_params, int n_balloon,
                              std::int64_t monotonic_ms);
  // `state_in_record`: the bulk record gave the domain's state; otherwise it is set in `vm`.
  BalloonFigures fill_from_domain_calls(virDomainPtr dom, Domain& d, VmSample& vm,
                                        bool state_in_record);
  // `vms` sorted by name (then UUID), reusing the last order when the records came alike.
  std::vector<VmSample> sorted_by_name(std::vector<VmSample> vms);
  void classify_stats(virDomainPtr dom, Domain& d, VmSample& vm, std::int64_t monotonic_ms);
  Error libvirt_error(const std::string& what) const;

  // Queues an event of `type` for `dom`, from libvirt's event thread (apply_events reads it).
  void queue_event(virDomainPtr dom, int type);
  static int on_lifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* self);
  static void on_metadata_change(virConnectPtr, virDomainPtr dom, int type, const char* nsuri,
                                 void* self);
  static void on_memory_device_size_change(virConnectPtr, virDomainPtr dom, const char* alias,
                                           unsigned long long size, void* self);
  static void on_balloon_change(virConnectPtr, virDomainPtr dom, unsigned long long actual,
                                void* self);
  static void on_close(virConnectPtr, int reason, void* self);
  void load_configured_virtio_mem(virDomainPtr dom, Domain& d);
  Status set_virtio_mem(virDomainPtr dom, Domain& d, const std::vector<std::uint64_t>& requested);

  LibvirtOptions options_;
  std::shared_ptr<LibvirtEventLoop> loop_;
  virConnectPtr conn_ = nullptr;
  int lifecycle_callback_ = -1;
  int metadata_callback_ = -1;
  int memory_device_callback_ = -1;
  int balloon_callback_ = -1;
  std::atomic<bool> closed_{false};
  std::atomic<int> close_reason_{0};

  std::int64_t next_attempt_ms_ = 0;
  std::chrono::milliseconds backoff_;
  std::string last_error_;
  std::int64_t last_relist_ms_ = INT64_MIN;
  bool bulk_balloon_supported_ = true;  // false once the driver returned no balloon group

  std::unordered_map<std::string, Domain> inventory_;  // by uuid
  std::uint64_t collections_ = 0;     // collect() calls, to mark the domains each one saw
  std::int64_t last_collect_ms_ = 0;  // the last collect()'s clock, for set_memory_size
  std::uint64_t balloon_queries_total_ = 0;
  // The order of the last collection's records (UUIDs), and the positions that sort them by
  // name: a collection in the same order as the last one is sorted in O(N).
  std::vector<std::string> record_order_;
  std::vector<std::size_t> by_name_;
  std::vector<std::string> stats_period_set_on_;

  std::mutex events_mutex_;
  std::vector<Event> events_;  // filled by the event loop thread
  std::atomic<std::uint64_t> events_total_{0};
  std::uint64_t connects_total_ = 0;
};

}  // namespace memtide::collectors
