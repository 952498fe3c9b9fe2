#include <algorithm>
#include <cstring>
#include <functional>
#include <thread>

#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <sys/stat.h>

#include <memtide/collectors/libvirt_hypervisor.hpp>
#include <memtide/collectors/qemu_process.hpp>
#include <memtide/core/text.hpp>

namespace memtide::collectors {

// libvirt's default event loop on a thread of its own. Registered once per process (libvirt
// requires it before the first connection); the thread runs while any LibvirtHypervisor exists.
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

namespace {

constexpr std::uint64_t KiB = 1024;
// The groups asked with a domain's balloon statistics: its disks' read counters come with them
// (one more QMP query for each domain asked, once a statistics period), so the policy sees a
// guest re-reading from disk what a shrink evicted.
constexpr unsigned int kBalloonGroups = VIR_DOMAIN_STATS_BALLOON | VIR_DOMAIN_STATS_BLOCK;

struct ConnClose {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomainHandle = std::unique_ptr<std::remove_pointer_t<virDomainPtr>, DomainFree>;

// The UUID as libvirt writes it (lower-case 8-4-4-4-12 hex), formatted here rather than by
// virDomainGetUUIDString, which goes through printf: this runs for every domain every tick.
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
  // libvirt accepts names that are not UTF-8; they reach logs, metrics and JSON.
  const char* name = virDomainGetName(dom);
  return name ? to_valid_utf8(name) : "";
}

VmState to_vm_state(int state) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
      return VmState::running;
    case VIR_DOMAIN_PAUSED:
    case VIR_DOMAIN_PMSUSPENDED:
      return VmState::paused;
    case VIR_DOMAIN_SHUTOFF:
    case VIR_DOMAIN_SHUTDOWN:
      return VmState::shutoff;
    case VIR_DOMAIN_CRASHED:
      return VmState::crashed;
    default:
      return VmState::other;
  }
}

std::optional<std::uint64_t> param_u64(const virTypedParameter* params, int n, const char* name) {
  for (int i = 0; i < n; ++i) {
    if (std::strcmp(params[i].field, name) != 0) {
      continue;
    }
    switch (params[i].type) {
      case VIR_TYPED_PARAM_ULLONG:
        return params[i].value.ul;
      case VIR_TYPED_PARAM_LLONG:
        return params[i].value.l >= 0 ? std::optional<std::uint64_t>(params[i].value.l)
                                      : std::nullopt;
      case VIR_TYPED_PARAM_UINT:
        return params[i].value.ui;
      case VIR_TYPED_PARAM_INT:
        return params[i].value.i >= 0 ? std::optional<std::uint64_t>(params[i].value.i)
                                      : std::nullopt;
      default:
        return std::nullopt;
    }
  }
  return std::nullopt;
}

// What the guest read from all its disks (block.N.rd.bytes summed over block.count); nullopt
// without the block group, or when a sum overflows (a counter no disk could reach).
std::optional<std::uint64_t> disk_read_bytes(const virTypedParameter* params, int n) {
  const auto count = param_u64(params, n, "block.count");
  if (!count) {
    return std::nullopt;
  }
  std::uint64_t total = 0;
  for (std::uint64_t i = 0; i < std::min<std::uint64_t>(*count, 4096); ++i) {
    const std::string field = "block." + std::to_string(i) + ".rd.bytes";
    const auto read = param_u64(params, n, field.c_str()).value_or(0);
    if (read > UINT64_MAX - total) {
      return std::nullopt;
    }
    total += read;
  }
  return total;
}

std::optional<std::uint64_t> times(std::optional<std::uint64_t> v, std::uint64_t factor) {
  if (!v) {
    return std::nullopt;
  }
  std::uint64_t r = 0;
  return __builtin_mul_overflow(*v, factor, &r) ? std::nullopt : std::optional(r);
}

// A guest statistics' last-update time (Unix seconds) as the policy may compute with it: one past
// 2^40 s (34,000 years) is damage, not a time, and is dropped rather than overflow later sums.
std::optional<std::int64_t> unix_seconds(std::uint64_t v) {
  return v <= (std::uint64_t{1} << 40) ? std::optional(static_cast<std::int64_t>(v)) : std::nullopt;
}

}  // namespace

LibvirtHypervisor::LibvirtHypervisor(LibvirtOptions options)
    : options_(std::move(options)),
      loop_(LibvirtEventLoop::acquire()),
      backoff_(options_.reconnect_min_backoff) {}

LibvirtHypervisor::~LibvirtHypervisor() {
  drop_connection("shutting down");
}

Error LibvirtHypervisor::libvirt_error(const std::string& what) const {
  const char* message = virGetLastErrorMessage();
  return Error{"", 0, 0,
               what + ": " + (message ? to_valid_utf8(message) : "unknown libvirt error")};
}

void LibvirtHypervisor::queue_event(virDomainPtr dom, int type) {
  std::lock_guard lock(events_mutex_);
  events_.push_back({domain_uuid(dom), type});
  ++events_total_;
}

