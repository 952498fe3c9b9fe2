#include <algorithm>
#include <thread>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/parser.h>
#include <pthread.h>

#include <memtide/collectors/libvirt_connection.hpp>
#include <memtide/core/text.hpp>

namespace memtide::collectors {

// libvirt's default event loop on a thread of its own. Registered once per process (libvirt
// requires it before the first connection); the thread runs while any connection exists.
class LibvirtEventLoop {
 public:
  static std::shared_ptr<LibvirtEventLoop> acquire() {
    static std::mutex mutex;
    static std::weak_ptr<LibvirtEventLoop> current;
    std::lock_guard lock(mutex);
    auto loop = current.lock();
    if (!loop) {
      loop = std::shared_ptr<LibvirtEventLoop>(new LibvirtEventLoop());
      current = loop;
    }
    return loop;
  }

  ~LibvirtEventLoop() {
    stop_ = true;
    // A zero timeout fires on the next iteration and so wakes virEventRunDefaultImpl.
    const int wake = virEventAddTimeout(
        0, [](int, void*) {}, nullptr, nullptr);
    thread_.join();
    if (wake >= 0) {
      virEventRemoveTimeout(wake);
    }
  }

 private:
  LibvirtEventLoop() {
    static std::once_flag once;
    std::call_once(once, [] {
      // libvirt and libxml2 set up their global state here, on one thread, before connections'
      // workers call into them at once (libxml2's first use from two threads races).
      virInitialize();
      xmlInitParser();
      // Errors are returned to callers as values; libvirt must not print them itself.
      virSetErrorFunc(nullptr, [](void*, virErrorPtr) {});
      virEventRegisterDefaultImpl();
    });
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "libvirt-events");
      while (!stop_) {
        virEventRunDefaultImpl();
      }
    });
  }

  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Formatted here rather than by virDomainGetUUIDString, which goes through printf: this runs
// for every domain every tick.
std::string domain_uuid(virDomainPtr dom) {
  unsigned char raw[VIR_UUID_BUFLEN] = {};
  if (virDomainGetUUID(dom, raw) != 0) {
    return "";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(VIR_UUID_STRING_BUFLEN - 1, '-');
  std::size_t at = 0;
  for (std::size_t i = 0; i < VIR_UUID_BUFLEN; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) {
      ++at;  // the dashes
    }
    text[at++] = kHex[raw[i] >> 4];
    text[at++] = kHex[raw[i] & 0xf];
  }
  return text;
}

std::string domain_name(virDomainPtr dom) {
  // The name reaches logs, metrics and JSON.
  const char* name = virDomainGetName(dom);
  return name ? to_valid_utf8(name) : "";
}

Error libvirt_error(const std::string& what) {
  const char* message = virGetLastErrorMessage();
  return Error{"", 0, 0,
               what + ": " + (message ? to_valid_utf8(message) : "unknown libvirt error")};
}

LibvirtConnection::LibvirtConnection(ConnectionOptions options)
    : options_(std::move(options)),
      loop_(LibvirtEventLoop::acquire()),
      backoff_(options_.reconnect_min_backoff) {}

LibvirtConnection::~LibvirtConnection() {
  close("shutting down");
}

void LibvirtConnection::queue(virDomainPtr dom, DomainEvent::Kind kind) {
  std::lock_guard lock(events_mutex_);
  events_.push_back({domain_uuid(dom), kind});
  ++events_total_;
}

int LibvirtConnection::on_lifecycle(virConnectPtr, virDomainPtr dom, int event, int, void* self) {
  switch (event) {
    case VIR_DOMAIN_EVENT_STOPPED:
    case VIR_DOMAIN_EVENT_UNDEFINED:
    case VIR_DOMAIN_EVENT_CRASHED:
      static_cast<LibvirtConnection*>(self)->queue(dom, DomainEvent::Kind::stopped);
      break;
    case VIR_DOMAIN_EVENT_STARTED:
    case VIR_DOMAIN_EVENT_DEFINED:
      static_cast<LibvirtConnection*>(self)->queue(dom, DomainEvent::Kind::started);
      break;
    default:
      break;  // suspended, resumed, ...: nothing the inventory keeps changes
  }
  return 0;
}

void LibvirtConnection::on_metadata_change(virConnectPtr, virDomainPtr dom, int, const char*,
                                           void* self) {
  static_cast<LibvirtConnection*>(self)->queue(dom, DomainEvent::Kind::metadata);
}

