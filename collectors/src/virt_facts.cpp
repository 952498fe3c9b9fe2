#include <memtide/collectors/file_reader.hpp>
#include <memtide/collectors/sysfs_parsers.hpp>
#include <memtide/collectors/virt_facts.hpp>
#include <memtide/core/text.hpp>

namespace memtide::collectors {

Result<bool> parse_module_bool(std::string_view text, std::string_view origin) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  if (text == "Y" || text == "1") {
    return true;
  }
  if (text == "N" || text == "0") {
    return false;
  }
  return Error{std::string(origin), 1, 0,
               "expected Y, N, 1 or 0, got '" + shorten_utf8(text, 32) + "'"};
}

Result<VirtFacts> read_virt_facts(const std::string& sysfs_root) {
  VirtFacts facts;
  const std::pair<const char*, const char*> modules[] = {
      {"/module/kvm_intel/parameters/ept", "ept"},
      {"/module/kvm_amd/parameters/npt", "npt"},
  };
  for (const auto& [file, name] : modules) {
    const std::string path = sysfs_root + file;
    auto text = read_optional_file(path);
    if (!text) {
      return text.error();
    }
    if (!*text) {
      continue;
    }
    auto on = parse_module_bool(**text, path);
    if (!on) {
      return on.error();
    }
    facts.paging = *on ? name : "shadow";
    break;
  }
  const std::string thp = sysfs_root + "/kernel/mm/transparent_hugepage/enabled";
  auto text = read_optional_file(thp);
  if (!text) {
    return text.error();
  }
  if (*text) {
    auto mode = parse_sysfs_choice(**text, thp);
    if (!mode) {
      return mode.error();
    }
    facts.thp_mode = *mode;
  }
  return facts;
}

}  // namespace memtide::collectors
