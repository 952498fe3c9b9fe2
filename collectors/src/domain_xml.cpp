#include <charconv>
#include <cstring>
#include <memory>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include <memtide/collectors/domain_xml.hpp>
#include <memtide/config/units.hpp>
#include <memtide/core/text.hpp>

namespace memtide::collectors {

namespace {

struct DocFree {
  void operator()(xmlDoc* d) const { xmlFreeDoc(d); }
};

bool named(const xmlNode* n, const char* name) {
  return n->type == XML_ELEMENT_NODE &&
         std::strcmp(reinterpret_cast<const char*>(n->name), name) == 0;
}

const xmlNode* child(const xmlNode* parent, const char* name) {
  for (const xmlNode* c = parent ? parent->children : nullptr; c != nullptr; c = c->next) {
    if (named(c, name)) {
      return c;
    }
  }
  return nullptr;
}

std::optional<std::string> attribute(const xmlNode* node, const char* name) {
  xmlChar* value = xmlGetNoNsProp(node, reinterpret_cast<const xmlChar*>(name));
  if (value == nullptr) {
    return std::nullopt;
  }
  std::string out(reinterpret_cast<const char*>(value));
  xmlFree(value);
  return out;
}

std::optional<std::uint32_t> to_u32(std::string_view text) {
  std::uint32_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end) {
    return std::nullopt;
  }
  return value;
}

std::optional<bool> on_off(const std::string& v) {
  if (v == "on" || v == "true" || v == "yes") {
    return true;
  }
  if (v == "off" || v == "false" || v == "no") {
    return false;
  }
  return std::nullopt;
}

// The uid of a DAC label "+UID:+GID" (libvirt's numeric form) or "UID:GID".
std::optional<std::uint32_t> dac_uid(const xmlNode* label) {
  if (label == nullptr) {
    return std::nullopt;
  }
  xmlChar* content = xmlNodeGetContent(label);
  if (content == nullptr) {
    return std::nullopt;
  }
  std::string text(reinterpret_cast<const char*>(content));
  xmlFree(content);
  std::string_view uid = std::string_view(text).substr(0, text.find(':'));
  if (!uid.empty() && uid.front() == '+') {
    uid.remove_prefix(1);
  }
  return to_u32(uid);
}

void read_metadata(const xmlNode* vm, DomainXmlFacts& facts) {
  static const char* const kKnown[] = {"class", "floor", "shares", "balloon", "scan"};
  auto& md = facts.metadata;
  auto& errors = facts.metadata_errors;
  for (const xmlAttr* a = vm->properties; a != nullptr; a = a->next) {
    const std::string name(reinterpret_cast<const char*>(a->name));
    bool known = false;
    for (const char* k : kKnown) {
      known = known || name == k;
    }
    if (!known) {
      errors.push_back("unknown attribute '" + shorten_utf8(name, 40) +
                       "' (known: class, floor, shares, balloon, scan)");
    }
  }
  if (auto v = attribute(vm, "class")) {
    if (v->empty()) {
      errors.push_back("class: must not be empty");
    } else {
      md.class_name = *v;
    }
  }
  if (auto v = attribute(vm, "floor")) {
    auto floor = config::parse_size_or_percent(*v);
    if (!floor) {
      errors.push_back("floor: " + floor.error().message);
    } else {
      md.floor = *floor;
    }
  }
  if (auto v = attribute(vm, "shares")) {
    const auto shares = to_u32(*v);
    if (!shares || *shares < 1 || *shares > 1'000'000) {
      errors.push_back("shares: expected a whole number from 1 to 1000000, got '" +
                       shorten_utf8(*v, 40) + "'");
    } else {
      md.shares = *shares;
    }
  }
  const std::pair<const char*, std::optional<bool>*> switches[] = {{"balloon", &md.balloon_enabled},
                                                                   {"scan", &md.scan_enabled}};
  for (const auto& [name, dest] : switches) {
    if (auto v = attribute(vm, name)) {
      if (auto b = on_off(*v)) {
        *dest = *b;
      } else {
        errors.push_back(std::string(name) + ": expected on or off, got '" + shorten_utf8(*v, 40) +
                         "'");
      }
    }
  }
}

// What keeps all of the guest's RAM on the host whatever its balloon (see MemoryPin).
std::vector<MemoryPin> memory_pins(const xmlNode* root) {
  const xmlNode* backing = child(root, "memoryBacking");
  const xmlNode* allocation = child(backing, "allocation");
  bool passthrough = false;
  const xmlNode* devices = child(root, "devices");
  for (const xmlNode* d = devices ? devices->children : nullptr; d != nullptr; d = d->next) {
    // VFIO PCI functions and mediated devices pin guest RAM for DMA; USB and SCSI host devices
    // go through QEMU's own emulation and pin nothing.
    const std::string type = attribute(d, "type").value_or("");
    passthrough = passthrough || (named(d, "hostdev") && (type == "pci" || type == "mdev")) ||
                  (named(d, "interface") && type == "hostdev");
  }
  std::vector<MemoryPin> pins;
  if (child(backing, "hugepages") != nullptr) {
    pins.push_back(MemoryPin::hugepages);
  }
  if (child(backing, "locked") != nullptr) {
    pins.push_back(MemoryPin::locked);
  }
  if (passthrough) {
    pins.push_back(MemoryPin::hostdev);
  }
  if (allocation != nullptr && attribute(allocation, "mode").value_or("") == "immediate") {
    pins.push_back(MemoryPin::preallocated);
  }
  if (child(root, "launchSecurity") != nullptr) {
    pins.push_back(MemoryPin::launch_security);
  }
  return pins;
}

}  // namespace

