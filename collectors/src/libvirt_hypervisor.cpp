#include <algorithm>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <libvirt/libvirt.h>
#include <sys/stat.h>

#include <memtide/collectors/libvirt_hypervisor.hpp>
#include <memtide/collectors/qemu_process.hpp>

#include "libvirt_domain.hpp"
#include "libvirt_stats.hpp"

namespace memtide::collectors {

namespace {

struct DomainFree {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomainHandle = std::unique_ptr<std::remove_pointer_t<virDomainPtr>, DomainFree>;

}  // namespace

struct LibvirtHypervisor::Domain {
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
  BootSizes boot;
  // Its disks' read counters as last asked (nullopt: never, or the driver has no block group),
  // when, and when they are asked again.
  std::optional<std::uint64_t> disk_read_bytes_total;
  std::int64_t disk_reads_asked_ms = 0;
  DiskReadSchedule disk_reads;
};

LibvirtHypervisor::LibvirtHypervisor(LibvirtOptions options)
    : options_(std::move(options)), connection_(options_) {}

LibvirtHypervisor::~LibvirtHypervisor() = default;

Status LibvirtHypervisor::connect(std::int64_t monotonic_ms) {
  return ensure_connected(monotonic_ms);
}

Status LibvirtHypervisor::ensure_connected(std::int64_t monotonic_ms) {
  auto opened = connection_.ensure_open(monotonic_ms);
  if (!opened) {
    return opened.error();
  }
  if (!*opened) {
    return Ok{};
  }
  // Events may have been missed while disconnected: list everything afresh (the XML too, for
  // virtio-mem sizes, and the balloons).
  for (auto& [uuid, d] : inventory_) {
    if (d.facts && !d.facts->virtio_mem.empty()) {
      d.facts.reset();
    }
    d.balloon.reset();
    d.pid_searched = false;
  }
  last_relist_ms_ = INT64_MIN;
  return Ok{};
}

void LibvirtHypervisor::apply_events() {
  using Kind = DomainEvent::Kind;
  for (const auto& e : connection_.take_events()) {
    if (e.kind == Kind::stopped) {
      inventory_.erase(e.uuid);
      continue;
    }
    const auto it = inventory_.find(e.uuid);
    if (it == inventory_.end()) {
      continue;  // a new domain joins at the collection that lists it
    }
    auto& d = it->second;
    switch (e.kind) {
      case Kind::balloon:
        d.balloon_due_ms = INT64_MIN;
        break;
      case Kind::metadata:
      case Kind::memory_device:
        // New settings, or a virtio-mem device's new plugged size: the XML is read again. (The
        // plugged size is in the event, but another client, virsh update-memory-device or
        // memtidectl restore, may have changed the requested size, which has no event.) The
        // balloon's size (balloon.current) counts what the devices plug: asked again with the
        // XML, so that the two agree.
        d.facts.reset();
        d.balloon_due_ms = INT64_MIN;
        break;
      case Kind::started:
        // A (re)start or redefinition may change the XML and the QEMU process.
        d.facts.reset();
        d.pid.reset();
        d.process.reset();
        d.pid_searched = false;
        d.period_requested = false;
        d.balloon.reset();
        d.disk_read_bytes_total.reset();
        d.disk_reads.restart();
        break;
      case Kind::stopped:
        break;
    }
  }
}

Status LibvirtHypervisor::relist() {
  virDomainPtr* domains = nullptr;
  const int n =
      virConnectListAllDomains(connection_.handle(), &domains, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
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
  if (auto facts = read_domain_facts(dom, d.boot, options_.record_boot_sizes)) {
    d.facts = std::move(*facts);
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

void LibvirtHypervisor::add_facts(virDomainPtr dom, Domain& d, VmSample& vm,
                                  std::int64_t monotonic_ms) {
  const auto& facts = *d.facts;
  vm.metadata = facts.metadata;
  vm.metadata_errors = facts.metadata_errors;
  vm.sharing_allowed = facts.sharing_allowed;
  vm.memory_pins = facts.memory_pins;
  vm.virtio_mem = facts.virtio_mem;
  if (d.balloon && d.balloon->from_domain_calls && vm.guest.total_bytes) {
    // The balloon's own size (the actual-balloon statistic) leaves out what the devices plug;
    // libvirt's bulk balloon.current counts it.
    for (const auto& device : vm.virtio_mem) {
      vm.current_bytes += device.plugged_bytes;
    }
  }
  if (facts.virtio_mem_invalid && !vm.invalid_sizes) {
    vm.invalid_sizes = facts.virtio_mem_invalid;
  }
  if (facts.has_balloon) {
    vm.balloon_autodeflate = facts.autodeflate;
    vm.balloon_free_page_reporting = facts.free_page_reporting;
  }
  classify_stats(dom, d, vm, monotonic_ms);
}

VmSample LibvirtHypervisor::sample_from_record(virDomainPtr dom, std::string uuid,
                                               const void* state_params, int n_state,
                                               const void* balloon_params, int n_balloon,
                                               std::int64_t monotonic_ms) {
  VmSample vm;
  vm.uuid = std::move(uuid);
  auto& d = inventory_[vm.uuid];  // a domain that appeared since the last listing joins here
  d.seen_in = collections_;
  if (d.name.empty()) {
    d.name = domain_name(dom);
  }
  vm.name = d.name;
  const auto state = param_u64(state_params, n_state, "state.state");
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
    d.balloon = figures_from_domain_calls(dom, d.max_kib, !d.facts, state ? nullptr : &vm.state);
    asked = true;
  }
  balloon_queries_total_ += asked ? 1 : 0;
  if (d.balloon) {
    vm.current_bytes = d.balloon->current_bytes;
    vm.max_bytes = d.balloon->max_bytes;
    vm.host_rss_bytes = d.balloon->host_rss_bytes;
    vm.guest = d.balloon->guest;
    vm.invalid_sizes = d.balloon->invalid_sizes;
  }
  vm.disk_read_bytes_total = d.disk_read_bytes_total;
  vm.disk_reads_at_ms = d.disk_reads_asked_ms;
  if (!d.facts) {
    load_facts(dom, d);
  }
  if (!vm.invalid_sizes) {
    if (auto why = implausible_sizes(vm); !why.empty()) {
      vm.invalid_sizes = std::move(why);
    }
  }
  if (d.facts) {
    add_facts(dom, d, vm, monotonic_ms);
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
  due.size = virDomainListGetStats(handles.data(), VIR_DOMAIN_STATS_BALLOON, &due.list, 0);
  if (due.size < 0) {
    return libvirt_error("cannot get balloon statistics");
  }
  return Ok{};
}

Status LibvirtHypervisor::ask_due_disk_reads(const StatsRecords& all, std::vector<VmSample>& vms,
                                             std::int64_t monotonic_ms, bool host_near_reserve) {
  std::vector<virDomainPtr> handles;
  std::unordered_map<std::string_view, VmSample*> due;
  for (std::size_t i = 0; i < vms.size(); ++i) {
    auto& d = inventory_.at(vms[i].uuid);
    if (d.balloon && d.balloon->asked_ms == monotonic_ms && !d.balloon->from_domain_calls &&
        d.disk_reads.due(monotonic_ms, host_near_reserve)) {
      handles.push_back(all.list[i]->dom);
      due.emplace(vms[i].uuid, &vms[i]);
    }
  }
  if (handles.empty()) {
    return Ok{};
  }
  handles.push_back(nullptr);  // the list's end
  StatsRecords disks;
  disks.size = virDomainListGetStats(handles.data(), VIR_DOMAIN_STATS_BLOCK, &disks.list, 0);
  if (disks.size < 0) {
    return libvirt_error("cannot get disk statistics");
  }
  disk_queries_total_ += handles.size() - 1;
  for (int i = 0; i < disks.size; ++i) {
    const auto it = due.find(domain_uuid(disks.list[i]->dom));
    if (it == due.end()) {
      continue;
    }
    VmSample& vm = *it->second;
    auto& d = inventory_.at(vm.uuid);
    d.disk_read_bytes_total = disk_read_bytes(disks.list[i]->params, disks.list[i]->nparams);
    d.disk_reads_asked_ms = monotonic_ms;
    d.disk_reads.asked(monotonic_ms, options_.disk_reads_interval);
    vm.disk_read_bytes_total = d.disk_read_bytes_total;
    vm.disk_reads_at_ms = monotonic_ms;
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
      return connection_.failed(listed.error());
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
      connection_.handle(),
      VIR_DOMAIN_STATS_STATE | (balloon_in_bulk ? VIR_DOMAIN_STATS_BALLOON : 0), &all.list,
      VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE);
  if (all.size < 0) {
    return connection_.failed(libvirt_error("cannot get domain statistics"));
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
      return connection_.failed(asked.error());
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
  if (auto asked = ask_due_disk_reads(all, vms, monotonic_ms, hints.host_near_reserve); !asked) {
    return connection_.failed(asked.error());
  }
  // Keep only what libvirt reported active now; a domain that vanished mid-tick drops out here.
  std::erase_if(inventory_,
                [this](const auto& entry) { return entry.second.seen_in != collections_; });

  find_processes(hints);
  read_processes(vms, hints);
  sort_by_name(vms);
  return vms;
}

void LibvirtHypervisor::read_processes(std::vector<VmSample>& vms, const ProcessReadHints& hints) {
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
}

void LibvirtHypervisor::sort_by_name(std::vector<VmSample>& vms) {
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
  // Position i takes the sample at by_name_[i]. Following each cycle of that permutation moves
  // every sample once within `vms`: a new vector of the samples (800 KiB at 1,000 VMs) would be
  // fresh pages to fault in on every tick.
  placed_.assign(vms.size(), false);
  for (std::size_t start = 0; start < vms.size(); ++start) {
    if (placed_[start]) {
      continue;
    }
    placed_[start] = true;
    if (by_name_[start] == start) {
      continue;
    }
    VmSample held = std::move(vms[start]);
    std::size_t at = start;
    for (std::size_t from = by_name_[at]; from != start; from = by_name_[at]) {
      vms[at] = std::move(vms[from]);
      placed_[from] = true;
      at = from;
    }
    vms[at] = std::move(held);
  }
}

Result<std::uint64_t> LibvirtHypervisor::set_memory_size(const std::string& uuid,
                                                         std::uint64_t target_bytes,
                                                         std::uint64_t floor_bytes) {
  if (!connection_.open()) {
    return Error{"", 0, 0, "not connected to libvirt"};
  }
  DomainHandle dom(virDomainLookupByUUIDString(connection_.handle(), uuid.c_str()));
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
  if (!d.balloon || d.requested_bytes < d.balloon->current_bytes) {
    d.disk_reads.shrunk(last_collect_ms_, options_.disk_reads_follow);
  }
  auto requested = resize_domain(dom.get(), max_kib, target_kib, d.facts ? &*d.facts : nullptr);
  if (requested) {
    d.requested_bytes = *requested;
  }
  return requested;
}

}  // namespace memtide::collectors
