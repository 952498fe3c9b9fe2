// LibvirtHypervisor against libvirt's own test driver: real libvirt API calls, an in-process
// hypervisor. test:///default is shared by every connection in the process, so these tests
// restore what they change.
#include <chrono>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <unistd.h>

#include <memtide/collectors/domain_xml.hpp>
#include <memtide/collectors/libvirt_hypervisor.hpp>

#include "../support/sizes.hpp"

namespace memtide::collectors {
namespace {

using memtide::test_sizes::KiB;
using memtide::test_sizes::MiB;
constexpr const char* kTestUuid = "6695eb01-f6a4-8304-79aa-97f2502e193f";  // test:///default's

LibvirtOptions options(const std::string& uri) {
  LibvirtOptions o;
  o.uri = uri;
  o.procfs = "/nonexistent";  // the test driver has no QEMU processes
  return o;
}

// A second, independent connection to inspect and change the test driver's state.
class Peer {
 public:
  explicit Peer(const char* uri) : conn_(virConnectOpen(uri)) {}
  ~Peer() { virConnectClose(conn_); }
  virConnectPtr get() const { return conn_; }
  std::uint64_t memory_kib(const char* uuid) const {
    virDomainPtr d = virDomainLookupByUUIDString(conn_, uuid);
    virDomainInfo info{};
    virDomainGetInfo(d, &info);
    virDomainFree(d);
    return info.memory;
  }

 private:
  virConnectPtr conn_;
};

TEST(LibvirtTestDriver, CollectsTheDefaultDomain) {
  LibvirtHypervisor h(options("test:///default"));
  const auto r = h.collect(0);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 1u);
  const VmSample& vm = r->front();
  // Figures as `virsh -c test:///default dominfo/dommemstat test` shows them.
  EXPECT_EQ(vm.name, "test");
  EXPECT_EQ(vm.uuid, kTestUuid);
  EXPECT_EQ(vm.state, VmState::running);
  EXPECT_EQ(vm.max_bytes, 8388608 * KiB);
  EXPECT_EQ(vm.guest.total_bytes, 2097152 * KiB);
  EXPECT_EQ(vm.guest.usable_bytes, 1048576 * KiB);
  EXPECT_EQ(vm.guest.unused_bytes, 1048576 * KiB);
  EXPECT_EQ(vm.guest.disk_caches_bytes, 262144 * KiB);
  EXPECT_EQ(vm.guest.last_update_unix_s, 627319920);
  EXPECT_EQ(vm.host_rss_bytes, 1048576 * KiB);
  EXPECT_TRUE(h.connected());
  EXPECT_EQ(h.connects_total(), 1u);
}

TEST(LibvirtTestDriver, SetsTheStatisticsPeriodAndTellsFreshFromStale) {
  auto o = options("test:///default");
  o.stats_period_s = 3;
  LibvirtHypervisor h(o);
  Peer peer("test:///default");
  virDomainPtr dom = virDomainLookupByUUIDString(peer.get(), kTestUuid);
  ASSERT_EQ(virDomainSetMemoryStatsPeriod(dom, 0, VIR_DOMAIN_AFFECT_LIVE), 0);

  // Period 0: whatever figures there are date from the guest's boot.
  auto r = h.collect(0);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front().stats_status, GuestStatsStatus::disabled);
  ASSERT_EQ(h.stats_period_set_on().size(), 1u);
  EXPECT_EQ(h.stats_period_set_on()[0], kTestUuid);
  char* xml = virDomainGetXMLDesc(dom, 0);
  EXPECT_NE(std::string(xml).find("<stats period='3'/>"), std::string::npos) << xml;
  free(xml);

  r = h.collect(1000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front().stats_status, GuestStatsStatus::ok);
  EXPECT_EQ(r->front().stats_period_s, 3u);