int LibvirtHypervisor::on_lifecycle(virConnectPtr, virDomainPtr dom, int event, int, void* self) {
  static_cast<LibvirtHypervisor*>(self)->queue_event(dom, event);
  return 0;
}

void LibvirtHypervisor::on_metadata_change(virConnectPtr, virDomainPtr dom, int, const char*,
                                           void* self) {
  static_cast<LibvirtHypervisor*>(self)->queue_event(dom, kMetadataChanged);
}

void LibvirtHypervisor::on_memory_device_size_change(virConnectPtr, virDomainPtr dom, const char*,
                                                     unsigned long long, void* self) {
  static_cast<LibvirtHypervisor*>(self)->queue_event(dom, kMemoryDeviceSizeChanged);
}

void LibvirtHypervisor::on_balloon_change(virConnectPtr, virDomainPtr dom, unsigned long long,
                                          void* self) {
  static_cast<LibvirtHypervisor*>(self)->queue_event(dom, kBalloonChanged);
}

void LibvirtHypervisor::on_close(virConnectPtr, int reason, void* self) {
  auto* h = static_cast<LibvirtHypervisor*>(self);
  h->close_reason_ = reason;
  h->closed_ = true;
}

void LibvirtHypervisor::drop_connection(const std::string& why) {
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
  virConnectUnregisterCloseCallback(conn_, &LibvirtHypervisor::on_close);
  virConnectClose(conn_);
  conn_ = nullptr;
  last_error_ = why;
  // Domains keep their facts, but anything learnt from the old connection's events is void.
  std::lock_guard lock(events_mutex_);
  events_.clear();
}

Status LibvirtHypervisor::ensure_connected(std::int64_t monotonic_ms) {
  if (conn_ != nullptr && closed_) {
    const int reason = close_reason_;
    drop_connection(reason == VIR_CONNECT_CLOSE_REASON_KEEPALIVE
                        ? "connection lost: keepalive timed out"
                    : reason == VIR_CONNECT_CLOSE_REASON_EOF ? "connection lost: libvirtd closed it"
                                                             : "connection lost");
    next_attempt_ms_ = monotonic_ms;  // try at once: libvirtd may be back already
  }
  if (conn_ != nullptr) {
    return Ok{};
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
  virConnectRegisterCloseCallback(conn_, &LibvirtHypervisor::on_close, this, nullptr);
  lifecycle_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtHypervisor::on_lifecycle), this, nullptr);
  // Per-VM settings changed on a running domain take effect at the next collection. (A driver
  // without the event leaves them to the next start or redefinition.)
  metadata_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_METADATA_CHANGE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtHypervisor::on_metadata_change), this, nullptr);
  // virtio-mem devices' plugged sizes as the guest changes them (libvirt 7.9 and later).
  memory_device_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_MEMORY_DEVICE_SIZE_CHANGE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtHypervisor::on_memory_device_size_change), this, nullptr);
  // The balloon's moves, whoever made them: its statistics are asked for again at once rather
  // than when next due. (Without the event, the balloon is followed after each command, and
  // others' changes are seen when its statistics are next due.)
  balloon_callback_ = virConnectDomainEventRegisterAny(
      conn_, nullptr, VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
      VIR_DOMAIN_EVENT_CALLBACK(&LibvirtHypervisor::on_balloon_change), this, nullptr);
  // Events may have been missed while disconnected: list everything afresh (the XML too, for
  // virtio-mem sizes, and the balloons).
  for (auto& [uuid, d] : inventory_) {
    if (d.facts && !d.facts->virtio_mem.empty()) {
      d.facts.reset();
    }
    d.balloon.reset();
  }
  last_relist_ms_ = INT64_MIN;
  for (auto& [uuid, d] : inventory_) {
    d.pid_searched = false;
  }
  return Ok{};
}

void LibvirtHypervisor::apply_events() {
  std::vector<Event> events;
  {
    std::lock_guard lock(events_mutex_);
    events.swap(events_);
  }
  for (const auto& e : events) {
    if (e.type == kBalloonChanged) {
      if (auto it = inventory_.find(e.uuid); it != inventory_.end()) {
        it->second.balloon_due_ms = INT64_MIN;
      }
      continue;
    }
    if (e.type == kMetadataChanged || e.type == kMemoryDeviceSizeChanged) {
      // New settings, or a virtio-mem device's new plugged size: the XML is read again. (The
      // plugged size is in the event, but another client, virsh update-memory-device or
      // memtidectl restore, may have changed the requested size, which has no event.)
      if (auto it = inventory_.find(e.uuid); it != inventory_.end()) {
        it->second.facts.reset();
        // The balloon's size (balloon.current) counts what the devices plug: asked again with
        // the XML, so that the two agree.
        it->second.balloon_due_ms = INT64_MIN;
      }
      continue;
    }
    switch (e.type) {
      case VIR_DOMAIN_EVENT_STOPPED:
      case VIR_DOMAIN_EVENT_UNDEFINED:
      case VIR_DOMAIN_EVENT_CRASHED:
        inventory_.erase(e.uuid);
        break;
      case VIR_DOMAIN_EVENT_STARTED:
      case VIR_DOMAIN_EVENT_DEFINED: {
        // A (re)start or redefinition may change the XML and the QEMU process.
        auto it = inventory_.find(e.uuid);
        if (it != inventory_.end()) {
          it->second.facts.reset();
          it->second.pid.reset();
          it->second.process.reset();
          it->second.pid_searched = false;
          it->second.period_requested = false;
          it->second.balloon.reset();
        }
        break;
      }
      default:
        break;
    }
  }
}

