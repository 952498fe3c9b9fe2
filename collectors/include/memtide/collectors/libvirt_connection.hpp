// One connection to one libvirt daemon: opening it with backoff, keepalive, noticing that it
// closed, and the domain events it delivers. It knows nothing of statistics or balloons.
//
// Threads: libvirt's default event loop runs on a thread of its own, shared by every
// connection in the process; it delivers events and close notices, which touch only the
// mutex-guarded queue and the atomic flag here. Everything else is called from one thread at a
// time (the owner's worker).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <memtide/core/result.hpp>

// libvirt's opaque handle types, declared here so that users of this header need not include
// libvirt's headers. The names are libvirt's own.
typedef struct _virConnect* virConnectPtr;  // NOLINT(bugprone-reserved-identifier)
typedef struct _virDomain* virDomainPtr;    // NOLINT(bugprone-reserved-identifier)

namespace memtide::collectors {

struct ConnectionOptions {
  std::string uri = "qemu:///system";
  std::chrono::seconds keepalive_interval{5};
  unsigned keepalive_count = 3;
  std::chrono::milliseconds reconnect_min_backoff{1000};
  std::chrono::milliseconds reconnect_max_backoff{60'000};
};

// What a domain event says to the inventory.
struct DomainEvent {
  enum class Kind {
    started,        // started or (re)defined: its XML and QEMU process may have changed
    stopped,        // stopped, undefined or crashed: it leaves the inventory
    metadata,       // its <metadata> changed (virsh metadata --live)
    memory_device,  // a virtio-mem device's plugged size changed
    balloon,        // QEMU reported the balloon's new size
  };
  std::string uuid;
  Kind kind;
};

class LibvirtEventLoop;

class LibvirtConnection {
 public:
  explicit LibvirtConnection(ConnectionOptions options);
  ~LibvirtConnection();
  LibvirtConnection(const LibvirtConnection&) = delete;
  LibvirtConnection& operator=(const LibvirtConnection&) = delete;

  // Opens the connection if it is not open, unless the backoff after a failed attempt has not
  // passed at `monotonic_ms`. True when it has just been opened: events may have been missed
  // while it was closed, so the caller lists everything afresh.
  Result<bool> ensure_open(std::int64_t monotonic_ms);
  // The open connection, or nullptr.
  virConnectPtr handle() const { return open() ? conn_ : nullptr; }
  bool open() const { return conn_ != nullptr && !closed_; }
  // Closes it after `error` when libvirt says it is dead; returns `error`.
  Error failed(Error error);
  void close(const std::string& why);

  // The events delivered since the last call, oldest first.
  std::vector<DomainEvent> take_events();

  const ConnectionOptions& options() const { return options_; }
  std::uint64_t connects_total() const { return connects_total_; }
  std::uint64_t events_total() const { return events_total_; }
  // Why it is closed (or was last closed); empty before any failure.
  const std::string& last_error() const { return last_error_; }

 private:
  void queue(virDomainPtr dom, DomainEvent::Kind kind);
  static int on_lifecycle(virConnectPtr, virDomainPtr dom, int event, int detail, void* self);
  static void on_metadata_change(virConnectPtr, virDomainPtr dom, int type, const char* nsuri,
                                 void* self);
  static void on_memory_device_size_change(virConnectPtr, virDomainPtr dom, const char* alias,
                                           unsigned long long size, void* self);
  static void on_balloon_change(virConnectPtr, virDomainPtr dom, unsigned long long actual,
                                void* self);
  static void on_close(virConnectPtr, int reason, void* self);
  void register_callbacks();

  ConnectionOptions options_;
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
  std::uint64_t connects_total_ = 0;

  std::mutex events_mutex_;
  std::vector<DomainEvent> events_;  // filled by the event loop thread
  std::atomic<std::uint64_t> events_total_{0};
};

// The UUID as libvirt writes it (lower-case 8-4-4-4-12 hex); empty on failure.
std::string domain_uuid(virDomainPtr dom);
// The domain's name made valid UTF-8 (libvirt accepts names that are not).
std::string domain_name(virDomainPtr dom);
// libvirt's last error message on this thread, after `what: `.
Error libvirt_error(const std::string& what);

}  // namespace memtide::collectors