void LibvirtConnection::on_memory_device_size_change(virConnectPtr, virDomainPtr dom, const char*,
                                                     unsigned long long, void* self) {
  static_cast<LibvirtConnection*>(self)->queue(dom, DomainEvent::Kind::memory_device);
}

void LibvirtConnection::on_balloon_change(virConnectPtr, virDomainPtr dom, unsigned long long,
                                          void* self) {
  static_cast<LibvirtConnection*>(self)->queue(dom, DomainEvent::Kind::balloon);
}

void LibvirtConnection::on_close(virConnectPtr, int reason, void* self) {
  auto* c = static_cast<LibvirtConnection*>(self);
  c->close_reason_ = reason;
  c->closed_ = true;
}

void LibvirtConnection::close(const std::string& why) {
  if (conn_ == nullptr) {
    return;
  }
  for (int* callback :
       {&lifecycle_callback_, &metadata_callback_, &memory_device_callback_, &balloon_callback_}) {
    if (*callback >= 0) {
      virConnectDomainEventDeregisterAny(conn_, *callback);
      *callback = -1;
    }
  }
  virConnectUnregisterCloseCallback(conn_, &LibvirtConnection::on_close);
  virConnectClose(conn_);
  conn_ = nullptr;
  last_error_ = why;
  // Anything learnt from the old connection's events is void.
  std::lock_guard lock(events_mutex_);
  events_.clear();
}

Error LibvirtConnection::failed(Error error) {
  if (conn_ != nullptr && virConnectIsAlive(conn_) != 1) {
    close(error.message);
  }
  return error;
}

std::vector<DomainEvent> LibvirtConnection::take_events() {
  std::vector<DomainEvent> events;
  std::lock_guard lock(events_mutex_);
  events.swap(events_);
  return events;
}

void LibvirtConnection::register_callbacks() {
  virConnectRegisterCloseCallback(conn_, &LibvirtConnection::on_close, this, nullptr);
  lifecycle_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtConnection::on_lifecycle), this, nullptr);
  // Per-VM settings changed on a running domain take effect at the next collection. (A driver
  // without the event leaves them to the next start or redefinition.)
  metadata_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtConnection::on_metadata_change), this, nullptr);
  // virtio-mem devices' plugged sizes as the guest changes them (libvirt 7.9 and later).
  memory_device_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtConnection::on_memory_device_size_change), this, nullptr);
  // The balloon's moves, whoever made them: its statistics are asked for again at once rather
  // than when next due. (Without the event, the balloon is followed after each command, and
  // others' changes are seen when its statistics are next due.)
  balloon_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtConnection::on_balloon_change), this, nullptr);
}

Result<bool> LibvirtConnection::ensure_open(std::int64_t monotonic_ms) {
  if (conn_ != nullptr && closed_) {
    const int reason = close_reason_;
    close(reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE ? "connection lost: keepalive timed out"
          : reason == VIR_CONNECT_CLOSE_REASON_EOF     ? "connection lost: libvirtd closed it"
                                                       : "connection lost");
    next_attempt_ms_ = monotonic_ms;  // try at once: libvirtd may be back already
  }
  if (conn_ != nullptr) {
    return false;
  }
  if (monotonic_ms < next_attempt_ms_) {
    return Error{"", 0, 0,
                 "libvirt unavailable (" + last_error_ + "); next connection attempt in " +
                     std::to_string((next_attempt_ms_ - monotonic_ms + 999) / 1000) + "s"};
  }
  closed_ = false;
  conn_ = virConnectOpen(options_.uri.c_str());
  if (conn_ == nullptr) {
    const auto error = libvirt_error("cannot connect to " + options_.uri);
    last_error_ = error.message;
    next_attempt_ms_ = monotonic_ms + backoff_.count();
    backoff_ = std::min(backoff_ * 2, options_.reconnect_max_backoff);
    return error;
  }
  backoff_ = options_.reconnect_min_backoff;
  ++connects_total_;
  // Keepalive detects a dead libvirtd on remote-protocol connections; local drivers (test://)
  // do not support it, which is fine.
  virConnectSetKeepAlive(conn_, static_cast<int>(options_.keepalive_interval.count()),
                         options_.keepalive_count);
  register_callbacks();
  return true;
}

}  // namespace memtide::collectors