Status LibvirtHypervisor::relist() {
  virDomainPtr* domains = nullptr;
  const int n = virConnectListAllDomains(conn_, &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
  if (n < 0) {
    return libvirt_error("cannot list domains");
  }
  std::unordered_map<std::string, Domain> healed;
  for (int i = 0; i < n; ++i) {
    const auto uuid = domain_uuid(domains[i]);
    auto it = inventory_.find(uuid);
    if (it != inventory_.end()) {
      it->second.max_kib.reset();  // asked again at the next collection, in case it changed
      healed.emplace(uuid, std::move(it->second));
    } else {
      healed[uuid].name = domain_name(domains[i]);
    }
    virDomainFree(domains[i]);
  }
  free(domains);  // NOLINT: allocated by libvirt with malloc
  inventory_ = std::move(healed);
  return Ok{};
}

void LibvirtHypervisor::load_facts(virDomainPtr dom, Domain& d) {
  char* xml = virDomainGetXMLDesc(dom, 0);
  if (xml == nullptr) {
    return;  // gone meanwhile; the next listing drops it
  }
  auto facts = parse_domain_xml(xml);
  free(xml);  // NOLINT: allocated by libvirt
  if (facts) {
    d.facts = std::move(*facts);
    if (!d.facts->virtio_mem.empty()) {
      load_configured_virtio_mem(dom, d);
    }
  } else {
    DomainXmlFacts unreadable;
    unreadable.metadata_errors.push_back(facts.error().message);
    d.facts = std::move(unreadable);
  }
}

void LibvirtHypervisor::load_configured_virtio_mem(virDomainPtr dom, Domain& d) {
  auto& devices = d.facts->virtio_mem;
  // A persistent domain's configuration holds the sizes it starts with; its devices carry no
  // alias there, so they are matched by their order, which libvirt keeps.
  if (virDomainIsPersistent(dom) == 1) {
    if (char* xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_INACTIVE)) {
      auto configured = parse_domain_xml(xml);
      free(xml);  // NOLINT: allocated by libvirt
      if (configured && configured->virtio_mem.size() == devices.size()) {
        for (std::size_t i = 0; i < devices.size(); ++i) {
          devices[i].configured_bytes = configured->virtio_mem[i].configured_bytes;
        }
        return;
      }
    }
  }
  // A transient domain (or an unreadable configuration): memtide's boot record, else the sizes
  // first seen (recorded) or, by a client that records nothing, the device's full size.
  bool unrecorded = false;
  for (auto& device : devices) {
    const auto recorded = d.facts->virtio_mem_boot_bytes.find(device.alias);
    if (recorded != d.facts->virtio_mem_boot_bytes.end() && recorded->second <= device.max_bytes) {
      device.configured_bytes = recorded->second;
    } else if (options_.record_boot_sizes) {
      device.configured_bytes =
          d.first_requested.emplace(device.alias, device.requested_bytes).first->second;
      unrecorded = true;
    } else {
      device.configured_bytes = device.max_bytes;
    }
  }
  if (unrecorded && !d.boot_record_tried) {
    // Once per domain: a failure (an old libvirt, a driver without live metadata) is not
    // retried every time the XML is read. The change's event reads the XML again.
    d.boot_record_tried = true;
    const std::string record = boot_record_xml(devices);
    virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, record.c_str(), "memtideboot",
                         kBootNamespace, VIR_DOMAIN_AFFECT_LIVE);
  }
}

void LibvirtHypervisor::find_processes(const ProcessReadHints& hints) {
  bool any_missing = false;
  for (const auto& [uuid, d] : inventory_) {
    any_missing = any_missing || !d.pid_searched;
  }
  if (!any_missing) {
    return;
  }
  // A process is believed to be a guest's QEMU only if it runs as a user QEMU runs as and from
  // a root-owned QEMU binary: anyone can start a process with "-uuid <the VM's UUID>", and
  // memtided (root) would then read that process's memory as the guest's.
  std::vector<std::uint32_t> host_uids = default_qemu_uids();
  const auto socket_at = options_.uri.find("socket=");
  if (options_.uri.find("/session") != std::string::npos && socket_at != std::string::npos) {
    // A session libvirtd runs its guests as its own user: the owner of its socket.
    const std::string path =
        options_.uri.substr(socket_at + 7, options_.uri.find('&', socket_at) - socket_at - 7);
    struct stat st {};
    if (stat(path.c_str(), &st) == 0) {
      host_uids.push_back(st.st_uid);
    }
  }
  const auto candidates = find_qemu_candidates(options_.procfs);
  for (auto& [uuid, d] : inventory_) {
    if (d.pid_searched) {
      continue;
    }
    d.pid_searched = true;
    d.process_unavailable.reset();
    std::string lower = uuid;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const auto it = candidates.find(lower);
    if (it == candidates.end()) {
      continue;
    }
    auto uids = host_uids;
    if (d.facts && d.facts->qemu_uid) {
      uids.push_back(*d.facts->qemu_uid);
    }
    std::vector<const QemuCandidate*> trusted;
    std::string refused;
    for (const auto& c : it->second) {
      if (auto why = untrusted_reason(c, uids); why.empty()) {
        trusted.push_back(&c);
      } else if (refused.empty()) {
        refused = "process " + std::to_string(c.pid) + " claims this VM but " + why;
      }
    }
    if (trusted.size() == 1) {
      d.pid = trusted.front()->pid;
      // The search has just read its status and opened its statm: the first read reads
      // neither again.
      d.process.emplace(options_.procfs, *trusted.front(), options_.page_size_bytes, hints);
    } else if (trusted.size() > 1) {
      d.process_unavailable =
          std::to_string(trusted.size()) + " QEMU processes claim this VM; none is taken for it";
    } else {
      d.process_unavailable = refused;
    }
  }
}