  // The test driver's last-update never moves: after max(3 periods, 10 s) that is stale.
  r = h.collect(12'000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->front().stats_status, GuestStatsStatus::stale);

  ASSERT_EQ(virDomainSetMemoryStatsPeriod(dom, 0, VIR_DOMAIN_AFFECT_LIVE), 0);
  virDomainFree(dom);
}

TEST(LibvirtTestDriver, SetBalloonClampsToFloorAndMaximum) {
  Peer peer("test:///default");
  const auto before = peer.memory_kib(kTestUuid);
  LibvirtHypervisor h(options("test:///default"));
  ASSERT_TRUE(h.collect(0).ok());

  auto r = h.set_memory_size(kTestUuid, 1024 * MiB, 1536 * MiB);  // below the floor
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_EQ(*r, 1536 * MiB);
  EXPECT_EQ(peer.memory_kib(kTestUuid), 1536 * 1024u);

  r = h.set_memory_size(kTestUuid, 100 * 1024 * MiB, 0);  // above the maximum (8 GiB)
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 8192 * MiB);
  EXPECT_EQ(peer.memory_kib(kTestUuid), 8192 * 1024u);

  r = h.set_memory_size(kTestUuid, 0, 16384 * MiB);  // floor above the maximum: the maximum wins
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 8192 * MiB);

  r = h.set_memory_size(kTestUuid, 3000 * MiB + 123, 0);  // odd bytes round down to whole KiB
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, 3000 * MiB);

  ASSERT_TRUE(h.set_memory_size(kTestUuid, before * KiB, 0).ok());
  EXPECT_EQ(peer.memory_kib(kTestUuid), before);
}

TEST(LibvirtTestDriver, GoneDomainIsNotActedOn) {
  LibvirtHypervisor h(options("test:///default"));
  ASSERT_TRUE(h.collect(0).ok());
  const auto r = h.set_memory_size("00000000-0000-0000-0000-000000000000", 1 << 30, 0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("gone"), std::string::npos) << r.error().message;
}