Result<DomainXmlFacts> parse_domain_xml(std::string_view xml) {
  // No network access, no entity substitution, no DTD loading: the XML comes from libvirt but is
  // partly operator-written (metadata).
  std::unique_ptr<xmlDoc, DocFree> doc(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), "domain.xml", nullptr,
                    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING));
  if (!doc) {
    const xmlError* e = xmlGetLastError();
    return Error{"", e ? e->line : 0, 0,
                 std::string("domain XML is not well-formed") +
                     (e && e->message ? std::string(": ") + e->message : "")};
  }
  // libvirt never emits a DTD; one here could only define entities to expand (a "billion
  // laughs" document), so it is refused outright.
  if (doc->intSubset != nullptr) {
    return Error{"", 0, 0, "domain XML with a DOCTYPE is refused"};
  }
  const xmlNode* root = xmlDocGetRootElement(doc.get());
  if (root == nullptr || !named(root, "domain")) {
    return Error{"", 0, 0, "domain XML has no <domain> root element"};
  }
  DomainXmlFacts facts;
  const xmlNode* balloon = child(child(root, "devices"), "memballoon");
  facts.has_balloon = balloon != nullptr && attribute(balloon, "model").value_or("") != "none";
  facts.autodeflate = facts.has_balloon && attribute(balloon, "autodeflate").value_or("") == "on";
  facts.free_page_reporting =
      facts.has_balloon && attribute(balloon, "freePageReporting").value_or("") == "on";
  if (const xmlNode* stats = child(balloon, "stats")) {
    if (auto period = attribute(stats, "period")) {
      facts.stats_period_s = to_u32(*period).value_or(0);
    }
  }
  facts.sharing_allowed = child(child(root, "memoryBacking"), "nosharepages") == nullptr;
  facts.memory_pins = memory_pins(root);
  for (const xmlNode* c = root->children; c != nullptr; c = c->next) {
    if (named(c, "seclabel") && attribute(c, "model").value_or("") == "dac") {
      facts.qemu_uid = dac_uid(child(c, "label"));
    }
  }
  const xmlNode* metadata = child(root, "metadata");
  int found = 0;
  for (const xmlNode* c = metadata ? metadata->children : nullptr; c != nullptr; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || c->ns == nullptr || c->ns->href == nullptr ||
        std::strcmp(reinterpret_cast<const char*>(c->ns->href), kMetadataNamespace) != 0) {
      continue;
    }
    if (!named(c, "vm")) {
      facts.metadata_errors.push_back(std::string("unknown element <") +
                                      reinterpret_cast<const char*>(c->name) +
                                      "> in memtide's namespace (expected <vm>)");
      continue;
    }
    if (++found > 1) {
      facts.metadata_errors.push_back("more than one <vm> element; the first one counts");
      continue;
    }
    read_metadata(c, facts);
  }
  return facts;
}

}  // namespace memtide::collectors