LibvirtHypervisor::BalloonFigures LibvirtHypervisor::fill_from_domain_calls(virDomainPtr dom,
                                                                            Domain& d, VmSample& vm,
                                                                            bool state_in_record) {
  // Drivers without the bulk balloon group (libvirt's test driver) answer these per domain.
  // The maximum is asked for when the domain's XML is read (first seen, or an event since) and
  // at each full listing (libvirt.relist_interval): a running domain's maximum changes only
  // with its definition, and commands check it again anyway. The balloon's size comes from
  // the actual-balloon statistic when the guest reports it, so virDomainGetInfo, a second call
  // into the driver per domain and tick, is made only when something is not known otherwise.
  virDomainMemoryStatStruct stats[VIR_DOMAIN_MEMORY_STAT_NR];
  const int n = virDomainMemoryStats(dom, stats, VIR_DOMAIN_MEMORY_STAT_NR, 0);
  const bool actual_reported =
      std::any_of(stats, stats + std::max(n, 0), [](const virDomainMemoryStatStruct& s) {
        return s.tag == VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON;
      });
  BalloonFigures f;
  f.from_domain_calls = true;
  if (!d.facts || !d.max_kib || !actual_reported || !state_in_record) {
    virDomainInfo info{};
    if (virDomainGetInfo(dom, &info) == 0) {
      d.max_kib = info.maxMem;
      const auto current = times(info.memory, KiB);
      if (!current) {
        f.invalid_sizes = "a size in KiB overflows in bytes";
      }
      f.current_bytes = current.value_or(0);
      if (!state_in_record) {
        vm.state = to_vm_state(info.state);
      }
    } else {
      d.max_kib.reset();
    }
  }
  if (d.max_kib) {
    const auto max = times(*d.max_kib, KiB);
    if (!max) {
      f.invalid_sizes = "a size in KiB overflows in bytes";
    }
    f.max_bytes = max.value_or(0);
  }
  for (int i = 0; i < n; ++i) {
    const auto v = static_cast<std::uint64_t>(stats[i].val);
    auto& g = f.guest;
    switch (stats[i].tag) {
      case VIR_DOMAIN_MEMORY_STAT_SWAP_IN:
        g.swap_in_bytes_total = times(v, KiB);
        break;
      case VIR_DOMAIN_MEMORY_STAT_SWAP_OUT:
        g.swap_out_bytes_total = times(v, KiB);
        break;
      case VIR_DOMAIN_MEMORY_STAT_MAJOR_FAULT:
        g.major_faults_total = v;
        break;
      case VIR_DOMAIN_MEMORY_STAT_MINOR_FAULT:
        g.minor_faults_total = v;
        break;
      case VIR_DOMAIN_MEMORY_STAT_UNUSED:
        g.unused_bytes = times(v, KiB);
        break;
      case VIR_DOMAIN_MEMORY_STAT_AVAILABLE:
        g.total_bytes = times(v, KiB);
        break;
      case VIR_DOMAIN_MEMORY_STAT_ACTUAL_BALLOON:
        f.current_bytes = times(v, KiB).value_or(kMaxPlausibleBytes + 1);
        break;
      case VIR_DOMAIN_MEMORY_STAT_RSS:
        f.host_rss_bytes = times(v, KiB);
        break;
      case VIR_DOMAIN_MEMORY_STAT_USABLE:
        g.usable_bytes = times(v, KiB);
        break;
      case VIR_DOMAIN_MEMORY_STAT_LAST_UPDATE:
        g.last_update_unix_s = unix_seconds(v);
        break;
      case VIR_DOMAIN_MEMORY_STAT_DISK_CACHES:
        g.disk_caches_bytes = times(v, KiB);
        break;
      default:
        break;
    }
  }
  return f;
}

