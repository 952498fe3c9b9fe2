#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstring>
#include <memory>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
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

// An element's text content; unset for no element.
std::optional<std::string> text_of(const xmlNode* node) {
  if (node == nullptr) {
    return std::nullopt;
  }
  xmlChar* content = xmlNodeGetContent(node);
  if (content == nullptr) {
    return std::nullopt;
  }
  std::string out(reinterpret_cast<const char*>(content));
  xmlFree(content);
  return out;
}

// The uid of a DAC label "+UID:+GID" (libvirt's numeric form) or "UID:GID".
std::optional<std::uint32_t> dac_uid(const xmlNode* label) {
  const auto text = text_of(label);
  if (!text) {
    return std::nullopt;
  }
  std::string_view uid = std::string_view(*text).substr(0, text->find(':'));
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

// A libvirt scaled integer (<size unit='KiB'>1048576</size>) in bytes: libvirt's units, KiB
// when none is given. Unset when absent, malformed or beyond any host.
std::optional<std::uint64_t> scaled_bytes(const xmlNode* node) {
  const auto text = text_of(node);
  if (!text) {
    return std::nullopt;
  }
  std::uint64_t value = 0;
  const char* end = text->data() + text->size();
  auto [ptr, ec] = std::from_chars(text->data(), end, value);
  if (text->empty() || ec != std::errc{} || ptr != end) {
    return std::nullopt;
  }
  static const std::pair<const char*, std::uint64_t> kUnits[] = {
      {"b", 1},           {"bytes", 1},       {"KB", 1000},        {"k", 1024},
      {"KiB", 1024},      {"MB", 1000000},    {"M", 1 << 20},      {"MiB", 1 << 20},
      {"GB", 1000000000}, {"G", 1ULL << 30},  {"GiB", 1ULL << 30}, {"TB", 1000000000000},
      {"T", 1ULL << 40},  {"TiB", 1ULL << 40}};
  const std::string unit = attribute(node, "unit").value_or("KiB");
  for (const auto& [name, factor] : kUnits) {
    std::uint64_t bytes = 0;
    if (unit == name) {
      return __builtin_mul_overflow(value, factor, &bytes) || bytes > kMaxPlausibleBytes
                 ? std::nullopt
                 : std::optional(bytes);
    }
  }
  return std::nullopt;
}

std::string element_xml(xmlDoc* doc, xmlNode* node) {
  std::unique_ptr<xmlBuffer, decltype(&xmlBufferFree)> buffer(xmlBufferCreate(), &xmlBufferFree);
  if (!buffer || xmlNodeDump(buffer.get(), doc, node, 0, 0) < 0) {
    return "";
  }
  return std::string(reinterpret_cast<const char*>(xmlBufferContent(buffer.get())),
                     static_cast<std::size_t>(xmlBufferLength(buffer.get())));
}

// One <memory model='virtio-mem'> element; "" or why its sizes cannot be used.
std::string read_virtio_mem(const xmlNode* memory, VirtioMemDevice& d) {
  const xmlNode* target = child(memory, "target");
  d.alias = shorten_utf8(attribute(child(memory, "alias"), "name").value_or(""), 64);
  if (auto node = text_of(child(target, "node"))) {
    d.node = to_u32(*node);
  }
  const auto block = scaled_bytes(child(target, "block"));
  const auto size = scaled_bytes(child(target, "size"));
  const auto requested = scaled_bytes(child(target, "requested"));
  const std::string name = "virtio-mem device '" + (d.alias.empty() ? "?" : d.alias) + "': ";
  if (!block || *block == 0 || !size || !requested) {
    return name + "no valid <block>, <size> and <requested>";
  }
  d.block_bytes = *block;
  d.max_bytes = *size;
  d.requested_bytes = d.configured_bytes = *requested;
  // <current> is in the live XML only; a domain that is not running has plugged nothing.
  d.plugged_bytes = scaled_bytes(child(target, "current")).value_or(0);
  if (d.max_bytes % d.block_bytes != 0 || d.requested_bytes % d.block_bytes != 0) {
    return name + "size and requested size must be whole blocks";
  }
  if (d.requested_bytes > d.max_bytes || d.plugged_bytes > d.max_bytes) {
    return name + "requested or plugged size above its size";
  }
  return "";
}

void read_virtio_mem_devices(xmlDoc* doc, const xmlNode* root, DomainXmlFacts& facts) {
  const xmlNode* devices = child(root, "devices");
  for (const xmlNode* c = devices ? devices->children : nullptr; c != nullptr; c = c->next) {
    if (!named(c, "memory") || attribute(c, "model").value_or("") != "virtio-mem") {
      continue;
    }
    if (facts.virtio_mem.size() == kMaxVirtioMemDevices) {
      facts.virtio_mem_invalid =
          "more than " + std::to_string(kMaxVirtioMemDevices) + " virtio-mem devices";
      return;
    }
    VirtioMemDevice d;
    if (auto why = read_virtio_mem(c, d); !why.empty() && !facts.virtio_mem_invalid) {
      facts.virtio_mem_invalid = std::move(why);
    }
    facts.virtio_mem.push_back(std::move(d));
    facts.virtio_mem_xml.push_back(element_xml(doc, const_cast<xmlNode*>(c)));
  }
}

// No network access, no entity substitution, no DTD loading: the XML comes from libvirt but is
// partly operator-written (metadata).
constexpr int kSafeParseOptions = XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING;

std::unique_ptr<xmlDoc, DocFree> read_xml(std::string_view xml, const char* name) {
  return std::unique_ptr<xmlDoc, DocFree>(
      xmlReadMemory(xml.data(), static_cast<int>(xml.size()), name, nullptr, kSafeParseOptions));
}

// The domain XML as a tree of only the elements the facts are read from: the root, its
// <devices>' balloon, memory devices and passthrough candidates (<hostdev>, <interface>: their
// element alone), <memoryBacking>, <launchSecurity> (the element alone), <seclabel> and the
// elements of memtide's namespace in <metadata> (the element alone). Everything else (disks,
// controllers, channels, graphics, other applications' metadata: most of a running guest's
// XML) is parsed for well-formedness but never built, which halves the parse of a real guest's
// description (BM_ParseDomainXml: 96 µs to 44 µs for a running guest's 3.3 KB). A kept element's
// subtree is complete where the facts need it (the balloon, the memory devices, whose XML is
// given back to libvirt, <memoryBacking> and <seclabel>).
class PrunedDomainReader {
 public:
  // The tree, or null when the text is not well-formed XML (`error` then says why).
  static std::unique_ptr<xmlDoc, DocFree> read(std::string_view xml, Error& error) {
    if (xml.size() > static_cast<std::size_t>(INT32_MAX)) {
      error = Error{"", 0, 0, "domain XML larger than 2 GiB"};
      return nullptr;
    }
    std::unique_ptr<xmlParserCtxt, decltype(&xmlFreeParserCtxt)> ctxt(
        xmlCreateMemoryParserCtxt(xml.data(), static_cast<int>(xml.size())), &xmlFreeParserCtxt);
    if (!ctxt || ctxt->sax == nullptr) {
      error = Error{"", 0, 0, "domain XML: cannot create a parser"};
      return nullptr;
    }
    xmlCtxtUseOptions(ctxt.get(), kSafeParseOptions | XML_PARSE_COMPACT);
    PrunedDomainReader state;
    ctxt->_private = &state;
    xmlSAXHandler& sax = *ctxt->sax;
    sax.startElementNs = &start_element;
    sax.endElementNs = &end_element;
    sax.characters = &characters;
    sax.ignorableWhitespace = &characters;
    sax.cdataBlock = &cdata;
    sax.reference = &reference;
    sax.comment = &comment;
    sax.processingInstruction = &processing_instruction;
    xmlParseDocument(ctxt.get());
    std::unique_ptr<xmlDoc, DocFree> doc(ctxt->myDoc);
    ctxt->myDoc = nullptr;
    if (!ctxt->wellFormed || !doc) {
      const xmlError& e = ctxt->lastError;
      error = Error{"", e.line, 0,
                    std::string("domain XML is not well-formed") +
                        (e.message != nullptr ? std::string(": ") + e.message : "")};
      return nullptr;
    }
    return doc;
  }

 private:
  static PrunedDomainReader& of(void* ctx) {
    return *static_cast<PrunedDomainReader*>(static_cast<xmlParserCtxt*>(ctx)->_private);
  }
  static bool is(const xmlChar* name, const char* expected) {
    return std::strcmp(reinterpret_cast<const char*>(name), expected) == 0;
  }

  // Whether an element at `depth` (the root is 1) under the built `parent` is built.
  bool keep(int depth, const xmlNode* parent, const xmlChar* name, const xmlChar* uri) {
    switch (depth) {
      case 1:
        return true;
      case 2:
        return is(name, "devices") || is(name, "memoryBacking") || is(name, "seclabel") ||
               is(name, "metadata") || is(name, "launchSecurity");
      case 3:
        if (is(parent->name, "devices")) {
          whole_subtree_ = is(name, "memballoon") || is(name, "memory");
          return whole_subtree_ || is(name, "hostdev") || is(name, "interface");
        }
        if (is(parent->name, "metadata")) {
          whole_subtree_ = false;
          return uri != nullptr && (is(uri, kMetadataNamespace) || is(uri, kBootNamespace));
        }
        whole_subtree_ = true;  // <memoryBacking>'s and <seclabel>'s children
        return !is(parent->name, "launchSecurity");
      default:
        return whole_subtree_;
    }
  }

  static void start_element(void* ctx, const xmlChar* name, const xmlChar* prefix,
                            const xmlChar* uri, int nb_namespaces, const xmlChar** namespaces,
                            int nb_attributes, int nb_defaulted, const xmlChar** attributes) {
    auto& self = of(ctx);
    if (self.skipped_ > 0) {
      ++self.skipped_;
      return;
    }
    const xmlNode* parent = static_cast<xmlParserCtxt*>(ctx)->node;
    if (!self.keep(self.depth_ + 1, parent, name, uri)) {
      self.skipped_ = 1;
      return;
    }
    ++self.depth_;
    xmlSAX2StartElementNs(ctx, name, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                          nb_defaulted, attributes);
  }
  static void end_element(void* ctx, const xmlChar* name, const xmlChar* prefix,
                          const xmlChar* uri) {
    auto& self = of(ctx);
    if (self.skipped_ > 0) {
      --self.skipped_;
      return;
    }
    --self.depth_;
    xmlSAX2EndElementNs(ctx, name, prefix, uri);
  }
  static void characters(void* ctx, const xmlChar* text, int length) {
    if (of(ctx).skipped_ == 0) {
      xmlSAX2Characters(ctx, text, length);
    }
  }
  static void cdata(void* ctx, const xmlChar* text, int length) {
    if (of(ctx).skipped_ == 0) {
      xmlSAX2CDataBlock(ctx, text, length);
    }
  }
  static void reference(void* ctx, const xmlChar* name) {
    if (of(ctx).skipped_ == 0) {
      xmlSAX2Reference(ctx, name);
    }
  }
  static void comment(void* ctx, const xmlChar* text) {
    if (of(ctx).skipped_ == 0) {
      xmlSAX2Comment(ctx, text);
    }
  }
  static void processing_instruction(void* ctx, const xmlChar* target, const xmlChar* data) {
    if (of(ctx).skipped_ == 0) {
      xmlSAX2ProcessingInstruction(ctx, target, data);
    }
  }

  int depth_ = 0;               // depth of the innermost built element (the root is 1)
  int skipped_ = 0;             // >0: inside an element not built, this many levels deep
  bool whole_subtree_ = false;  // whether the current depth-3 element's descendants are built
};

// An alias the boot record can carry: libvirt's own ("virtiomem0") and user aliases ("ua-x").
bool plain_alias(std::string_view alias) {
  return !alias.empty() && alias.size() <= 64 &&
         std::all_of(alias.begin(), alias.end(), [](char ch) {
           return std::isalnum(static_cast<unsigned char>(ch)) != 0 || ch == '_' || ch == '-';
         });
}

// The boot record's "ALIAS=BYTES ..." into facts.virtio_mem_boot_bytes; entries that are not
// so (or beyond any device, or past kMaxVirtioMemDevices) are left out.
void read_boot_record(std::string_view text, DomainXmlFacts& facts) {
  std::size_t at = 0;
  while (at < text.size() && facts.virtio_mem_boot_bytes.size() < kMaxVirtioMemDevices) {
    const std::size_t end = std::min(text.find(' ', at), text.size());
    const std::string_view entry = text.substr(at, end - at);
    at = end + 1;
    const auto eq = entry.find('=');
    if (eq == std::string_view::npos || !plain_alias(entry.substr(0, eq))) {
      continue;
    }
    const std::string_view digits = entry.substr(eq + 1);
    std::uint64_t bytes = 0;
    const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bytes);
    if (ec == std::errc() && ptr == digits.data() + digits.size() && !digits.empty() &&
        bytes <= kMaxPlausibleBytes) {
      facts.virtio_mem_boot_bytes.emplace(std::string(entry.substr(0, eq)), bytes);
    }
  }
}

}  // namespace