// Balloon statistics are asked for when the guest's next report is due, not at every
// collection: each ask costs libvirtd a query to QEMU. Between times the last figures stand, and
// after a command the balloon is followed at every collection until it arrives.
TEST(LibvirtTestDriver, BalloonStatisticsAreAskedWhenDueAndFollowedAfterACommand) {
  Peer peer("test:///default");
  const auto before = peer.memory_kib(kTestUuid);
  virDomainPtr dom = virDomainLookupByUUIDString(peer.get(), kTestUuid);
  ASSERT_EQ(virDomainSetMemoryStatsPeriod(dom, 5, VIR_DOMAIN_AFFECT_LIVE), 0);
  LibvirtHypervisor h(options("test:///default"));
  auto current_at = [&h](std::int64_t ms) {
    const auto r = h.collect(ms);
    EXPECT_TRUE(r.ok());
    return r.ok() && !r->empty() ? r->front().current_bytes : 0;
  };

  EXPECT_EQ(current_at(0), before * KiB);
  EXPECT_EQ(h.balloon_queries_total(), 1u);
  // The guest's next report is due 5 s after the one first seen at 0.
  for (std::int64_t ms = 1000; ms <= 4000; ms += 1000) {
    EXPECT_EQ(current_at(ms), before * KiB);
  }
  EXPECT_EQ(h.balloon_queries_total(), 1u) << "asked between the guest's reports";

  // Another client's change is seen when the statistics are next due...
  ASSERT_EQ(virDomainSetMemory(dom, 1536 * 1024), 0);
  EXPECT_EQ(current_at(4500), before * KiB);
  EXPECT_EQ(current_at(5000), 1536 * MiB);
  EXPECT_EQ(h.balloon_queries_total(), 2u);
  // ...and the report that did not come (the test driver's timestamp never moves) is asked for
  // at each collection for one period more, then once a period.
  for (std::int64_t ms = 6000; ms <= 20'000; ms += 1000) {
    current_at(ms);
  }
  EXPECT_EQ(h.balloon_queries_total(), 2u + 5u + 2u);  // 6 to 10 s, then 15 and 20 s

  // A command: the balloon is followed from the next collection on, until it arrives.
  const auto queries = h.balloon_queries_total();
  ASSERT_TRUE(h.set_memory_size(kTestUuid, 1024 * MiB, 0).ok());
  EXPECT_EQ(current_at(21'000), 1024 * MiB);
  EXPECT_EQ(h.balloon_queries_total(), queries + 1);
  current_at(22'000);
  EXPECT_EQ(h.balloon_queries_total(), queries + 1) << "followed after it arrived";

  ASSERT_EQ(virDomainSetMemory(dom, before), 0);
  ASSERT_EQ(virDomainSetMemoryStatsPeriod(dom, 0, VIR_DOMAIN_AFFECT_LIVE), 0);
  virDomainFree(dom);
}

TEST(LibvirtTestDriver, LifecycleEventsAndDomainsComingAndGoing) {
  Peer peer("test:///default");
  LibvirtHypervisor h(options("test:///default"));
  ASSERT_TRUE(h.collect(0).ok());
  const auto events_before = h.domain_events_total();

  virDomainPtr dom = virDomainCreateXML(
      peer.get(),
      "<domain type='test'><name>memtide-transient</name>"
      "<uuid>99999999-0000-0000-0000-000000000001</uuid><memory unit='MiB'>512</memory>"
      "<vcpu>1</vcpu><os><type>hvm</type></os></domain>",
      0);
  ASSERT_NE(dom, nullptr);
  auto r = h.collect(1000);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[0].name, "memtide-transient");  // sorted by name
  EXPECT_EQ((*r)[0].max_bytes, 512 * MiB);

  ASSERT_EQ(virDomainDestroy(dom), 0);  // transient: gone entirely
  virDomainFree(dom);
  // Events arrive on libvirt's event thread; allow it a moment.
  for (int i = 0; i < 100 && h.domain_events_total() < events_before + 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GE(h.domain_events_total(), events_before + 2);  // started + stopped

  r = h.collect(2000);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].name, "test");
  EXPECT_EQ(h.inventory_size(), 1u);
  const auto gone = h.set_memory_size("99999999-0000-0000-0000-000000000001", 256 * MiB, 0);
  EXPECT_FALSE(gone.ok());
}

TEST(LibvirtTestDriver, MetadataAndBalloonFactsFromDomainXml) {
  const std::string uri = std::string("test://") + MEMTIDE_FIXTURES + "/libvirt/node-metadata.xml";
  LibvirtHypervisor h(options(uri));
  const auto r = h.collect(0);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 4u);  // "stopped" is not active
  const auto& db = (*r)[0];
  const auto& no_balloon = (*r)[1];
  const auto& priv = (*r)[2];
  const auto& web = (*r)[3];
  EXPECT_EQ(web.name, "web-1");
  EXPECT_EQ(web.metadata.class_name, "web");
  EXPECT_EQ(web.metadata.floor, SizeOrRatio{1ULL << 30});
  EXPECT_EQ(web.metadata.shares, 500u);
  EXPECT_TRUE(web.metadata_errors.empty());
  EXPECT_EQ(web.stats_period_s, 5u);
  EXPECT_EQ(web.max_bytes, 4096 * MiB);
  EXPECT_EQ(web.current_bytes, 3072 * MiB);

  EXPECT_EQ(db.name, "db-1");
  EXPECT_EQ(db.metadata.balloon_enabled, false);
  EXPECT_FALSE(db.metadata.floor.has_value());
  ASSERT_EQ(db.metadata_errors.size(), 1u);
  EXPECT_NE(db.metadata_errors[0].find("floor"), std::string::npos);

  EXPECT_EQ(no_balloon.name, "no-balloon");
  EXPECT_EQ(no_balloon.stats_status, GuestStatsStatus::no_balloon);

  EXPECT_EQ(priv.name, "private");
  EXPECT_FALSE(priv.sharing_allowed);
  EXPECT_TRUE(web.sharing_allowed);
  EXPECT_EQ(priv.memory_pins,
            (std::vector<MemoryPin>{MemoryPin::hugepages, MemoryPin::locked, MemoryPin::hostdev}));
  EXPECT_TRUE(web.memory_pins.empty());

  EXPECT_EQ(web.balloon_autodeflate, true);
  EXPECT_EQ(web.balloon_free_page_reporting, true);
  EXPECT_EQ(priv.balloon_autodeflate, false);
  EXPECT_EQ(priv.balloon_free_page_reporting, false);
  EXPECT_FALSE(no_balloon.balloon_autodeflate.has_value());
}

