#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <memtide/collectors/domain_xml.hpp>
#include <memtide/core/text.hpp>

namespace memtide::collectors {
namespace {

std::string domain(const std::string& inner) {
  return "<domain type='kvm'><name>web-1</name>" + inner + "</domain>";
}

TEST(DomainXml, BalloonStatsPeriodAndSharing) {
  const auto r = parse_domain_xml(
      domain("<memoryBacking><nosharepages/></memoryBacking>"
             "<devices><memballoon model='virtio'><stats period='5'/></memballoon></devices>"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->has_balloon);
  EXPECT_EQ(r->stats_period_s, 5u);
  EXPECT_FALSE(r->sharing_allowed);
  EXPECT_TRUE(r->metadata_errors.empty());
  EXPECT_EQ(r->metadata, VmMetadata{});
}

TEST(DomainXml, NoBalloonDevice) {
  EXPECT_FALSE(parse_domain_xml(domain("<devices/>"))->has_balloon);
  EXPECT_FALSE(
      parse_domain_xml(domain("<devices><memballoon model='none'/></devices>"))->has_balloon);
  const auto r = parse_domain_xml(domain("<devices><memballoon model='virtio'/></devices>"));
  EXPECT_TRUE(r->has_balloon);
  EXPECT_EQ(r->stats_period_s, 0u);
  EXPECT_TRUE(r->sharing_allowed);
}

TEST(DomainXml, BalloonAutodeflateAndFreePageReporting) {
  const auto both = parse_domain_xml(
      domain("<devices><memballoon model='virtio' autodeflate='on' freePageReporting='on'>"
             "<stats period='5'/></memballoon></devices>"));
  ASSERT_TRUE(both.ok()) << both.error().to_string();
  EXPECT_TRUE(both->autodeflate);
  EXPECT_TRUE(both->free_page_reporting);
  const auto off = parse_domain_xml(domain(
      "<devices><memballoon model='virtio' autodeflate='off' freePageReporting='off'/></devices>"));
  EXPECT_FALSE(off->autodeflate);
  EXPECT_FALSE(off->free_page_reporting);
  const auto plain = parse_domain_xml(domain("<devices><memballoon model='virtio'/></devices>"));
  EXPECT_FALSE(plain->autodeflate);
  EXPECT_FALSE(plain->free_page_reporting);
  // Options on a device that is not there mean nothing.
  EXPECT_FALSE(
      parse_domain_xml(domain("<devices><memballoon model='none' autodeflate='on'/></devices>"))
          ->autodeflate);
}

// Elements as libvirt writes them for each way a guest's RAM stays on the host.
TEST(DomainXml, WhatPinsGuestMemory) {
  auto pins = [](const std::string& inner) { return parse_domain_xml(domain(inner))->memory_pins; };
  using P = std::vector<MemoryPin>;
  EXPECT_EQ(pins("<devices><memballoon model='virtio'/></devices>"), P{});
  EXPECT_EQ(pins("<memoryBacking><nosharepages/><source type='memfd'/><access mode='shared'/>"
                 "</memoryBacking>"),
            P{});
  EXPECT_EQ(pins("<memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages>"
                 "</memoryBacking>"),
            P{MemoryPin::hugepages});
  EXPECT_EQ(pins("<memoryBacking><locked/><allocation mode='immediate' threads='8'/>"
                 "</memoryBacking>"),
            (P{MemoryPin::locked, MemoryPin::preallocated}));
  EXPECT_EQ(pins("<memoryBacking><allocation mode='ondemand'/></memoryBacking>"), P{});
  EXPECT_EQ(pins("<devices><hostdev mode='subsystem' type='pci' managed='yes'><source>"
                 "<address domain='0x0000' bus='0x03' slot='0x00' function='0x1'/></source>"
                 "</hostdev></devices>"),
            P{MemoryPin::hostdev});
  EXPECT_EQ(pins("<devices><hostdev mode='subsystem' type='mdev' model='vfio-pci'><source>"
                 "<address uuid='c2177883-f1bb-47f0-914d-32a22e3a8804'/></source></hostdev>"
                 "</devices>"),
            P{MemoryPin::hostdev});
  EXPECT_EQ(pins("<devices><interface type='hostdev' managed='yes'><source><address "
                 "type='pci' domain='0' bus='0x82' slot='0x10' function='0x2'/></source>"
                 "</interface><interface type='network'/></devices>"),
            P{MemoryPin::hostdev});
  // USB and SCSI host devices are emulated by QEMU and pin nothing.
  EXPECT_EQ(pins("<devices><hostdev mode='subsystem' type='usb'><source><vendor id='0x1234'/>"
                 "</source></hostdev></devices>"),
            P{});
  EXPECT_EQ(pins("<launchSecurity type='sev'><policy>0x0033</policy></launchSecurity>"),
            P{MemoryPin::launch_security});
}

TEST(DomainXml, MetadataInOurNamespace) {
  const auto r = parse_domain_xml(domain(
      "<metadata>"
      "<other:thing xmlns:other='http://example.org/x' class='ignored'/>"
      "<memtide:vm xmlns:memtide='urn:memtide:domain:1' class='web' floor='1GiB' shares='500' "
      "balloon='off' scan='on'/>"
      "</metadata>"));
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->metadata_errors.empty()) << r->metadata_errors.front();
  EXPECT_EQ(r->metadata.class_name, "web");
  EXPECT_EQ(r->metadata.floor, SizeOrRatio{1ULL << 30});
  EXPECT_EQ(r->metadata.shares, 500u);
  EXPECT_EQ(r->metadata.balloon_enabled, false);
  EXPECT_EQ(r->metadata.scan_enabled, true);
}

TEST(DomainXml, FloorAsPercentage) {
  const auto r = parse_domain_xml(
      domain("<metadata><m:vm xmlns:m='urn:memtide:domain:1' floor='25%'/></metadata>"));
  EXPECT_EQ(r->metadata.floor, SizeOrRatio{0.25});
}

TEST(DomainXml, InvalidMetadataIsReportedAttributeByAttribute) {
  const auto r = parse_domain_xml(domain(
      "<metadata><m:vm xmlns:m='urn:memtide:domain:1' floor='1GB' shares='0' balloon='maybe' "
      "flor='1GiB' class='db'/><m:extra xmlns:m='urn:memtide:domain:1'/></metadata>"));
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->metadata_errors.size(), 5u);
  const std::string all = r->metadata_errors[0] + "|" + r->metadata_errors[1] + "|" +
                          r->metadata_errors[2] + "|" + r->metadata_errors[3] + "|" +
                          r->metadata_errors[4];
  EXPECT_NE(all.find("unknown attribute 'flor'"), std::string::npos) << all;
  EXPECT_NE(all.find("floor: unknown size unit 'GB'"), std::string::npos) << all;
  EXPECT_NE(all.find("shares: expected a whole number from 1 to 1000000, got '0'"),
            std::string::npos)
      << all;
  EXPECT_NE(all.find("balloon: expected on or off, got 'maybe'"), std::string::npos) << all;
  EXPECT_NE(all.find("unknown element <extra>"), std::string::npos) << all;
  // Valid attributes still count; invalid ones are ignored.
  EXPECT_EQ(r->metadata.class_name, "db");
  EXPECT_FALSE(r->metadata.floor.has_value());
  EXPECT_FALSE(r->metadata.shares.has_value());
}

TEST(DomainXml, MalformedXmlIsAnError) {
  EXPECT_FALSE(parse_domain_xml("<domain><name>x</domain>").ok());
  EXPECT_FALSE(parse_domain_xml("").ok());
  EXPECT_FALSE(parse_domain_xml("<notdomain/>").ok());
}

TEST(DomainXml, DocumentsWithEntityDefinitionsAreRefused) {
  const auto r = parse_domain_xml(
      "<?xml version='1.0'?><!DOCTYPE domain [<!ENTITY a 'aaaaaaaaaa'>"
      "<!ENTITY b '&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;'><!ENTITY c '&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;'>]>"
      "<domain><metadata><m:vm xmlns:m='urn:memtide:domain:1' class='&c;'/></metadata></domain>");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("DOCTYPE"), std::string::npos) << r.error().message;
}

// Metadata values are operator-written and may hold any characters: error messages quote an
// excerpt cut on a character boundary (a cut inside a character once ended memtided when the
// message reached the trace's JSON writer).
TEST(DomainXml, LongNonAsciiValuesAreQuotedAsValidUtf8) {
  std::string euros;
  for (int i = 0; i < 20; ++i) {
    euros += "\xE2\x82\xAC";
  }
  const auto r = parse_domain_xml(
      domain("<metadata><memtide:vm xmlns:memtide='urn:memtide:domain:1' floor='" + euros +
             "' shares='" + euros + "' balloon='" + euros + "'/></metadata>"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->metadata_errors.size(), 3u);
  for (const auto& e : r->metadata_errors) {
    EXPECT_TRUE(is_valid_utf8(e)) << e;
    EXPECT_LT(e.size(), 200u) << e;
    EXPECT_NO_THROW((void)nlohmann::json(e).dump()) << e;
  }
}

}  // namespace
}  // namespace memtide::collectors