void LibvirtHypervisor::classify_stats(virDomainPtr dom, Domain& d, VmSample& vm,
                                       std::int64_t monotonic_ms) {
  const auto& facts = *d.facts;
  vm.stats_period_s = facts.stats_period_s;
  const bool reported = vm.guest.usable_bytes || vm.guest.unused_bytes || vm.guest.total_bytes;
  if (!facts.has_balloon) {
    vm.stats_status = GuestStatsStatus::no_balloon;
    return;
  }
  if (vm.guest.last_update_unix_s && vm.guest.last_update_unix_s != d.last_update) {
    d.last_update = vm.guest.last_update_unix_s;
    d.last_update_seen_ms = monotonic_ms;
  }
  if (facts.stats_period_s == 0) {
    // QEMU polls the guest only with a period set; without one, any figures are the single
    // report the guest driver sent when it loaded, and describe the guest at boot.
    vm.stats_status = GuestStatsStatus::disabled;
    if (options_.stats_period_s > 0 && !d.period_requested && vm.state == VmState::running) {
      d.period_requested = true;
      if (virDomainSetMemoryStatsPeriod(dom, static_cast<int>(options_.stats_period_s),
                                        VIR_DOMAIN_AFFECT_LIVE) == 0) {
        stats_period_set_on_.push_back(vm.uuid);
        d.facts->stats_period_s = options_.stats_period_s;
      }
    }
    return;
  }
  if (!reported) {
    vm.stats_status = GuestStatsStatus::no_driver;
    return;
  }
  // Reported at least once. Stale when QEMU's timestamp has not moved for three periods (and at
  // least 10 s, to allow for a busy guest): the figures describe the past.
  const std::int64_t stale_after_ms =
      std::max<std::int64_t>(10'000, 3'000 * static_cast<std::int64_t>(facts.stats_period_s));
  if (d.last_update && monotonic_ms - d.last_update_seen_ms > stale_after_ms) {
    vm.stats_status = GuestStatsStatus::stale;
  } else {
    vm.stats_status = GuestStatsStatus::ok;
  }
}

std::optional<LibvirtHypervisor::BalloonFigures> LibvirtHypervisor::bulk_balloon_figures(
    const void* params, int n) {
  const auto* b = static_cast<const virTypedParameter*>(params);
  const auto current = param_u64(b, n, "balloon.current");
  if (!current) {
    return std::nullopt;
  }
  BalloonFigures f;
  const auto current_bytes = times(current, KiB);
  const auto max_bytes = times(param_u64(b, n, "balloon.maximum").value_or(0), KiB);
  if (!current_bytes || !max_bytes) {
    f.invalid_sizes = "a size in KiB overflows in bytes";
  }
  f.current_bytes = current_bytes.value_or(0);
  f.max_bytes = max_bytes.value_or(0);
  auto& g = f.guest;
  g.swap_in_bytes_total = times(param_u64(b, n, "balloon.swap_in"), KiB);
  g.swap_out_bytes_total = times(param_u64(b, n, "balloon.swap_out"), KiB);
  g.major_faults_total = param_u64(b, n, "balloon.major_fault");
  g.minor_faults_total = param_u64(b, n, "balloon.minor_fault");
  g.unused_bytes = times(param_u64(b, n, "balloon.unused"), KiB);
  g.total_bytes = times(param_u64(b, n, "balloon.available"), KiB);
  g.usable_bytes = times(param_u64(b, n, "balloon.usable"), KiB);
  g.disk_caches_bytes = times(param_u64(b, n, "balloon.disk_caches"), KiB);
  if (auto t = param_u64(b, n, "balloon.last-update")) {
    g.last_update_unix_s = unix_seconds(*t);
  }
  f.host_rss_bytes = times(param_u64(b, n, "balloon.rss"), KiB);
  f.disk_read_bytes_total = disk_read_bytes(b, n);
  return f;
}

bool LibvirtHypervisor::balloon_due(const Domain& d, std::int64_t monotonic_ms) {
  return !d.balloon || monotonic_ms >= d.balloon_due_ms || monotonic_ms < d.follow_until_ms;
}

void LibvirtHypervisor::schedule_balloon(Domain& d, std::int64_t monotonic_ms) const {
  // QEMU asks the guest for its statistics once a period and answers libvirt from what it got
  // last, so asking more often than that only costs libvirtd and QEMU a query per domain. The
  // next report is expected a period after the last one was first seen (which was within one
  // collection of its arrival); one that is late is asked for at each collection until a
  // period more has passed, then once a period, which is also the pace for guests without a
  // period, or without a balloon, for changes no event reports (say a new maximum).
  const std::uint32_t guest_period_s = d.facts ? d.facts->stats_period_s : 0;
  const std::int64_t period_ms =
      1000 * static_cast<std::int64_t>(guest_period_s > 0            ? guest_period_s
                                       : options_.stats_period_s > 0 ? options_.stats_period_s
                                                                     : 5);
  // Collections come at a steady pace, give or take the tick's jitter: one that comes this
  // much early counts as on time.
  constexpr std::int64_t kEarlyMs = 250;
  const bool reporting = guest_period_s > 0 && d.facts->has_balloon && d.last_update;
  const bool late = reporting && d.last_update_seen_ms != monotonic_ms &&
                    monotonic_ms - d.last_update_seen_ms < 2 * period_ms;
  // A late report is asked for at the next collection.
  d.balloon_due_ms = late ? monotonic_ms : monotonic_ms + period_ms - kEarlyMs;
  if (d.follow_until_ms > monotonic_ms && d.balloon) {
    const std::uint64_t current = d.balloon->current_bytes;
    const std::uint64_t gap =
        current > d.requested_bytes ? current - d.requested_bytes : d.requested_bytes - current;
    if (gap < options_.page_size_bytes) {
      d.follow_until_ms = INT64_MIN;  // arrived (the guest moves it in whole pages)
    }
  }
}