Result<std::string> with_requested_size(std::string_view device_xml,
                                        std::uint64_t requested_bytes) {
  if (requested_bytes % 1024 != 0) {
    return Error{"", 0, 0, "a requested size must be a whole number of KiB"};
  }
  auto doc = read_xml(device_xml, "device.xml");
  xmlNode* root = doc ? xmlDocGetRootElement(doc.get()) : nullptr;
  if (root == nullptr || doc->intSubset != nullptr || !named(root, "memory") ||
      attribute(root, "model").value_or("") != "virtio-mem") {
    return Error{"", 0, 0, "not a virtio-mem device element"};
  }
  xmlNode* target = const_cast<xmlNode*>(child(root, "target"));
  if (target == nullptr) {
    return Error{"", 0, 0, "virtio-mem device element without <target>"};
  }
  xmlNode* requested = const_cast<xmlNode*>(child(target, "requested"));
  if (requested == nullptr) {
    requested =
        xmlNewChild(target, nullptr, reinterpret_cast<const xmlChar*>("requested"), nullptr);
  }
  // <current> is the guest's figure, not the host's to set: left out, as virsh leaves it.
  if (xmlNode* current = const_cast<xmlNode*>(child(target, "current"))) {
    xmlUnlinkNode(current);
    xmlFreeNode(current);
  }
  const std::string kib = std::to_string(requested_bytes / 1024);
  xmlNodeSetContent(requested, reinterpret_cast<const xmlChar*>(kib.c_str()));
  xmlSetProp(requested, reinterpret_cast<const xmlChar*>("unit"),
             reinterpret_cast<const xmlChar*>("KiB"));
  return element_xml(doc.get(), root);
}

