#include <fstream>
#include <iterator>
#include <map>
#include <string>

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

// A live virtio-mem device as libvirt 9 writes it (taken from a running guest's XML).
std::string virtio_mem_device(const std::string& alias, const std::string& requested_kib,
                              const std::string& current_kib) {
  return "<memory model='virtio-mem'><target><size unit='KiB'>1048576</size><node>0</node>"
         "<block unit='KiB'>2048</block><requested unit='KiB'>" +
         requested_kib + "</requested><current unit='KiB'>" + current_kib +
         "</current></target><alias name='" + alias +
         "'/><address type='pci' domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>"
         "</memory>";
}

TEST(DomainXml, VirtioMemDevicesWithTheirSizes) {
  const auto r = parse_domain_xml(
      domain("<devices><memballoon model='virtio'/><memory model='dimm'><target><size "
             "unit='KiB'>524288</size><node>0</node></target></memory>" +
             virtio_mem_device("virtiomem0", "262144", "196608") +
             "<memory model='virtio-mem'><target><size unit='GiB'>2</size><node>1</node>"
             "<block unit='MiB'>4</block><requested unit='MiB'>0</requested></target>"
             "</memory></devices>"));
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  ASSERT_EQ(r->virtio_mem.size(), 2u);  // the DIMM is not one
  const auto& d = r->virtio_mem[0];
  EXPECT_EQ(d.alias, "virtiomem0");
  EXPECT_EQ(d.node, 0u);
  EXPECT_EQ(d.block_bytes, 2u << 20);
  EXPECT_EQ(d.max_bytes, 1u << 30);
  EXPECT_EQ(d.requested_bytes, 256u << 20);
  EXPECT_EQ(d.configured_bytes, 256u << 20);
  EXPECT_EQ(d.plugged_bytes, 192u << 20);
  const auto& e = r->virtio_mem[1];  // an inactive definition: no alias, nothing plugged
  EXPECT_EQ(e.alias, "");
  EXPECT_EQ(e.node, 1u);
  EXPECT_EQ(e.block_bytes, 4u << 20);
  EXPECT_EQ(e.max_bytes, 2ULL << 30);
  EXPECT_EQ(e.plugged_bytes, 0u);
  EXPECT_FALSE(r->virtio_mem_invalid.has_value());
  ASSERT_EQ(r->virtio_mem_xml.size(), 2u);
  EXPECT_NE(r->virtio_mem_xml[0].find("<address type=\"pci\""), std::string::npos)
      << r->virtio_mem_xml[0];
}

TEST(DomainXml, VirtioMemSizesThatCannotBeUsedMakeTheVmInvalid) {
  auto invalid = [](const std::string& target) {
    const auto r = parse_domain_xml(domain("<devices><memory model='virtio-mem'><target>" + target +
                                           "</target>"
                                           "<alias name='vm0'/></memory></devices>"));
    EXPECT_TRUE(r.ok());
    return r->virtio_mem_invalid.value_or("");
  };
  const std::string block = "<block unit='KiB'>2048</block>";
  EXPECT_EQ(invalid(block + "<size unit='KiB'>4096</size><requested unit='KiB'>2048</requested>"),
            "");
  EXPECT_NE(invalid("<size unit='KiB'>4096</size><requested unit='KiB'>2048</requested>")
                .find("no valid <block>"),
            std::string::npos);
  EXPECT_NE(invalid(block + "<size unit='KiB'>4096</size><requested unit='KiB'>3072</requested>")
                .find("whole blocks"),
            std::string::npos);
  EXPECT_NE(invalid(block + "<size unit='KiB'>4096</size><requested unit='KiB'>8192</requested>")
                .find("above its size"),
            std::string::npos);
  EXPECT_NE(invalid(block + "<size unit='KiB'>4096</size><requested unit='KiB'>2048</requested>"
                            "<current unit='KiB'>6144</current>")
                .find("above its size"),
            std::string::npos);
  // Beyond any host, or a unit libvirt does not have.
  EXPECT_NE(
      invalid(block + "<size unit='TiB'>99999999</size><requested>0</requested>").find("no valid"),
      std::string::npos);
  EXPECT_NE(
      invalid(block + "<size unit='parsecs'>4</size><requested>0</requested>").find("no valid"),
      std::string::npos);
  EXPECT_NE(invalid("<block unit='KiB'>0</block><size>4096</size><requested>0</requested>")
                .find("no valid"),
            std::string::npos);
}