VmSample LibvirtHypervisor::sample_from_record(virDomainPtr dom, std::string uuid,
                                               const void* state_params, int n_state,
                                               const void* balloon_params, int n_balloon,
                                               std::int64_t monotonic_ms) {
  const auto* params = static_cast<const virTypedParameter*>(state_params);
  VmSample vm;
  vm.uuid = std::move(uuid);
  auto& d = inventory_[vm.uuid];  // a domain that appeared since the last listing joins here
  d.seen_in = collections_;
  if (d.name.empty()) {
    d.name = domain_name(dom);
  }
  vm.name = d.name;
  const auto state = param_u64(params, n_state, "state.state");
  if (state) {
    vm.state = to_vm_state(static_cast<int>(*state));
  }
  bool asked = false;
  if (balloon_params != nullptr && bulk_balloon_supported_) {
    if (auto f = bulk_balloon_figures(balloon_params, n_balloon)) {
      f->asked_ms = monotonic_ms;
      d.balloon = std::move(*f);
      asked = true;
    } else {
      bulk_balloon_supported_ = false;  // answered per domain from now on
    }
  }
  if (!bulk_balloon_supported_ && (!state || balloon_due(d, monotonic_ms))) {
    d.balloon = fill_from_domain_calls(dom, d, vm, state.has_value());
    asked = true;
  }
  balloon_queries_total_ += asked ? 1 : 0;
  if (d.balloon) {
    vm.current_bytes = d.balloon->current_bytes;
    vm.max_bytes = d.balloon->max_bytes;
    vm.host_rss_bytes = d.balloon->host_rss_bytes;
    vm.disk_read_bytes_total = d.balloon->disk_read_bytes_total;
    vm.disk_reads_at_ms = d.balloon->asked_ms;
    vm.guest = d.balloon->guest;
    vm.invalid_sizes = d.balloon->invalid_sizes;
  }
  if (!d.facts) {
    load_facts(dom, d);
  }
  if (!vm.invalid_sizes) {
    if (auto why = implausible_sizes(vm); !why.empty()) {
      vm.invalid_sizes = std::move(why);
    }
  }
  if (d.facts) {
    vm.metadata = d.facts->metadata;
    vm.metadata_errors = d.facts->metadata_errors;
    vm.sharing_allowed = d.facts->sharing_allowed;
    vm.memory_pins = d.facts->memory_pins;
    vm.virtio_mem = d.facts->virtio_mem;
    if (d.balloon && d.balloon->from_domain_calls && vm.guest.total_bytes) {
      // The balloon's own size (the actual-balloon statistic) leaves out what the devices plug;
      // libvirt's bulk balloon.current counts it.
      for (const auto& device : vm.virtio_mem) {
        vm.current_bytes += device.plugged_bytes;
      }
    }
    if (d.facts->virtio_mem_invalid && !vm.invalid_sizes) {
      vm.invalid_sizes = d.facts->virtio_mem_invalid;
    }
    if (d.facts->has_balloon) {
      vm.balloon_autodeflate = d.facts->autodeflate;
      vm.balloon_free_page_reporting = d.facts->free_page_reporting;
    }
    classify_stats(dom, d, vm, monotonic_ms);
  }
  if (asked) {
    schedule_balloon(d, monotonic_ms);
  }
  return vm;
}

// A list of statistics records as libvirt returns it, freed with it.
struct LibvirtHypervisor::StatsRecords {
  virDomainStatsRecordPtr* list = nullptr;
  int size = 0;
  StatsRecords() = default;
  StatsRecords(const StatsRecords&) = delete;
  StatsRecords& operator=(const StatsRecords&) = delete;
  ~StatsRecords() {
    if (list != nullptr) {
      virDomainStatsRecordListFree(list);
    }
  }
};

Error LibvirtHypervisor::collection_failed(Error error) {
  if (virConnectIsAlive(conn_) != 1) {
    drop_connection(error.message);
  }
  return error;
}

Status LibvirtHypervisor::ask_due_balloons(const StatsRecords& all,
                                           const std::vector<std::string>& uuids,
                                           std::int64_t monotonic_ms, StatsRecords& due) {
  std::vector<virDomainPtr> handles;
  for (int i = 0; i < all.size; ++i) {
    const auto it = inventory_.find(uuids[static_cast<std::size_t>(i)]);
    if (it == inventory_.end() || balloon_due(it->second, monotonic_ms)) {
      handles.push_back(all.list[i]->dom);
    }
  }
  if (handles.empty()) {
    return Ok{};
  }
  handles.push_back(nullptr);  // the list's end
  due.size = virDomainListGetStats(handles.data(), kBalloonGroups, &due.list, 0);
  if (due.size < 0) {
    return libvirt_error("cannot get balloon statistics");
  }
  return Ok{};
}