// `virsh metadata --live` on a running domain: the new settings are read at the next collection
// (the domain XML is otherwise read only when a domain appears, starts or is redefined).
TEST(LibvirtTestDriver, MetadataChangedOnARunningDomainTakesEffect) {
  Peer peer("test:///default");  // shares the domains of every test:///default connection
  LibvirtHypervisor h(options("test:///default"));
  auto r = h.collect(0);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 1u);
  ASSERT_FALSE((*r)[0].metadata.shares.has_value());
  const auto events_before = h.domain_events_total();

  virDomainPtr dom = virDomainLookupByUUIDString(peer.get(), kTestUuid);
  ASSERT_NE(dom, nullptr);
  auto set_metadata = [dom](const char* xml) {
    return virDomainSetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, xml, xml ? "memtide" : nullptr,
                                kMetadataNamespace, VIR_DOMAIN_AFFECT_LIVE);
  };
  ASSERT_EQ(set_metadata("<vm class='batch' floor='2GiB' shares='2000'/>"), 0)
      << virGetLastErrorMessage();
  // Events arrive on libvirt's event thread; allow it a moment.
  for (int i = 0; i < 100 && h.domain_events_total() == events_before; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_GT(h.domain_events_total(), events_before);
  r = h.collect(1000);
  ASSERT_TRUE(r.ok());
  const auto& vm = (*r)[0];
  EXPECT_EQ(vm.metadata.class_name, "batch");
  EXPECT_EQ(vm.metadata.floor, SizeOrRatio{2ULL << 30});
  EXPECT_EQ(vm.metadata.shares, 2000u);
  EXPECT_TRUE(vm.metadata_errors.empty());
  EXPECT_EQ(set_metadata(nullptr), 0);  // the shared domain as the other tests expect it
  virDomainFree(dom);
}

// libvirt accepts sizes no host could hold; they are flagged as a VM-level error.
TEST(LibvirtTestDriver, ImpossibleSizesAreAVmLevelError) {
  const std::string uri =
      std::string("test://") + MEMTIDE_FIXTURES + "/libvirt/node-impossible.xml";
  LibvirtHypervisor h(options(uri));
  const auto r = h.collect(0);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 1u);
  ASSERT_TRUE(r->front().invalid_sizes.has_value());
  EXPECT_NE(r->front().invalid_sizes->find("beyond any host"), std::string::npos)
      << *r->front().invalid_sizes;
}

// A generated host with 1,000 running domains.
TEST(LibvirtTestDriver, ThousandDomains) {
  char path[] = "/tmp/memtide-node-XXXXXX.xml";
  const int fd = mkstemps(path, 4);
  ASSERT_GE(fd, 0);
  close(fd);
  {
    std::ofstream out(path);
    out << "<node>\n";
    for (int i = 0; i < 1000; ++i) {
      char uuid[40];
      std::snprintf(uuid, sizeof uuid, "00000000-0000-0000-0000-%012d", i);
      out << "<domain type='test'><name>vm-" << 1000 + i << "</name><uuid>" << uuid
          << "</uuid><memory unit='MiB'>" << 512 + i << "</memory><vcpu>1</vcpu>"
          << "<os><type>hvm</type></os><devices><memballoon model='virtio'/></devices>"
          << "</domain>\n";
    }
    out << "</node>\n";
  }
  LibvirtHypervisor h(options(std::string("test://") + path));
  const auto r = h.collect(0);
  std::remove(path);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ((*r)[i].name, "vm-" + std::to_string(1000 + i));
    EXPECT_EQ((*r)[i].max_bytes, static_cast<std::uint64_t>(512 + i) * MiB);
  }
  // Second tick: inventory and XML facts are cached, the answer is the same.
  const auto again = h.collect(10'000);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->size(), 1000u);
}