TEST(DomainXml, AVirtioMemUpdateSendsTheWholeElementWithTheNewRequestedSize) {
  const auto facts = parse_domain_xml(
      domain("<devices>" + virtio_mem_device("virtiomem0", "262144", "262144") + "</devices>"));
  ASSERT_TRUE(facts.ok());
  const auto xml = with_requested_size(facts->virtio_mem_xml.at(0), 128u << 20);
  ASSERT_TRUE(xml.ok()) << xml.error().to_string();
  // Read back as libvirt will: the same device, alias and address, the new requested size.
  const auto back = parse_domain_xml(domain("<devices>" + *xml + "</devices>"));
  ASSERT_TRUE(back.ok()) << *xml;
  ASSERT_EQ(back->virtio_mem.size(), 1u);
  EXPECT_EQ(back->virtio_mem[0].requested_bytes, 128u << 20);
  EXPECT_EQ(back->virtio_mem[0].alias, "virtiomem0");
  EXPECT_EQ(back->virtio_mem[0].max_bytes, 1u << 30);
  EXPECT_NE(xml->find("slot=\"0x03\""), std::string::npos) << *xml;
  EXPECT_EQ(xml->find("262144"), std::string::npos) << *xml;    // the old size is gone
  EXPECT_EQ(xml->find("<current"), std::string::npos) << *xml;  // the guest's, not ours
  // Not a virtio-mem element, or a size libvirt cannot be given in KiB: refused.
  EXPECT_FALSE(with_requested_size("<memory model='dimm'><target/></memory>", 1 << 20).ok());
  EXPECT_FALSE(with_requested_size("<memballoon model='virtio'/>", 1 << 20).ok());
  EXPECT_FALSE(with_requested_size(facts->virtio_mem_xml[0], (1 << 20) + 1).ok());
  EXPECT_FALSE(with_requested_size("not xml", 1 << 20).ok());
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

// memtided's record of a transient domain's virtio-mem boot sizes, written and read back as
// libvirt keeps it in the live XML; damaged entries are left out, never taken.
TEST(DomainXml, TheVirtioMemBootRecordRoundTrips) {
  VirtioMemDevice a;
  a.alias = "virtiomem0";
  a.configured_bytes = 512ULL << 20;
  VirtioMemDevice b;
  b.alias = "ua-mem";
  b.configured_bytes = 0;
  VirtioMemDevice odd;
  odd.alias = "bad alias='x'";
  odd.configured_bytes = 1;
  const std::string record = boot_record_xml({a, b, odd});
  EXPECT_EQ(record, "<virtio-mem requested='virtiomem0=536870912 ua-mem=0'/>");
  // libvirt writes the element with the prefix and namespace it was given.
  std::string element = record;
  element.replace(1, 10, "memtideboot:virtio-mem xmlns:memtideboot='urn:memtide:boot:1'");
  const auto r = parse_domain_xml(domain("<metadata>" + element + "</metadata><devices>" +
                                         virtio_mem_device("virtiomem0", "0", "0") + "</devices>"));
  ASSERT_TRUE(r.ok()) << r.error().to_string() << " in " << element;
  EXPECT_EQ(r->virtio_mem_boot_bytes,
            (std::map<std::string, std::uint64_t>{{"virtiomem0", 512ULL << 20}, {"ua-mem", 0}}));
  EXPECT_TRUE(r->metadata_errors.empty());
  const auto damaged = parse_domain_xml(
      domain("<metadata><b:virtio-mem xmlns:b='urn:memtide:boot:1' requested='x=1 =5 y=-1 "
             "z=99999999999999999999 w=12abc ok=7'/></metadata>"));
  ASSERT_TRUE(damaged.ok());
  EXPECT_EQ(damaged->virtio_mem_boot_bytes,
            (std::map<std::string, std::uint64_t>{{"x", 1}, {"ok", 7}}));
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

// What libvirt 9.0 gave for a running QEMU guest (virsh dumpxml; only its paths were changed):
// the operator's metadata beside another application's, a disk, a virtio-mem device, an
// autodeflating balloon with a statistics period.
TEST(DomainXml, ARealRunningGuestsDescription) {
  std::ifstream file(std::string(MEMTIDE_FIXTURES) + "/libvirt/running-guest.xml");
  const std::string xml((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  ASSERT_FALSE(xml.empty());
  const auto r = parse_domain_xml(xml);
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->has_balloon);
  EXPECT_TRUE(r->autodeflate);
  EXPECT_FALSE(r->free_page_reporting);
  EXPECT_EQ(r->stats_period_s, 5u);
  EXPECT_TRUE(r->sharing_allowed);
  EXPECT_TRUE(r->memory_pins.empty());
  EXPECT_TRUE(r->metadata_errors.empty()) << r->metadata_errors.front();
  EXPECT_EQ(r->metadata.class_name, "batch");
  EXPECT_EQ(r->metadata.floor, SizeOrRatio{384ULL << 20});
  EXPECT_EQ(r->metadata.shares, 200u);
  ASSERT_EQ(r->virtio_mem.size(), 1u);
  EXPECT_EQ(r->virtio_mem[0].alias, "virtiomem0");
  EXPECT_EQ(r->virtio_mem[0].max_bytes, 512u << 20);
  EXPECT_EQ(r->virtio_mem[0].requested_bytes, 256u << 20);
  EXPECT_EQ(r->virtio_mem[0].block_bytes, 2u << 20);
  EXPECT_FALSE(r->virtio_mem_invalid.has_value());
}

// A running guest's whole description, as libvirt gives it: the facts sit among, after and
// beside elements the reader does not build (disks, controllers, channels, another
// application's metadata), some of which nest elements named like the ones read.
TEST(DomainXml, ARunningGuestsWholeDescriptionGivesEveryFact) {
  const std::string address = "<address type='pci' domain='0x0000' bus='0x01' slot='0x00'/>";
  std::string disks;
  for (int i = 0; i < 6; ++i) {
    disks +=
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        "<source file='/var/lib/libvirt/images/d" +
        std::to_string(i) +
        ".qcow2' index='2'/><backingStore type='file' index='3'><format type='raw'/>"
        "<source file='/b.img'/><backingStore/></backingStore><target dev='vda' "
        "bus='virtio'/><alias name='virtio-disk0'/>" +
        address + "</disk>";
  }
  const auto r = parse_domain_xml(
      "<domain type='kvm' id='7'><name>web-1</name><uuid>c7a5fdbd-edaf-9455-926a-d65c16db1809"
      "</uuid><metadata><other:app xmlns:other='http://example.org/app'><other:nested>"
      "<memballoon model='none'/><seclabel model='dac'><label>+1:+1</label></seclabel>"
      "</other:nested></other:app>"
      "<m:vm xmlns:m='urn:memtide:domain:1' class='db' floor='512MiB'><ignored/></m:vm>"
      "</metadata><memory unit='KiB'>4194304</memory><currentMemory unit='KiB'>2097152"
      "</currentMemory><memoryBacking><hugepages><page size='2048' unit='KiB'/></hugepages>"
      "</memoryBacking><vcpu placement='static'>2</vcpu><os><type arch='x86_64' "
      "machine='pc-q35-7.2'>hvm</type><boot dev='hd'/></os><features><acpi/><apic/></features>"
      "<cpu mode='host-passthrough'><topology sockets='1' cores='2' threads='1'/></cpu>"
      "<devices><emulator>/usr/bin/qemu-system-x86_64</emulator>" +
      disks +
      "<controller type='pci' index='1' model='pcie-root-port'><model name='pcie-root-port'/>"
      "<target chassis='1' port='0x10'/><alias name='pci.1'/>" +
      address +
      "</controller><interface type='network'><mac address='52:54:00:aa:bb:cc'/>"
      "<source network='default'/><model type='virtio'/><memballoon model='none'/>" +
      address + "</interface><hostdev mode='subsystem' type='pci' managed='yes'><source>" +
      address +
      "</source></hostdev><channel type='unix'><target type='virtio' "
      "name='org.qemu.guest_agent.0'/></channel><graphics type='vnc' port='5900'/>" +
      virtio_mem_device("virtiomem0", "262144", "196608") +
      "<memballoon model='virtio' autodeflate='on'><stats period='5'/><alias name='balloon0'/>" +
      address +
      "</memballoon></devices><seclabel type='dynamic' model='dac' relabel='yes'>"
      "<label>+64055:+994</label><imagelabel>+64055:+994</imagelabel></seclabel>"
      "</domain>");
  ASSERT_TRUE(r.ok()) << r.error().to_string();
  EXPECT_TRUE(r->has_balloon);
  EXPECT_TRUE(r->autodeflate);
  EXPECT_EQ(r->stats_period_s, 5u);
  EXPECT_EQ(r->qemu_uid, 64055u);
  EXPECT_EQ(r->memory_pins, (std::vector<MemoryPin>{MemoryPin::hugepages, MemoryPin::hostdev}));
  EXPECT_TRUE(r->metadata_errors.empty()) << r->metadata_errors.front();
  EXPECT_EQ(r->metadata.class_name, "db");
  EXPECT_EQ(r->metadata.floor, SizeOrRatio{512ULL << 20});
  ASSERT_EQ(r->virtio_mem.size(), 1u);
  EXPECT_EQ(r->virtio_mem[0].plugged_bytes, 192u << 20);
  EXPECT_FALSE(r->virtio_mem_invalid.has_value());
  // The device's element is whole: what is given back to libvirt names the same device.
  ASSERT_EQ(r->virtio_mem_xml.size(), 1u);
  EXPECT_NE(r->virtio_mem_xml[0].find("<alias name=\"virtiomem0\"/>"), std::string::npos)
      << r->virtio_mem_xml[0];
  EXPECT_NE(r->virtio_mem_xml[0].find("slot=\"0x03\""), std::string::npos) << r->virtio_mem_xml[0];
  EXPECT_NE(r->virtio_mem_xml[0].find("<block unit=\"KiB\">2048</block>"), std::string::npos)
      << r->virtio_mem_xml[0];
  // A fault inside an element that is not built is still a fault.
  const auto broken = parse_domain_xml(
      domain("<devices><disk><source><x></source></disk><memballoon model='virtio'/></devices>"));
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.error().message.find("not well-formed"), std::string::npos)
      << broken.error().message;
  EXPECT_GT(broken.error().line, 0);
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