Result<std::vector<VmSample>> LibvirtHypervisor::collect(std::int64_t monotonic_ms,
                                                         const ProcessReadHints& hints) {
  if (auto up = ensure_connected(monotonic_ms); !up) {
    return up.error();
  }
  apply_events();
  if (last_relist_ms_ == INT64_MIN ||
      monotonic_ms - last_relist_ms_ >= options_.relist_interval.count()) {
    if (auto listed = relist(); !listed) {
      return collection_failed(listed.error());
    }
    last_relist_ms_ = monotonic_ms;
  }

  // Every active domain's state, and its balloon statistics in the same call when every
  // domain's are due (the first collection; a driver answering them per domain is asked in
  // sample_from_record). Otherwise those due are asked for in a second call, by handle: the
  // rest keep their last figures (schedule_balloon says why that loses nothing).
  last_collect_ms_ = monotonic_ms;
  const bool balloon_in_bulk =
      bulk_balloon_supported_ &&
      std::all_of(inventory_.begin(), inventory_.end(),
                  [&](const auto& e) { return balloon_due(e.second, monotonic_ms); });
  StatsRecords all;
  all.size = virConnectGetAllDomainStats(
      conn_, VIR_DOMAIN_STATS_STATE | (balloon_in_bulk ? kBalloonGroups : 0), &all.list,
      VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE);
  if (all.size < 0) {
    return collection_failed(libvirt_error("cannot get domain statistics"));
  }
  std::vector<std::string> uuids;
  uuids.reserve(static_cast<std::size_t>(all.size));
  for (int i = 0; i < all.size; ++i) {
    uuids.push_back(domain_uuid(all.list[i]->dom));
  }
  StatsRecords due;
  std::unordered_map<std::string, const virDomainStatsRecord*> balloon_of;
  if (bulk_balloon_supported_ && !balloon_in_bulk) {
    if (auto asked = ask_due_balloons(all, uuids, monotonic_ms, due); !asked) {
      return collection_failed(asked.error());
    }
    for (int i = 0; i < due.size; ++i) {
      balloon_of.emplace(domain_uuid(due.list[i]->dom), due.list[i]);
    }
  }
  ++collections_;
  std::vector<VmSample> vms;
  vms.reserve(uuids.size());
  for (int i = 0; i < all.size; ++i) {
    const virDomainStatsRecord* r = all.list[i];
    const virDomainStatsRecord* b = balloon_in_bulk ? r : nullptr;
    auto& uuid = uuids[static_cast<std::size_t>(i)];
    if (const auto it = balloon_of.find(uuid); it != balloon_of.end()) {
      b = it->second;
    }
    vms.push_back(sample_from_record(r->dom, std::move(uuid), r->params, r->nparams,
                                     b ? b->params : nullptr, b ? b->nparams : 0, monotonic_ms));
  }
  // Keep only what libvirt reported active now; a domain that vanished mid-tick drops out here.
  std::erase_if(inventory_,
                [this](const auto& entry) { return entry.second.seen_in != collections_; });

  find_processes(hints);
  for (auto& vm : vms) {
    auto& d = inventory_.at(vm.uuid);
    vm.process_unavailable = d.process_unavailable;
    if (!d.pid) {
      d.process.reset();
      continue;
    }
    if (!d.process || d.process->pid() != *d.pid) {
      d.process.emplace(options_.procfs, *d.pid, options_.page_size_bytes);
    }
    vm.process = d.process->read(hints);
    if (!vm.process) {
      d.pid.reset();  // exited; search again next time
      d.process.reset();
      d.pid_searched = false;
    }
  }
  return sorted_by_name(std::move(vms));
}

std::vector<VmSample> LibvirtHypervisor::sorted_by_name(std::vector<VmSample> vms) {
  bool same_order = vms.size() == record_order_.size();
  for (std::size_t i = 0; same_order && i < vms.size(); ++i) {
    same_order = vms[i].uuid == record_order_[i];
  }
  if (!same_order) {
    record_order_.resize(vms.size());
    by_name_.resize(vms.size());
    for (std::size_t i = 0; i < vms.size(); ++i) {
      record_order_[i] = vms[i].uuid;
      by_name_[i] = i;
    }
    std::sort(by_name_.begin(), by_name_.end(), [&vms](std::size_t a, std::size_t b) {
      return vms[a].name < vms[b].name || (vms[a].name == vms[b].name && vms[a].uuid < vms[b].uuid);
    });
  }
  std::vector<VmSample> sorted;
  sorted.reserve(vms.size());
  for (const auto i : by_name_) {
    sorted.push_back(std::move(vms[i]));
  }
  return sorted;
}