std::string boot_record_xml(const std::vector<VirtioMemDevice>& devices) {
  std::string sizes;
  for (const auto& d : devices) {
    if (plain_alias(d.alias)) {
      sizes += (sizes.empty() ? "" : " ") + d.alias + "=" + std::to_string(d.configured_bytes);
    }
  }
  return "<virtio-mem requested='" + sizes + "'/>";
}

Result<DomainXmlFacts> parse_domain_xml(std::string_view xml) {
  Error error;
  auto doc = PrunedDomainReader::read(xml, error);
  if (!doc) {
    return error;
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
  read_virtio_mem_devices(doc.get(), root, facts);
  for (const xmlNode* c = root->children; c != nullptr; c = c->next) {
    if (named(c, "seclabel") && attribute(c, "model").value_or("") == "dac") {
      facts.qemu_uid = dac_uid(child(c, "label"));
    }
  }
  const xmlNode* metadata = child(root, "metadata");
  int found = 0;
  for (const xmlNode* c = metadata ? metadata->children : nullptr; c != nullptr; c = c->next) {
    if (c->type != XML_ELEMENT_NODE || c->ns == nullptr || c->ns->href == nullptr) {
      continue;
    }
    if (std::strcmp(reinterpret_cast<const char*>(c->ns->href), kBootNamespace) == 0) {
      if (named(c, "virtio-mem")) {
        read_boot_record(attribute(c, "requested").value_or(""), facts);
      }
      continue;
    }
    if (std::strcmp(reinterpret_cast<const char*>(c->ns->href), kMetadataNamespace) != 0) {
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