// The samples come sorted by name whatever order libvirt lists the domains in, each with its own
// figures, tick after tick and as domains stop: the sort moves samples in place along the
// cycles of a permutation, which a wrong step would leave out of order or mixed up. Transient
// domains on test:///default (shared with the peer connection), all destroyed at the end.
TEST(LibvirtTestDriver, SamplesSortedByNameInPlaceAsDomainsGo) {
  constexpr int kDomains = 60;
  const auto label = [](int i) { return (i * 37 + 11) % kDomains; };  // a scrambled bijection
  const auto name = [&](int i) { return "memtide-sort-" + std::to_string(100 + label(i)); };
  Peer peer("test:///default");
  struct Destroy {
    Peer& peer;
    std::vector<virDomainPtr> doms;
    ~Destroy() {
      for (auto* d : doms) {
        virDomainDestroy(d);
        virDomainFree(d);
      }
    }
  } made{peer, {}};
  for (int i = 0; i < kDomains; ++i) {
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "88888888-0000-0000-0000-%012d", i);
    const std::string xml = "<domain type='test'><name>" + name(i) + "</name><uuid>" + uuid +
                            "</uuid><memory unit='MiB'>" + std::to_string(512 + label(i)) +
                            "</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>";
    virDomainPtr dom = virDomainCreateXML(peer.get(), xml.c_str(), 0);
    ASSERT_NE(dom, nullptr) << name(i);
    made.doms.push_back(dom);
  }
  LibvirtHypervisor h(options("test:///default"));
  // Every sample of ours in name order, with its own size and UUID; the default domain "test"
  // sorts after them.
  const auto check = [&](const std::vector<VmSample>& vms, std::size_t ours) {
    ASSERT_EQ(vms.size(), ours + 1);
    EXPECT_EQ(vms.back().name, "test");
    for (std::size_t i = 0; i < ours; ++i) {
      const int n = std::stoi(vms[i].name.substr(13)) - 100;
      EXPECT_EQ(vms[i].max_bytes, static_cast<std::uint64_t>(512 + n) * MiB) << vms[i].name;
      EXPECT_EQ(label(std::stoi(vms[i].uuid.substr(24))), n)
          << vms[i].name << " has another domain's UUID";
      if (i > 0) {
        EXPECT_LT(vms[i - 1].name, vms[i].name);
      }
    }
  };
  for (int tick = 0; tick < 3; ++tick) {  // the same order again: the kept permutation
    const auto r = h.collect(tick * 1000);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    check(*r, kDomains);
  }
  std::size_t left = kDomains;
  for (const std::size_t i : {0, 5, 37, 59}) {
    ASSERT_EQ(virDomainDestroy(made.doms[i]), 0);
    --left;
    const auto r = h.collect(10'000 + static_cast<std::int64_t>(kDomains - left) * 1000);
    ASSERT_TRUE(r.ok()) << r.error().to_string();
    check(*r, left);
  }
}

TEST(LibvirtTestDriver, UnreachableUriBacksOff) {
  auto o = options("qemu+unix:///system?socket=/nonexistent/libvirt-sock");
  o.reconnect_min_backoff = std::chrono::milliseconds(1000);
  o.reconnect_max_backoff = std::chrono::milliseconds(4000);
  LibvirtHypervisor h(o);
  auto r = h.collect(0);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("cannot connect"), std::string::npos) << r.error().message;
  r = h.collect(500);  // within the 1 s backoff: no new attempt
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("next connection attempt in 1s"), std::string::npos)
      << r.error().message;
  r = h.collect(1000);  // attempt 2 fails, backoff doubles to 2 s
  r = h.collect(2500);
  EXPECT_NE(r.error().message.find("next connection attempt in 1s"), std::string::npos)
      << r.error().message;
  r = h.collect(3000);  // attempt 3, backoff 4 s (the cap)
  r = h.collect(7000);  // attempt 4, backoff stays at the 4 s cap
  r = h.collect(10'500);
  EXPECT_NE(r.error().message.find("next connection attempt in 1s"), std::string::npos)
      << r.error().message;
  EXPECT_EQ(h.connects_total(), 0u);
}

}  // namespace
}  // namespace memtide::collectors