Status LibvirtHypervisor::set_virtio_mem(virDomainPtr dom, Domain& d,
                                         const std::vector<std::uint64_t>& requested) {
  auto& devices = d.facts->virtio_mem;
  for (std::size_t i = 0; i < devices.size(); ++i) {
    auto& device = devices[i];
    if (requested[i] == device.requested_bytes) {
      continue;
    }
    // Guardrail, whatever the split computed: whole blocks, within the device.
    if (device.block_bytes == 0 || requested[i] % device.block_bytes != 0 ||
        requested[i] > device.max_bytes) {
      return Error{"", 0, 0,
                   "refusing virtio-mem size " + std::to_string(requested[i]) + " for " +
                       device.alias + ": not whole blocks within its size"};
    }
    auto xml = with_requested_size(d.facts->virtio_mem_xml[i], requested[i]);
    if (!xml) {
      return Error{"", 0, 0, device.alias + ": " + xml.error().message};
    }
    if (virDomainUpdateDeviceFlags(dom, xml->c_str(), VIR_DOMAIN_AFFECT_LIVE) != 0) {
      return libvirt_error("cannot resize virtio-mem device " + device.alias + " of " +
                           domain_name(dom));
    }
    device.requested_bytes = requested[i];
    d.facts->virtio_mem_xml[i] = std::move(*xml);
  }
  return Ok{};
}

Result<std::uint64_t> LibvirtHypervisor::set_memory_size(const std::string& uuid,
                                                         std::uint64_t target_bytes,
                                                         std::uint64_t floor_bytes) {
  if (conn_ == nullptr || closed_) {
    return Error{"", 0, 0, "not connected to libvirt"};
  }
  DomainHandle dom(virDomainLookupByUUIDString(conn_, uuid.c_str()));
  if (!dom) {
    return Error{"", 0, 0, "domain " + uuid + " is gone"};
  }
  int state = 0;
  int reason = 0;
  if (virDomainGetState(dom.get(), &state, &reason, 0) != 0) {
    return libvirt_error("cannot get state of " + domain_name(dom.get()));
  }
  if (state != VIR_DOMAIN_RUNNING && state != VIR_DOMAIN_PAUSED) {
    return Error{"", 0, 0, "domain " + domain_name(dom.get()) + " is not running"};
  }
  const unsigned long max_kib = virDomainGetMaxMemory(dom.get());
  if (max_kib == 0) {
    return libvirt_error("cannot get maximum memory of " + domain_name(dom.get()));
  }
  // Clamp in KiB, libvirt's unit: the floor rounds up so the guest never gets less than it.
  const std::uint64_t floor_kib = (floor_bytes + KiB - 1) / KiB;
  const std::uint64_t target_kib = clamp_balloon(target_bytes / KiB, floor_kib, max_kib);
  auto& d = inventory_[uuid];
  if (!d.facts) {
    load_facts(dom.get(), d);
  }
  // Whatever happens below, the balloon is followed at each collection for a while: QEMU moves
  // it in steps, and the policy must see where it is (kFollowMs: long enough for a guest to give
  // up gigabytes; the balloon change event usually tells sooner).
  constexpr std::int64_t kFollowMs = 30'000;
  d.follow_until_ms = last_collect_ms_ + kFollowMs;
  d.requested_bytes = target_kib * KiB;
  if (!d.facts || d.facts->virtio_mem.empty()) {
    if (virDomainSetMemoryFlags(dom.get(), static_cast<unsigned long>(target_kib),
                                VIR_DOMAIN_AFFECT_LIVE) != 0) {
      return libvirt_error("cannot set balloon of " + domain_name(dom.get()));
    }
    return target_kib * KiB;
  }
  if (d.facts->virtio_mem_invalid) {
    return Error{"", 0, 0, *d.facts->virtio_mem_invalid};
  }
  // The balloon's share is below its ceiling: the maximum without the devices' sizes.
  const std::uint64_t ceiling = balloon_ceiling(std::uint64_t{max_kib} * KiB, d.facts->virtio_mem);
  const auto split = split_memory_size(target_kib * KiB, ceiling, d.facts->virtio_mem);
  // What grows is changed first, what shrinks second (within the devices' range the balloon
  // moves by less than a block against them), so a failure part way leaves the guest more
  // memory, never less, than both before and after.
  std::uint64_t devices_now = 0;
  for (const auto& device : d.facts->virtio_mem) {
    devices_now += device.requested_bytes;
  }
  const bool devices_grow = split.total_bytes() - split.balloon_bytes > devices_now;
  auto set_balloon_part = [&]() -> Status {
    if (virDomainSetMemoryFlags(dom.get(), static_cast<unsigned long>(split.balloon_bytes / KiB),
                                VIR_DOMAIN_AFFECT_LIVE) != 0) {
      return libvirt_error("cannot set balloon of " + domain_name(dom.get()));
    }
    return Ok{};
  };
  auto set_devices_part = [&]() { return set_virtio_mem(dom.get(), d, split.requested_bytes); };
  for (const auto& step :
       devices_grow ? std::vector<std::function<Status()>>{set_devices_part, set_balloon_part}
                    : std::vector<std::function<Status()>>{set_balloon_part, set_devices_part}) {
    if (auto done = step(); !done) {
      return done.error();
    }
  }
  d.requested_bytes = split.total_bytes() / KiB * KiB;
  return d.requested_bytes;
}

}  // namespace memtide::collectors
